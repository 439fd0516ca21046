"""Params of the annotators: one section each under `annotate`."""
from pydantic import Field

from .base import Section


class SegParams(Section):
    """Segmentation annotator (`annotate.seg`)."""

    model: str = "deeplabv2-resnet101"
    weights: str = Field("deeplabv2-cocostuff164k", description="registry name, a file path, or 'random'")
    label_map: str = "coco-stuff-182"
    long_side: int = Field(513, ge=32)
    scales: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    batch_size: int = Field(8, ge=1)


class SketchParams(Section):
    """Sketch annotator (`annotate.sketch`): HED edges, post-processing, optional simplification."""

    weights: str = Field("hed-bsds500", description="registry name, a file path, or 'random'")
    nms: bool = True
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    simplify: bool = True
    simplify_weights: str = "sketch-simplification-gan"
    batch_size: int = Field(8, ge=1)


class ClipParams(Section):
    """CLIP annotator (`annotate.clip`): open_clip model name and pretrained tag."""

    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    weights: str = Field("open_clip", description="'open_clip' (its own download), a file path, or 'random'")
    batch_size: int = Field(32, ge=1)


class AnnotateParams(Section):
    """All annotators."""

    seg: SegParams = SegParams()
    sketch: SketchParams = SketchParams()
    clip: ClipParams = ClipParams()
