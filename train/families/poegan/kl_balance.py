"""KL rebalancing across resolutions (supplement B, Eq. 1), after NVAE."""
import torch

from ...distributed import mean_over_ranks

DECAY = 0.99  # B: running average of the rebalancing weights with decay 0.99


def rebalance_weights(kl_per_resolution: torch.Tensor, areas: torch.Tensor) -> torch.Tensor:
    """omega^k proportional to KL^k / (w^k h^k), scaled so that their mean is 1 (Eq. 1)."""
    raw = kl_per_resolution.detach().float().clamp_min(0) / areas
    total = raw.sum()
    return torch.where(total > 0, raw * (len(raw) / total), torch.ones_like(raw))  # no branch: no GPU sync


class KLBalancer:
    """Running average (decay 0.99) of the Eq. 1 weights; starts at 1 for every resolution."""

    def __init__(self, resolutions: list[int], decay: float = DECAY):
        self.areas = torch.tensor([float(r * r) for r in resolutions])
        self.weights = torch.ones(len(resolutions))
        self.decay = decay

    def update(self, kl_per_resolution: torch.Tensor) -> torch.Tensor:
        """Fold this batch's Eq. 1 weights into the running average and return the average (on the KL's device).
        The KL is first averaged over ranks, so every rank keeps the same weights (and a resume restores them
        exactly)."""
        weights = self.on(kl_per_resolution.device)
        new = rebalance_weights(mean_over_ranks(kl_per_resolution), self.areas)
        self.weights = self.decay * weights + (1 - self.decay) * new
        return self.weights

    def on(self, device) -> torch.Tensor:
        """The running weights, kept on `device` from now on: one host copy per run, not one (a GPU sync) a step."""
        self.weights, self.areas = self.weights.to(device), self.areas.to(device)
        return self.weights

    def state_dict(self) -> dict:
        return {"weights": self.weights.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.weights = state["weights"].clone()
