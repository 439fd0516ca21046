"""Sketch consistency: the sketch annotator's strokes on each generated image against the input sketch, as the
F-score of stroke pixels matched within a distance tolerance (the BSDS500 boundary benchmark's measure, with
nearest-pixel matching instead of its one-to-one assignment)."""
import cv2
import numpy as np

from .base import EvalContext, EvalInputs, MetricError, check_images, paired_maps


def _within(edges: np.ndarray, others: np.ndarray, tolerance: float) -> int:
    """How many pixels of `edges` lie within `tolerance` pixels of a pixel of `others`."""
    if not edges.any() or not others.any():
        return 0
    # exact Euclidean distance of every pixel to the nearest pixel of `others` (the zeros of the input)
    distance = cv2.distanceTransform((~others).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int((distance[edges] <= tolerance).sum())


def edge_counts(predicted: np.ndarray, reference: np.ndarray, tolerance: float) -> np.ndarray:
    """[matched predicted, predicted, matched reference, reference] stroke-pixel counts of one pair of sketches
    (uint8 [H, W], stroke = any value >= 128)."""
    pred, ref = np.asarray(predicted) >= 128, np.asarray(reference) >= 128
    return np.array([_within(pred, ref, tolerance), pred.sum(), _within(ref, pred, tolerance), ref.sum()])


def fscore(counts: np.ndarray) -> dict[str, float]:
    """Precision, recall and F-score of summed `edge_counts`; two empty sketches agree perfectly."""
    matched_pred, pred, matched_ref, ref = (int(c) for c in counts)
    precision = matched_pred / pred if pred else float(ref == 0)
    recall = matched_ref / ref if ref else float(pred == 0)
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"sketch_fscore": f, "sketch_precision": precision, "sketch_recall": recall}


def _counts(predicted: np.ndarray, reference: np.ndarray, tolerance: float) -> np.ndarray:
    predicted, reference = paired_maps("sketch consistency", predicted, reference)
    return sum(edge_counts(p, r, tolerance) for p, r in zip(predicted, reference))


def sketch_scores(predicted: np.ndarray, reference: np.ndarray, tolerance: float) -> dict[str, float]:
    """F-score, precision and recall of predicted sketches against reference sketches (uint8 [N, H, W] or [H, W]),
    stroke pixels pooled over all images; a stroke pixel matches when the other sketch has one within `tolerance`
    pixels (Euclidean)."""
    return fscore(_counts(predicted, reference, tolerance))


def sketch_counts(inputs: EvalInputs, ctx: EvalContext) -> tuple[np.ndarray]:
    """The stroke-pixel counts (see `edge_counts`, summed over batches) of the sketch annotator's output on the
    generated images against their input sketches; the tolerance is `evaluate.sketch_tolerance` times the image
    diagonal."""
    images = check_images("generated", inputs.generated)
    if inputs.sketch is None or len(inputs.sketch) != len(images):
        raise MetricError(f"sketch_fscore needs one input sketch per generated image ({len(images)})")
    tolerance = ctx.params.sketch_tolerance * float(np.hypot(*images.shape[1:3]))
    return (_counts(ctx.require("sketch_fscore", "detect_sketch")(images), inputs.sketch, tolerance),)


def sketch_fscore(counts: tuple[np.ndarray], ctx: EvalContext, reference=None) -> dict[str, float]:
    """Sketch F-score, precision and recall of the summed stroke-pixel counts."""
    return fscore(counts[0])
