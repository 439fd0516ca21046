"""The one interface every annotator implements, and how its outputs become shard member bytes.

    annotator = build("seg", params.annotate.seg, weights_dir)   # cheap: no weights loaded yet
    annotator.check_weights()                                    # every weights file there and of the right layout
    annotator.setup("cuda:0")                                    # loads weights once per worker
    outputs = annotator([Item(image), ...])                      # [{"seg.png": uint8 [H, W]}, ...]
    encode("seg.png", outputs[0]["seg.png"])                     # bytes for the shard

A call is three steps, so a worker can run the CPU work on a thread pool and keep its model thread for the model:
`prepare` (one item, CPU: resizing, normalising, tokenizing; any thread), `forward` (the prepared batch, the model
on its device; one thread), `finish` (one raw result, CPU: thresholding, NMS, the uint8 or float16 output; any
thread). `annotator(items)` runs the three in order.

Contract: batch-size invariant, deterministic, no global state; images are uint8 RGB [H, W, 3] of any size;
outputs are numpy arrays keyed by the shard extension they are stored under. An item may carry the image
decoded at a reduced size (`Item.size`: the size it is stored at): outputs at "the image's size" are at that
size, and the reduced image is never smaller than the annotator's `input_size()`.
"""
import importlib
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

# Annotator name -> "module:Class". A new annotator is one module plus one line here.
REGISTRY = {
    "seg": "annotators.seg:SegAnnotator",
    "sketch": "annotators.sketch:SketchAnnotator",
    "clip": "annotators.clip:ClipAnnotator",
}


@dataclass
class Item:
    """One input: the image (uint8 RGB [H, W, 3]) and its captions, if it has any. `size` is the (H, W) the image
    is stored at when `image` was decoded smaller (None: the image's own)."""

    image: np.ndarray
    captions: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None

    @property
    def stored_size(self) -> tuple[int, int]:
        """(H, W) of the image as stored: the size outputs "at the image's size" come at."""
        return self.size or self.image.shape[:2]


# libjpeg's DCT-domain scalings (1/8, 1/4, 1/2), largest first
JPEG_REDUCTIONS = (8, 4, 2)


@dataclass(frozen=True)
class InputSize:
    """The smallest image an annotator's preprocessing uses: `pixels` on the image's `side` (long or short)."""

    pixels: int
    side: Literal["long", "short"] = "long"

    def reduction(self, width: int, height: int) -> int:
        """The largest libjpeg scale denominator (8, 4, 2; else 1) whose decoded image, ceil(side / d) pixels on
        that side, is not below `pixels`."""
        side = max(width, height) if self.side == "long" else min(width, height)
        return next((d for d in JPEG_REDUCTIONS if -(-side // d) >= self.pixels), 1)


class Annotator(ABC):
    """A pseudo-labeller built from its params section."""

    name: str  # the modality it writes: "seg", "sketch", "clip"

    @abstractmethod
    def setup(self, device: str) -> None:
        """Load weights onto `device` ("cpu", "cuda", "cuda:1"); called once per worker."""

    def check_weights(self) -> None:
        """Raise WeightsError naming every weights file the params need that is missing or does not hold the
        network's keys and shapes (one line each), and what to do; builds no model, so the driver checks this
        before any worker starts."""

    def input_size(self) -> InputSize | None:
        """The smallest image the preprocessing uses (None: the image at its own size)."""
        return None

    def decode_size(self) -> InputSize | None:
        """`input_size()` when the params ask for reduced decoding (`reduced_decode`), else None: full size."""
        return self.input_size() if getattr(getattr(self, "params", None), "reduced_decode", False) else None

    def prepare(self, item: Item):
        """CPU pre-step of one item (thread-safe): what `forward` takes."""
        return item

    @abstractmethod
    def forward(self, prepared: list) -> list:
        """The model step over a batch of prepared items: one raw result each, in order, on the host."""

    def finish(self, raw) -> dict[str, np.ndarray]:
        """CPU post-step of one raw result (thread-safe): {shard extension: array}."""
        return raw

    def __call__(self, items: list[Item]) -> list[dict[str, np.ndarray]]:
        """Annotate a batch: one dict {shard extension: array} per item, in order."""
        check_items(items, self.name)
        return [self.finish(raw) for raw in self.forward([self.prepare(item) for item in items])]

    @abstractmethod
    def metadata(self) -> dict:
        """Model id, weights name and sha256 (or 'random'), and whatever else identifies the outputs."""

    def expected_metadata(self) -> dict | None:
        """What `metadata()` will say once set up, without loading the model (hashing weights files at most); None
        when only the loaded model can tell. Lets the driver see that every shard is done before any worker."""
        return None


def check_items(items, who: str) -> None:
    """Raise ValueError naming the first item whose image is not uint8 RGB [H, W, 3]."""
    for i, item in enumerate(items):
        image = item.image
        if not (hasattr(image, "dtype") and image.dtype == "uint8" and image.ndim == 3 and image.shape[2] == 3
                and min(image.shape[:2]) >= 1):
            raise ValueError(f"{who}: item {i} is not a uint8 RGB image [H, W, 3] "
                             f"(got {getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')})")


def is_device_failure(err: BaseException) -> bool:
    """A CUDA error (illegal memory access, device-side assert, ...): the device stays unusable for every later
    call in this process, so it is no image's own failure."""
    return type(err).__name__ == "AcceleratorError" or "CUDA error" in str(err)


def build(name: str, params, weights_dir: Path) -> Annotator:
    """The annotator `name` built from its params section; unknown names list the known ones."""
    if name not in REGISTRY:
        raise KeyError(f"unknown annotator {name!r}; known: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)(params, weights_dir)


def encode(ext: str, array: np.ndarray) -> bytes:
    """Shard bytes of one output: `.png` as a fast lossless PNG of uint8, `.npy` without pickle."""
    if ext.endswith(".png"):
        if array.dtype != np.uint8:
            raise TypeError(f"{ext}: PNG outputs must be uint8, got {array.dtype}")
        ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ValueError(f"{ext}: PNG encoding failed for an array of shape {array.shape}")
        return buf.tobytes()
    if ext.endswith(".npy"):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        return buf.getvalue()
    raise ValueError(f"no encoder for shard extension {ext!r} (expected .png or .npy)")
