"""Params of the data stages that are not annotators: sample, ingest, pack, preview."""
from pydantic import Field

from .base import Section


class SampleParams(Section):
    """The built-in sample dataset: how many procedural landscapes, and the seed that draws them."""

    landscapes: int = Field(32, ge=1, le=10_000)
    seed: int = Field(0, ge=0)
    include_photos: bool = True


class IngestParams(Section):
    """Validation limits, stored size and sharding of `pipeline ingest`."""

    min_size: int = Field(64, ge=1, description="shorter side below this is rejected")
    max_pixels: int = Field(89_478_485, ge=1, description="more pixels than this is rejected before decoding")
    max_aspect: float = Field(4.0, ge=1.0, description="long side / short side above this is rejected")
    max_short_side: int = Field(1024, ge=16, description="stored images are downscaled to this short side")
    jpeg_quality: int = Field(95, ge=1, le=100)
    shard_size: int = Field(1000, ge=1)


class PackParams(Section):
    """How `pipeline pack` joins image and annotation shards."""

    modalities: list[str] = Field(default_factory=lambda: ["seg", "sketch", "clip"])


class PreviewParams(Section):
    """The preview grid of `pipeline preview`."""

    samples: int = Field(8, ge=1, le=256)
    seed: int = Field(0, ge=0)


class EvaluateParams(Section):
    """Which metrics `pipeline evaluate` reports and on how many test images."""

    metrics: list[str] = Field(default_factory=lambda: ["fid", "kid", "seg_miou", "clip_score", "lpips_diversity"])
    num_images: int = Field(50_000, ge=1)
    seed: int = Field(0, ge=0)
