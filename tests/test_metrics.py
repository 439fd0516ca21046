"""The metric registry and the metrics that need no network of their own: segmentation consistency (mIoU, pixel
accuracy), sketch F-score and CLIP score, on inputs whose scores are worked out by hand."""
import numpy as np
import pytest
from pydantic import ValidationError

from annotators.base import Annotator
from pipeline.params.stages import EvaluateParams
from train.metrics import REGISTRY, MetricStream, UnknownMetricError, evaluate, metric
from train.metrics.base import EvalContext, EvalInputs, MetricError, annotator_fn
from train.metrics.clip_score import clip_scores
from train.metrics.conditions import CONDITIONS, evaluate_conditions, inputs_for
from train.metrics.seg_consistency import seg_scores
from train.metrics.sketch_consistency import sketch_scores


def halves(height: int = 8, width: int = 8, left: int = 3, right: int = 7) -> np.ndarray:
    """A class map whose left half is class `left` and right half class `right`."""
    out = np.full((height, width), right, np.uint8)
    out[:, : width // 2] = left
    return out


def shift_right(array: np.ndarray, k: int) -> np.ndarray:
    """`array` moved k columns to the right, the first column repeated into the gap."""
    return np.concatenate([np.repeat(array[:, :1], k, axis=1), array[:, : array.shape[1] - k]], axis=1)


def test_registry_refuses_an_unknown_metric_listing_the_known_ones():
    with pytest.raises(UnknownMetricError, match="unknown metric 'fld'; known: fid, kid, seg_consistency"):
        metric("fld")
    with pytest.raises(ValidationError, match="conditions.0"):
        EvaluateParams(conditions=["style"])
    assert EvaluateParams().conditions == list(CONDITIONS)
    assert callable(metric("seg_consistency")) and set(REGISTRY) >= {"fid", "kid", "clip_score", "lpips_diversity"}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_miou_and_pixel_accuracy_of_a_shifted_map(k):
    reference = halves()
    assert seg_scores(reference, reference) == {"seg_miou": 1.0, "seg_f1": 1.0, "seg_pixel_accuracy": 1.0}
    # 4 columns per class; moving the boundary k columns right: the left class predicted on 4 + k columns of
    # which 4 are right (IoU 4 / (4 + k), F1 2·4 / (4 + 4 + k)), the right class on 4 - k columns all right
    # (IoU (4 - k) / 4, F1 2(4 - k) / (4 + 4 - k)); k of the 8 columns are wrong.
    scores = seg_scores(shift_right(reference, k), reference)
    assert scores["seg_miou"] == pytest.approx((4 / (4 + k) + (4 - k) / 4) / 2)
    assert scores["seg_f1"] == pytest.approx((8 / (8 + k) + 2 * (4 - k) / (8 - k)) / 2)
    assert scores["seg_pixel_accuracy"] == pytest.approx((8 - k) / 8)


def test_seg_scores_ignore_255_and_pool_over_images():
    reference = halves()
    reference[:, 4] = 255  # the column a one-pixel shift gets wrong is ignored
    assert seg_scores(shift_right(halves(), 1), reference) == {"seg_miou": 1.0, "seg_f1": 1.0,
                                                                "seg_pixel_accuracy": 1.0}

    # two images: one perfect, one with a third class predicted everywhere (an absent class with union > 0)
    predicted = np.stack([halves(), np.full((8, 8), 5, np.uint8)])
    scores = seg_scores(predicted, np.stack([halves(), halves()]))
    # classes 3 and 7: 32 hits of 64 reference pixels each -> IoU 0.5; class 5: no hits -> IoU 0
    assert scores["seg_miou"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert scores["seg_pixel_accuracy"] == pytest.approx(0.5)

    with pytest.raises(MetricError, match="equal-shaped"):
        seg_scores(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 9), np.uint8))


def horizontal_stroke(length: int = 20, shift: int = 0) -> np.ndarray:
    sketch = np.zeros((16, 40), np.uint8)
    sketch[8, 5 + shift: 5 + shift + length] = 255
    return sketch


def test_sketch_fscore_is_one_for_identical_and_within_tolerance():
    reference = np.zeros((32, 32), np.uint8)
    reference[4:28, 10] = 255
    reference[20, 4:28] = 255
    assert sketch_scores(reference, reference, 1.0)["sketch_fscore"] == 1.0
    assert sketch_scores(np.roll(reference, 2, axis=1), reference, 2.0)["sketch_fscore"] == 1.0
    assert sketch_scores(np.zeros_like(reference), np.zeros_like(reference), 1.0)["sketch_fscore"] == 1.0
    assert sketch_scores(np.zeros_like(reference), reference, 1.0)["sketch_fscore"] == 0.0


