"""Text (or image-embedding) consistency: CLIP score between the conditioning embedding and the CLIP image
embedding of the generated image."""
import numpy as np

from .base import EvalContext, EvalInputs, MetricError, check_images


def clip_scores(condition: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Per pair, 100 * max(cosine similarity, 0) of the conditioning embeddings and image embeddings [N, D]
    (the usual CLIPScore scale, as in torchmetrics; 100 = same direction)."""
    condition, image = np.asarray(condition, np.float64), np.asarray(image, np.float64)
    if condition.ndim != 2 or condition.shape != image.shape:
        raise MetricError(f"clip score: conditioning embeddings {condition.shape} and image embeddings "
                          f"{image.shape} must both be [N, D]")
    norms = np.linalg.norm(condition, axis=1) * np.linalg.norm(image, axis=1)
    if (norms == 0).any():
        raise MetricError("clip score: an embedding is all zeros")
    cosine = (condition * image).sum(1) / norms
    return 100.0 * np.maximum(cosine, 0.0)


def image_scores(inputs: EvalInputs, ctx: EvalContext) -> np.ndarray:
    """The CLIP score of each generated image against the embedding that conditioned it (float [N])."""
    images = check_images("generated", inputs.generated)
    if inputs.text is None or len(inputs.text) != len(images):
        raise MetricError(f"clip_score needs one conditioning embedding per generated image ({len(images)})")
    return clip_scores(inputs.text, ctx.require("clip_score", "embed_images")(images))


def clip_score(parts: list[np.ndarray], ctx: EvalContext, reference=None) -> dict[str, float]:
    """Mean CLIP score (0..100) of the generated images against the embeddings that conditioned them."""
    return {"clip_score": float(np.concatenate(parts).mean())}
