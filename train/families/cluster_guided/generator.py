"""The cluster-guided generator: PoE-GAN's generator in unconditional mode with fixed local latents, the k-means
centroids of its decoder features and one latent mapper T_c per cluster; an image of cluster c is G(T_c(e))."""
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import MLP
from ...noise import randn_like
from ..poegan.generator import Generator


class Cluster(nn.Module):
    """One cluster: the decoder resolution whose features it clusters, its centroid there, its share of the sampled
    codes, and its mapper from auxiliary noise to z^0."""

    def __init__(self, resolution: int, centroid: torch.Tensor, share: float, net: nn.Module):
        super().__init__()
        self.at = resolution  # the buffer's value, read without a device sync
        self.register_buffer("resolution", torch.tensor(resolution))
        self.register_buffer("centroid", centroid.float().clone())
        self.register_buffer("share", torch.tensor(float(share)))
        self.mapper = net


class ClusterGuidedGenerator(nn.Module):
    """`forward(cond, masks)` draws from the mixture of the clusters (each by its share), `forward(..., cluster=c)`
    from cluster c alone; the conditions are not used (every modality is dropped). Built empty from a
    configuration; `load_state_dict` adds the clusters a snapshot holds, so a snapshot is all it needs."""

    def __init__(self, cfg, num_classes: int):
        super().__init__()
        self.base = Generator(cfg, num_classes)
        for r in cfg.resolutions:  # the fixed draws of z^1..z^N (set by the fit)
            self.register_buffer(f"local_noise_{r}", torch.zeros(1, cfg.latent_channels(r), r, r))
        self.register_buffer("pool", torch.tensor(1))  # features are average-pooled to pool x pool
        self.pool_size = 1  # the buffer's value, read without a device sync
        self.clusters = nn.ModuleList()

    @property
    def local_noise(self) -> dict[int, torch.Tensor]:
        return {r: getattr(self, f"local_noise_{r}") for r in self.base.cfg.resolutions}

    @property
    def noise_dim(self) -> int:
        return self.clusters[0].mapper[0].weight.shape[1]

    def set_pool(self, size: int) -> None:
        """Features are average-pooled to size x size."""
        self.pool.fill_(size)
        self.pool_size = size

    def add_cluster(self, resolution: int, centroid: torch.Tensor, share: float, net: nn.Module) -> Cluster:
        cluster = Cluster(resolution, centroid, share, net).to(self.pool.device)
        self.clusters.append(cluster)
        return cluster

    def features(self, z0: torch.Tensor, resolution: int) -> torch.Tensor:
        """The clustered features [B, D] of z0: the decoder's features at `resolution`, average-pooled."""
        h = self.base.features(z0, resolution, self.local_noise)
        return F.adaptive_avg_pool2d(h, self.pool_size).flatten(1)

    def assign(self, z0: torch.Tensor, resolution: int) -> torch.Tensor:
        """Index into `self.clusters` of the nearest centroid among the clusters of `resolution`, per code."""
        members = [i for i, c in enumerate(self.clusters) if c.at == resolution]
        centroids = torch.stack([self.clusters[i].centroid for i in members])
        # the fit adds a resolution's clusters one after another: an offset, no index tensor to copy to the device
        return torch.cdist(self.features(z0, resolution), centroids).argmin(1) + members[0]

    def mixture(self, normal: torch.Tensor) -> torch.Tensor:
        """A cluster index per standard normal draw [B], each cluster with probability its share (Phi of the draw
        is uniform)."""
        shares = torch.stack([c.share for c in self.clusters])
        bounds = (shares.cumsum(0) / shares.sum())[:-1]
        return torch.bucketize(torch.special.ndtr(normal).contiguous(), bounds.contiguous())

    def codes(self, noise: torch.Tensor, cluster: int | torch.Tensor) -> torch.Tensor:
        """z^0 [B, 512] of auxiliary noise [B, noise_dim]: T_cluster(noise), or with one cluster index per sample
        ([B] tensor) each sample's own mapper."""
        if isinstance(cluster, int):
            return self.clusters[cluster].mapper(noise)
        every = torch.stack([c.mapper(noise) for c in self.clusters])  # [K, B, 512]
        return every[cluster, torch.arange(len(noise), device=noise.device)]

    def forward(self, cond: dict, masks: dict, cluster: int | None = None):
        """(image [B,3,H,W], []) of new auxiliary noise (from `train.noise`), B = the masks' batch: from
        `cluster`, or None: each sample from a cluster drawn by share (a noise entry of its own)."""
        batch = next(iter(masks.values())).shape[0]
        draw = randn_like(torch.empty(batch, self.noise_dim + 1, device=self.pool.device))
        noise = draw[:, :-1]
        z0 = self.codes(noise, self.mixture(draw[:, -1]) if cluster is None else cluster)
        return self.base.unconditional(z0, self.local_noise), []

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a snapshot, first adding the clusters it holds (their number and mapper widths read from it)."""
        self.clusters = nn.ModuleList()
        count = len({k.split(".")[1] for k in state_dict if k.startswith("clusters.")})
        for i in range(count):
            weights = sorted((int(k.split(".")[3]), v) for k, v in state_dict.items()
                             if k.startswith(f"clusters.{i}.mapper.") and k.endswith(".weight"))
            dims = [weights[0][1].shape[1]] + [w.shape[0] for _, w in weights]
            self.add_cluster(int(state_dict[f"clusters.{i}.resolution"]), state_dict[f"clusters.{i}.centroid"], 0.0,
                             MLP(dims))
        self.pool_size = int(state_dict["pool"])
        return super().load_state_dict(state_dict, strict, assign)

    def rows(self) -> list[tuple[str, object]]:
        """(name, generator call) of each cluster, named by resolution and index within it."""
        out, seen = [], {}
        for i, c in enumerate(self.clusters):
            r = c.at
            seen[r] = seen.get(r, -1) + 1
            out.append((f"cluster-r{r}-{seen[r]}", partial(self, cluster=i)))
        return out
