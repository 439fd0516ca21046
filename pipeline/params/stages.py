"""Params of the stages that are not annotators or training: sample, ingest, pack, preview, compare, evaluate."""
from typing import Literal

from pydantic import Field

from shardio.modalities import ANNOTATORS
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

    modalities: list[Literal[ANNOTATORS]] = Field(default_factory=lambda: list(ANNOTATORS),
                                                  description="annotators whose shards pack joins")
    workers: int = Field(0, ge=0, description="local threads packing shards; 0 = one per core. "
                       "Unused on Ray, which runs one task per shard on every free CPU")


class PreviewParams(Section):
    """The preview grid of `pipeline preview`."""

    samples: int = Field(8, ge=1, le=256)
    seed: int = Field(0, ge=0)


class CompareParams(Section):
    """The test samples `pipeline compare` gives every model: how many (drawn with `seed`), or which keys, and how
    many images each model draws per sample and condition (one seed, as `pipeline generate --n`)."""

    samples: int = Field(3, ge=1, le=64, description="test samples drawn with `seed` when `keys` is empty")
    keys: list[str] = Field(default_factory=list, description="these test samples instead, in this order")
    seed: int = Field(0, ge=0, description="draws the samples and seeds every cell's noise")
    draws: int = Field(3, ge=1, le=16, description="images per cell (a model without noise shows one)")


class EvaluateParams(Section):
    """Which metrics `pipeline evaluate` reports, under which conditions, on how many test images."""

    # names of train.metrics' registry, checked by `pipeline evaluate` before any work: the data stages read this
    # file too, and must not depend on (and rerun with) the metric registry
    metrics: list[str] = Field(default_factory=lambda: ["fid", "kid", "seg_consistency", "sketch_fscore",
                                                        "clip_score", "lpips_diversity"])
    # the per-condition FID rows of the PoE-GAN supplement's Tables 6 and 7
    conditions: list[Literal["unconditional", "text", "seg", "sketch", "all"]] = Field(
        default_factory=lambda: ["unconditional", "text", "seg", "sketch", "all"])
    num_images: int = Field(50_000, ge=1, description="at most this many test images (and reference images)")
    seed: int = Field(0, ge=0)
    batch_size: int = Field(32, ge=1)
    inception_weights: str = Field("inception-2015-12-05", description="registry name or file of FID's Inception")
    kid_subsets: int = Field(100, ge=1)
    kid_subset_size: int = Field(1000, ge=2, description="capped at the number of images")
    lpips_weights: str = Field("alexnet-imagenet", description="registry name or file of LPIPS's AlexNet backbone")
    diversity_groups: int = Field(10, ge=2, description="samples per condition with new noise (INADE: 10)")
    diversity_pairs: int = Field(10, ge=1, description="random pairs of groups averaged (INADE: 10)")
    diversity_images: int = Field(100, ge=1, description="conditions in each diversity group")
    sketch_tolerance: float = Field(0.0075, gt=0, lt=1, description="match distance / image diagonal (BSDS500)")
    # FID/KID's real images: the held-out test images (every paper's rows but INADE's), or as many training
    # images (INADE's official evaluation; docs/protocols.md)
    reference_split: Literal["test", "train"] = "test"