def test_sketch_fscore_drops_by_the_pixels_shifted_beyond_tolerance():
    # a 20-pixel stroke moved 6 pixels along itself, tolerance 2: of each stroke 14 pixels overlap and 2 more are
    # within 2 pixels of the other stroke's end -> precision = recall = 16 / 20
    scores = sketch_scores(horizontal_stroke(shift=6), horizontal_stroke(), 2.0)
    assert scores["sketch_precision"] == pytest.approx(0.8) and scores["sketch_recall"] == pytest.approx(0.8)
    assert scores["sketch_fscore"] == pytest.approx(0.8)
    # moved 3 rows across itself: nothing within 2 pixels
    moved = np.roll(horizontal_stroke(), 3, axis=0)
    assert sketch_scores(moved, horizontal_stroke(), 2.0)["sketch_fscore"] == 0.0
    assert sketch_scores(moved, horizontal_stroke(), 3.0)["sketch_fscore"] == 1.0


def test_clip_score_is_maximal_for_identical_embeddings():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(4, 16))
    assert clip_scores(embeddings, embeddings) == pytest.approx(np.full(4, 100.0))
    assert clip_scores(embeddings, 3 * embeddings) == pytest.approx(np.full(4, 100.0))  # scale-free
    assert clip_scores(embeddings, -embeddings) == pytest.approx(np.zeros(4))  # negative cosine clipped to 0
    other = rng.normal(size=(4, 16))
    assert (clip_scores(embeddings, other) < 100.0).all()
    with pytest.raises(MetricError, match=r"\[N, D\]"):
        clip_scores(embeddings, embeddings[:, :8])


def colour_images() -> np.ndarray:
    """Four 8x8 images: left half red, right half green or blue (decides the class of the right half)."""
    images = np.zeros((4, 8, 8, 3), np.uint8)
    images[:, :, :4, 0] = 255
    images[:2, :, 4:, 1] = 255
    images[2:, :, 4:, 2] = 255
    return images


def test_evaluate_runs_the_metrics_whose_inputs_are_given(tmp_path):
    images = colour_images()
    ctx = EvalContext(EvaluateParams(), tmp_path, tmp_path,
                      segment=lambda x: np.argmax(x, axis=-1).astype(np.uint8),  # the dominant channel as class
                      embed_images=lambda x: x.reshape(len(x), -1, 3).mean(1))  # mean colour as embedding
    maps = np.argmax(images, axis=-1).astype(np.uint8)
    names = ["seg_consistency", "clip_score", "sketch_fscore", "lpips_diversity"]

    scores = evaluate(names, EvalInputs(images, seg=maps), ctx)
    assert scores == {"seg_miou": 1.0, "seg_f1": 1.0, "seg_pixel_accuracy": 1.0}

    scores = evaluate(names, EvalInputs(images, seg=shift_right_batch(maps, 1),
                                        text=images.reshape(4, -1, 3).mean(1)), ctx)
    assert scores["seg_miou"] < 1.0 and scores["clip_score"] == pytest.approx(100.0)

    with pytest.raises(MetricError, match="'sketch_fscore' needs the context's 'detect_sketch'"):
        evaluate(["sketch_fscore"], EvalInputs(images, sketch=maps), ctx)


def shift_right_batch(maps: np.ndarray, k: int) -> np.ndarray:
    return np.stack([shift_right(m, k) for m in maps])


class RedMask(Annotator):
    """A stand-in annotator: class 1 where the red channel is high (records the batch sizes it was called with)."""

    name = "seg"

    def __init__(self):
        self.calls = []

    def setup(self, device):
        pass

    def forward(self, items):
        self.calls.append(len(items))
        return [{"seg.png": (item.image[..., 0] > 127).astype(np.uint8)} for item in items]

    def metadata(self):
        return {}


def test_annotator_fn_batches_an_annotator_over_an_image_array():
    annotator = RedMask()
    segment = annotator_fn(annotator, "seg.png", batch_size=3)
    maps = segment(colour_images())
    assert annotator.calls == [3, 1] and maps.shape == (4, 8, 8) and maps.dtype == np.uint8
    assert (maps[:, :, :4] == 1).all() and (maps[:, :, 4:] == 0).all()


