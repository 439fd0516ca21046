"""Segmentation consistency (the SPADE / MoNCE protocol): segment each generated image with the seg annotator and
score the predicted map against the input map the image was generated from. The segmenter must label in the
dataset's label map (`check_segmenter`): COCO-Stuff scenes with DeepLab-v2, as PoE-GAN and SPADE do, faces with a
parser of the 19 CelebAMask-HQ classes."""
import numpy as np

from .base import EvalContext, EvalInputs, MetricError, check_images, paired_maps

IGNORE = 255
# label map -> the registered segmenter that labels in it (annotate.seg model and weights)
SEGMENTERS = {"coco-stuff-182": ("deeplabv2-resnet101", "deeplabv2-cocostuff164k"),
              "celebamask-hq-19": ("bisenet-resnet18", "bisenet-celebamask-hq")}


def check_segmenter(metrics, seg, dataset: str, label_map: str) -> None:
    """With seg_consistency among `metrics`, raise MetricError unless the seg annotator's params `seg` label in the
    dataset's `label_map`: ids of two label maps compared pixel by pixel give a meaningless mIoU."""
    speaks = seg.output_label_map or seg.label_map
    if "seg_consistency" not in metrics or speaks == label_map:
        return
    model, weights = SEGMENTERS.get(label_map, ("<a model of that label map>", "<its weights>"))
    raise MetricError(f"seg_consistency: the segmenter annotate.seg (model {seg.model!r}, weights {seg.weights!r}) "
                      f"labels in {speaks!r}, dataset {dataset!r} in {label_map!r}; set its overrides "
                      f"annotate.seg.model: {model}, annotate.seg.weights: {weights}, annotate.seg.label_map: "
                      f"{label_map} (see the mm-celeba-hq profile in params.yaml), or drop seg_consistency from "
                      f"evaluate.metrics")


def confusion_matrix(predicted: np.ndarray, reference: np.ndarray, num_classes: int = IGNORE) -> np.ndarray:
    """The [C, C] count matrix (rows: reference class, columns: predicted class) over pixels whose reference is not
    255; a predicted 255 (or any class >= C) counts as wrong for every class."""
    predicted, reference = np.asarray(predicted), np.asarray(reference)
    if predicted.shape != reference.shape:
        raise MetricError(f"seg consistency: predicted maps {predicted.shape} and reference maps "
                          f"{reference.shape} differ in shape")
    valid = reference != IGNORE
    ref, pred = reference[valid].astype(np.int64), predicted[valid].astype(np.int64)
    pred = np.where(pred < num_classes, pred, num_classes)  # an extra "wrong" column, dropped below
    counts = np.bincount(ref * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)[:, :num_classes]


def scores(confusion: np.ndarray, valid_pixels: int) -> dict[str, float]:
    """mIoU and mean F1 (2 hits / (reference + predicted pixels), i.e. Dice; Unite-and-Conquer's "F1" of parsed
    maps), each a mean over the classes present in the reference or the prediction, and pixel accuracy of a
    confusion matrix accumulated over a dataset; `valid_pixels` counts every non-ignored reference pixel."""
    hits = np.diag(confusion)
    sizes = confusion.sum(0) + confusion.sum(1)
    union = sizes - hits
    present = union > 0
    miou = float((hits[present] / union[present]).mean()) if present.any() else float("nan")
    f1 = float((2 * hits[present] / sizes[present]).mean()) if present.any() else float("nan")
    accuracy = float(hits.sum() / valid_pixels) if valid_pixels else float("nan")
    return {"seg_miou": miou, "seg_f1": f1, "seg_pixel_accuracy": accuracy}


def seg_counts(inputs: EvalInputs, ctx: EvalContext) -> tuple[np.ndarray, int]:
    """The confusion matrix and the non-ignored pixel count of the seg annotator's maps of the generated images
    against their input maps (summed over batches)."""
    images = check_images("generated", inputs.generated)
    if inputs.seg is None or len(inputs.seg) != len(images):
        raise MetricError(f"seg_consistency needs one input map per generated image ({len(images)})")
    return _counts(ctx.require("seg_consistency", "segment")(images), inputs.seg)


def _counts(predicted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, int]:
    predicted, reference = paired_maps("seg consistency", predicted, reference)
    confusion = sum(confusion_matrix(p, r) for p, r in zip(predicted, reference))  # per image: bounded memory
    return confusion, int((reference != IGNORE).sum())


def seg_scores(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """mIoU, mean F1 and pixel accuracy of predicted class maps against reference maps (uint8 [N, H, W] or [H, W]),
    pooled over all images as the SPADE evaluation does; reference pixels of 255 are ignored."""
    return scores(*_counts(predicted, reference))


def seg_consistency(counts: tuple[np.ndarray, int], ctx: EvalContext, reference=None) -> dict[str, float]:
    """mIoU, mean F1 and pixel accuracy of the seg annotator's maps of the generated images against their input maps."""
    return scores(*counts)
