"""The generator modalities every family's G is given (with masks saying which are present), and the evaluation
conditions of the PoE-GAN supplement's Tables 6 and 7 (unconditional, text, seg, sketch, all): which metric inputs
each gives, and which generator modalities that means."""

MODALITIES = ("text", "seg", "sketch", "style")

# condition -> the EvalInputs fields (conditioning modalities) the generator was given under it
CONDITIONS: dict[str, tuple[str, ...]] = {
    "unconditional": (),
    "text": ("embeddings",),
    "seg": ("seg",),
    "sketch": ("sketch",),
    "all": ("embeddings", "seg", "sketch"),
}
# EvalInputs field -> the generator modality it is given as
GENERATOR_MODALITY = {"embeddings": "text", "seg": "seg", "sketch": "sketch"}


def generator_modalities(condition: str) -> frozenset[str]:
    """The generator modalities a condition gives (`unconditional`: none)."""
    return frozenset(GENERATOR_MODALITY[m] for m in CONDITIONS[condition])