def test_each_condition_is_scored_by_the_metrics_of_its_modalities(tmp_path):
    images = colour_images()
    maps = np.argmax(images, axis=-1).astype(np.uint8)
    modalities = {"seg": maps, "sketch": np.zeros((4, 8, 8), np.uint8), "text": images.reshape(4, -1, 3).mean(1)}
    ctx = EvalContext(EvaluateParams(), tmp_path, tmp_path, segment=lambda x: np.argmax(x, axis=-1).astype(np.uint8),
                      detect_sketch=lambda x: np.zeros(x.shape[:3], np.uint8),
                      embed_images=lambda x: x.reshape(len(x), -1, 3).mean(1))
    table = evaluate_conditions(["seg_consistency", "sketch_fscore", "clip_score"],
                                {c: inputs_for(c, images, **modalities) for c in CONDITIONS}, ctx)
    assert table["unconditional"] == {}
    assert set(table["seg"]) == {"seg_miou", "seg_f1", "seg_pixel_accuracy"}
    assert set(table["sketch"]) == {"sketch_fscore", "sketch_precision", "sketch_recall"}
    assert table["text"] == {"clip_score": pytest.approx(100.0)}
    assert set(table["all"]) == set(table["seg"]) | set(table["sketch"]) | set(table["text"])
    with pytest.raises(MetricError, match="condition 'seg' needs seg"):
        inputs_for("seg", images, sketch=maps)
    with pytest.raises(MetricError, match="unknown condition 'style'"):
        inputs_for("style", images)


def split_inputs(inputs: EvalInputs, rows: slice) -> EvalInputs:
    """The rows `rows` of every array of `inputs` (the groups along their second axis)."""
    return EvalInputs(inputs.generated[rows], reference=inputs.reference,
                      **{name: None if getattr(inputs, name) is None else getattr(inputs, name)[rows]
                         for name in ("seg", "sketch", "text")},
                      groups=None if inputs.groups is None else inputs.groups[:, rows])


def stream_scores(names, inputs: EvalInputs, ctx, batch: int, order=None) -> dict[str, float]:
    """The scores of `inputs` streamed through a MetricStream in batches of `batch` (added in `order`)."""
    stream = MetricStream(names, ctx, inputs.reference)
    starts = list(range(0, len(inputs.generated), batch))
    for index in order or range(len(starts)):
        stream.add(index, split_inputs(inputs, slice(starts[index], starts[index] + batch)))
    return stream.result()


def consistency_context(tmp_path, **fields) -> EvalContext:
    return EvalContext(EvaluateParams(), tmp_path, tmp_path, segment=lambda x: np.argmax(x, axis=-1).astype(np.uint8),
                       detect_sketch=lambda x: np.where(x[..., 1] > 127, 255, 0).astype(np.uint8),
                       embed_images=lambda x: x.reshape(len(x), -1, 3).mean(1), **fields)


def test_streaming_in_batches_of_one_in_any_order_gives_the_scores_of_the_whole_set(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    inputs = EvalInputs(images, seg=rng.integers(0, 3, (5, 8, 8), dtype=np.uint8),
                        sketch=np.where(rng.random((5, 8, 8)) < 0.3, 255, 0).astype(np.uint8),
                        text=rng.normal(size=(5, 3)))
    names = ["seg_consistency", "sketch_fscore", "clip_score"]
    ctx = consistency_context(tmp_path)
    whole = evaluate(names, inputs, ctx)
    assert set(whole) == {k for name in names for k in REGISTRY[name].keys}
    assert stream_scores(names, inputs, ctx, batch=1) == whole
    assert stream_scores(names, inputs, ctx, batch=2, order=[2, 0, 1]) == whole


def test_parts_split_over_processes_are_gathered_into_the_scores_of_one_process(tmp_path):
    rng = np.random.default_rng(1)
    inputs = EvalInputs(rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
                        seg=rng.integers(0, 3, (6, 8, 8), dtype=np.uint8), text=rng.normal(size=(6, 3)))
    names = ["seg_consistency", "clip_score"]
    whole = evaluate(names, inputs, consistency_context(tmp_path))
    # two processes, batch i in process i % 2: process 1 hands its parts over, process 0 finishes
    handed = []
    process1 = MetricStream(names, consistency_context(tmp_path, gather=lambda obj: handed.append(obj)))
    process0 = MetricStream(names, consistency_context(tmp_path, gather=lambda obj: [obj, *handed]))
    for index in range(3):
        (process0 if index % 2 == 0 else process1).add(index, split_inputs(inputs, slice(2 * index, 2 * index + 2)))
    assert process1.result() is None
    assert process0.result() == whole
