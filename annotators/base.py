"""The one interface every annotator implements, and how its outputs become shard member bytes.

    annotator = build("seg", params.annotate.seg, weights_dir)   # cheap: no weights loaded yet
    annotator.setup("cuda:0")                                    # loads weights once per worker
    outputs = annotator([Item(image), ...])                      # [{"seg.png": uint8 [H, W]}, ...]
    encode("seg.png", outputs[0]["seg.png"])                     # bytes for the shard

Contract: batch-size invariant, deterministic, no global state; images are uint8 RGB [H, W, 3] of any size;
outputs are numpy arrays keyed by the shard extension they are stored under.
"""
import importlib
import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

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
    """One input: the image (uint8 RGB [H, W, 3]) and its captions, if it has any."""

    image: np.ndarray
    captions: list[str] = field(default_factory=list)


class Annotator(ABC):
    """A pseudo-labeller built from its params section."""

    name: str  # the modality it writes: "seg", "sketch", "clip"

    @abstractmethod
    def setup(self, device: str) -> None:
        """Load weights onto `device` ("cpu", "cuda", "cuda:1"); called once per worker."""

    @abstractmethod
    def __call__(self, items: list[Item]) -> list[dict[str, np.ndarray]]:
        """Annotate a batch: one dict {shard extension: array} per item, in order."""

    @abstractmethod
    def metadata(self) -> dict:
        """Model id, weights name and sha256 (or 'random'), and whatever else identifies the outputs."""


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
