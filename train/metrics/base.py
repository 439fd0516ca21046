"""What every metric receives: the generated images and their conditions (`EvalInputs`), and the shared,
lazily loaded evaluation networks and settings (`EvalContext`)."""
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ImageFn = Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W, 3] -> per-image outputs [N, ...]


class MetricError(ValueError):
    """A metric cannot run on what it was given; the message says what is missing or malformed."""


@dataclass
class Reference:
    """The real images FID and KID compare against, named so that their features are computed once and cached."""

    dataset: str
    split: str
    limit: int  # at most this many images are used; part of the cache key
    resolution: int  # side the images are resized to before Inception (the model's output size); in the key
    batches: Callable[[], Iterable[np.ndarray]]  # yields uint8 [B, H, W, 3]; only called when the cache misses
    # their Inception features when the caller computed them already (as evaluation does, batch by batch on every
    # process), as parts in order (`feature_files.Rows` on disk, or arrays): a cache miss stores these instead of
    # reading `batches`
    features: list | None = None


@dataclass
class EvalInputs:
    """One evaluation set: images generated under one condition, and whatever conditioned them.

    The conditioning arrays are named after the generator modalities (`shardio.modalities`). Arrays are aligned
    on their first axis (image i was generated from seg[i], sketch[i], text[i]).
    A metric whose inputs are absent (None) does not apply to this set.
    """

    generated: np.ndarray  # uint8 [N, H, W, 3]
    reference: Reference | None = None
    seg: np.ndarray | None = None  # uint8 [N, H, W] input class maps, 255 = ignore
    sketch: np.ndarray | None = None  # uint8 [N, H, W] input sketches, 255 = stroke
    text: np.ndarray | None = None  # float [N, D] the CLIP embeddings given as the text (of captions or the image)
    groups: np.ndarray | None = None  # uint8 [G, N, H, W, 3]: G samples of the same N conditions, new noise each
    real: np.ndarray | None = None  # uint8 [N, H, W, 3] the test image each condition came from (ground truth)


@dataclass
class EvalContext:
    """Settings and networks shared by the metrics of one evaluation run.

    `segment`, `detect_sketch` and `embed_images` are the project's annotators as functions of a uint8 image batch
    (see `annotator_fn`); metrics that need one and do not get it fail with a MetricError.
    """

    params: "EvaluateParams"  # noqa: F821 - pipeline.params.stages.EvaluateParams
    weights_dir: Path
    cache_dir: Path  # reference statistics live here
    device: str = "cpu"
    segment: ImageFn | None = None  # -> uint8 [N, H, W] class ids
    detect_sketch: ImageFn | None = None  # -> uint8 [N, H, W], 255 = stroke
    embed_images: ImageFn | None = None  # -> float [N, D] CLIP image embeddings
    # every process's object as a list in the process that finishes the metrics, None in the others
    gather: Callable[[object], list | None] = lambda obj: [obj]
    models: dict = field(default_factory=dict)  # networks loaded once per run, by name
    # where metrics spill what they keep of each batch (`feature_files`); None: a temporary folder of this context's
    scratch_dir: Path | None = None

    def model(self, name: str, load: Callable[[], object]):
        """The network `name`, loaded by `load()` on first use."""
        if name not in self.models:
            self.models[name] = load()
        return self.models[name]

    def scratch(self) -> Path:
        """The folder metrics spill to: `scratch_dir`, else a temporary one removed with this context."""
        if self.scratch_dir is not None:
            return Path(self.scratch_dir)
        return Path(self.model("scratch", lambda: tempfile.TemporaryDirectory(prefix="metrics-")).name)

    def require(self, metric: str, what: str):
        """The annotator function `what` of this context, or a MetricError naming the metric that needs it."""
        fn = getattr(self, what)
        if fn is None:
            raise MetricError(f"metric {metric!r} needs the context's {what!r} annotator function; none was given")
        return fn


def batches(array: np.ndarray, size: int) -> Iterable[np.ndarray]:
    """Consecutive slices of at most `size` items along the first axis."""
    for start in range(0, len(array), size):
        yield array[start:start + size]


def check_images(name: str, images: np.ndarray) -> np.ndarray:
    """`images` if it is uint8 [N, H, W, 3] with N >= 1, else a MetricError naming it."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise MetricError(f"{name}: expected uint8 images [N, H, W, 3], got {got}")
    if len(images) == 0:
        raise MetricError(f"{name}: no images")
    return images


def paired_maps(metric: str, predicted, reference) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and reference maps as equal-shaped [N, H, W] arrays (a single [H, W] pair gets N = 1), else a
    MetricError naming the metric."""
    predicted, reference = np.asarray(predicted), np.asarray(reference)
    if predicted.shape != reference.shape or reference.ndim not in (2, 3):
        raise MetricError(f"{metric}: predicted maps {predicted.shape} and reference maps {reference.shape} must "
                          f"be equal-shaped [N, H, W] or [H, W]")
    return (predicted[None], reference[None]) if reference.ndim == 2 else (predicted, reference)


def annotator_fn(annotator, ext: str, batch_size: int) -> ImageFn:
    """An annotator (annotators.base.Annotator, already set up) as a function of a uint8 image batch that returns
    its `ext` output ("seg.png", "sketch.png", "clip.npy") stacked over the batch."""
    from annotators.base import Item

    def run(images: np.ndarray) -> np.ndarray:
        outputs = []
        for chunk in batches(images, batch_size):
            outputs += [out[ext] for out in annotator([Item(image) for image in chunk])]
        return np.stack(outputs)

    return run
