"""The generator of Unite-and-Conquer: one diffusion expert per modality, each also an unconditional model (its
condition dropped to null), combined at sampling time by the generalised product of experts (paper Eq. 10):
eps = sum_i w_i eps_i(z_t, x_i) - (sum_i w_i - 1) sum_j a_j eps_j(z_t, null)."""
import torch
from torch import nn

from .config import UniteConquerConfig
from .diffusion import Diffusion
from .unet import UNet


class Experts(nn.Module):
    """`G(batch, masks) -> (images, {})` as every generator of the trainer: the experts whose modality is present
    in `masks` are combined; none present samples unconditionally (the reliability-weighted mean of every expert's
    null estimate)."""

    def __init__(self, cfg: UniteConquerConfig, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.diffusion = Diffusion(cfg.timesteps, cfg.beta_start, cfg.beta_end)
        channels = {"seg": num_classes, "sketch": 1, "text": 0}
        self.experts = nn.ModuleDict({name: UNet(cfg, channels[name], clip=name == "text") for name in cfg.experts})

    def expert(self, name: str, x: torch.Tensor, t: torch.Tensor, batch: dict, keep: torch.Tensor | None,
               train: bool = False) -> torch.Tensor:
        """Expert `name`'s output [B, 6, H, W]; its condition is zeroed (null) where `keep` is False (None: null
        for all). The text expert takes the CLIP image embedding in training and the text's at sampling (paper
        supplement 7.3)."""
        cond = batch["clip_image" if train else "text"] if name == "text" else batch[name]
        cond = torch.zeros_like(cond) if keep is None else cond * keep.view(-1, *[1] * (cond.dim() - 1)).to(cond)
        net = self.experts[name]
        return net(x, t, clip=cond) if name == "text" else net(x, t, cond=cond)

    def product(self, selected: dict[str, torch.Tensor]):
        """Eq. 10 for one request, as `step(x, t, batch) -> [B, 6, H, W]`: `selected` maps each expert to a bool
        [B] (its modality given). w_i from the configuration; a_j = the configuration's reliabilities, else 1/N over
        the N selected experts (Sec. 4.1), all experts where none is. The variance output is the first selected
        expert's (the official sampler keeps its first model's), else the null mean's. The per-sample
        coefficients are computed once, on the masks' device, and which expert passes any sample needs is read to
        the host once (one copy): no step of the sampler waits for the device."""
        names = list(self.experts)
        sel = torch.stack([selected[n].float() for n in names])  # [E, B]; the sampler's x is float32
        count = sel.sum(0)
        given = sel if self.cfg.reliabilities is None else torch.stack(
            [row * self.cfg.reliabilities.get(n, 0.0) for row, n in zip(sel, names)])
        none = count == 0
        a = torch.where(none, 1.0 / len(names), given / given.sum(0).clamp(min=1e-12))  # [E, B]
        w = torch.stack([row * self.cfg.weights.get(n, 1.0) for row, n in zip(sel, names)])
        null_coef = torch.where(none, a, -(w.sum(0) - 1) * a)  # [E, B]
        conditional, null = torch.stack([sel.any(1), null_coef.ne(0).any(1)]).cpu().tolist()
        takes, first = [], torch.zeros_like(count, dtype=torch.bool)
        for name in names:  # each sample's variance comes from its first selected expert
            takes.append(selected[name] & ~first)
            first = first | selected[name]

        def step(x: torch.Tensor, t: torch.Tensor, batch: dict) -> torch.Tensor:
            eps, var, null_var = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
            for i, name in enumerate(names):
                if conditional[i]:
                    out = self.expert(name, x, t, batch, selected[name]).float()
                    eps = eps + _b(w[i]) * out[:, :3]
                    var = torch.where(_b(takes[i]), out[:, 3:], var)
                if null[i]:
                    out = self.expert(name, x, t, batch, None).float()
                    eps = eps + _b(null_coef[i]) * out[:, :3]
                    null_var = null_var + _b(a[i]) * out[:, 3:]
            return torch.cat([eps, torch.where(_b(first), var, null_var)], 1)

        return step

    def forward(self, batch: dict, masks: dict) -> tuple[torch.Tensor, dict]:
        """Images [B, 3, H, W] in [-1, 1] sampled with the configuration's sampler and steps."""
        step = self.product({name: masks[name] for name in self.experts})
        image = batch["image"]
        images = self.diffusion.sample(lambda x, t: step(x, t, batch), image.shape, image.device, self.cfg.sampler,
                                       self.cfg.sample_steps)
        return images, {}


def _b(v: torch.Tensor) -> torch.Tensor:
    """A per-sample vector [B] broadcast over [B, C, H, W]."""
    return v.view(-1, 1, 1, 1)
