"""Params of cluster-guided synthesis: its section train.cluster-guided."""
from typing import Literal

from pydantic import Field

from ...sections import Section


class ClusterGuidedParams(Section):
    """Cluster-guided synthesis fitted on the newest PoE-GAN snapshot (docs/cluster-guided.md). The supplement gives
    binary clusters per layer as best and k-means; every number here is a project choice."""

    config: str | None = Field(None, description="architecture configuration of the PoE-GAN run it fits from, for a "
                               "snapshot that does not record its own (saved before snapshots did); default: the "
                               "dataset's train_config")
    seed: int = Field(0, ge=0, description="codes, fixed local latents, k-means, mapper init, IMLE draws")
    fit: Literal["random-crop", "resize"] = Field(
        "random-crop", description="how evaluation brings test images to the resolution (as train.poegan.fit)")
    codes: int = Field(10000, ge=2, description="latent codes z^0 ~ N(0, I) sampled and clustered")
    resolutions: list[int] = Field([8], min_length=1, description="decoder resolutions whose features are "
                                   "clustered, each on its own (one attribute per layer)")
    clusters: int = Field(2, ge=1, description="k-means clusters per resolution (the supplement: 2 is best; 1: "
                          "one mapper over every code, the supplement's FID check of IMLE's domain gap)")
    pool: int = Field(4, ge=1, description="features average-pooled to pool x pool before k-means")
    kmeans_inits: int = Field(10, ge=1, description="k-means restarts (the best inertia is kept)")
    noise_dim: int = Field(64, ge=1, description="auxiliary noise e of the mappers T_c")
    mapper_hidden: int = Field(512, ge=1, description="hidden width of each mapper MLP")
    mapper_layers: int = Field(3, ge=1, description="fully-connected layers of each mapper MLP")
    rounds: int = Field(20, ge=1, description="IMLE rounds: a nearest-neighbour search, then steps_per_round")
    candidates: int = Field(10, ge=1, description="generated codes per cluster code in each IMLE search")
    steps_per_round: int = Field(100, ge=1, description="Adam steps on the round's (code, nearest) pairs")
    batch_size: int = Field(256, ge=1, description="IMLE minibatch, and codes per generator forward")
    lr: float = Field(0.01, gt=0, description="Adam learning rate of the mappers")
    consistency_samples: int = Field(1000, ge=1, description="T_c samples per cluster scored for self-consistency")
    grid_size: int = Field(4, ge=1, description="each cluster's sample grid is grid_size x grid_size")
