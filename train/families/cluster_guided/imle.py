"""Implicit maximum likelihood estimation (Li & Malik, arXiv 1809.09087, ref. [4] of the cluster-guided supplement):
every data point pulls the generated point nearest to it, so no data point is left without one (no mode dropped)."""
from dataclasses import dataclass

import torch
from torch import nn

from ...layers import MLP


@dataclass(frozen=True)
class IMLESettings:
    """One IMLE fit: `rounds` nearest-neighbour searches over `candidates` generated points per data point, each
    followed by `steps` Adam steps (learning rate `lr`) on minibatches of `batch_size` (data point, its nearest)."""

    rounds: int
    candidates: int
    steps: int
    batch_size: int
    lr: float


def mapper(noise_dim: int, hidden: int, layers: int, out_dim: int) -> MLP:
    """An MLP of `layers` fully-connected layers from auxiliary noise to the latent space."""
    return MLP([noise_dim] + [hidden] * (layers - 1) + [out_dim])


def nearest(queries: torch.Tensor, points: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Index into `points` [M, D] of the point nearest to each query [N, D] (squared Euclidean), in chunks of
    queries so that no N x M distance matrix is held at once."""
    out = [torch.cdist(queries[i:i + chunk], points).argmin(1) for i in range(0, len(queries), chunk)]
    return torch.cat(out)


def fit_imle(net: nn.Module, noise_dim: int, data: torch.Tensor, settings: IMLESettings,
             generator: torch.Generator) -> list[float]:
    """Fit `net` (noise [B, noise_dim] -> [B, D]) so that every row of `data` [N, D] has a generated point near it;
    noise and minibatches are drawn from `generator` (on the CPU: the same fit on every device). Returns the mean
    squared distance of each round's last step."""
    device = data.device
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    losses = []
    for _ in range(settings.rounds):
        noise = torch.randn(len(data) * settings.candidates, noise_dim, generator=generator).to(device)
        with torch.no_grad():
            chosen = noise[nearest(data, net(noise))]  # each data point's nearest generated point, by its noise
        for _ in range(settings.steps):
            idx = torch.randint(len(data), (min(settings.batch_size, len(data)),), generator=generator).to(device)
            loss = (net(chosen[idx]) - data[idx]).square().sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        losses.append(float(loss.detach()))
    return losses
