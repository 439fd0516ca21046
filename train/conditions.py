"""The evaluation conditions of the PoE-GAN supplement's Tables 6 and 7 (unconditional, text, seg, sketch, all):
the generator modalities (`shardio.modalities.MODEL_MODALITIES`) each gives, which are also the conditioning
inputs the metrics score it by (`train.metrics.base.EvalInputs`)."""

# condition -> the generator modalities given under it
CONDITIONS: dict[str, tuple[str, ...]] = {
    "unconditional": (),
    "text": ("text",),
    "seg": ("seg",),
    "sketch": ("sketch",),
    "all": ("text", "seg", "sketch"),
}


def generator_modalities(condition: str) -> frozenset[str]:
    """The generator modalities a condition gives (`unconditional`: none)."""
    return frozenset(CONDITIONS[condition])
