"""MoNCE (Zhan et al., CVPR 2022, arXiv:2203.09333) in its paired setting on SPADE:
SPADE's objective with the perceptual L1 replaced by a modulated patch contrast on the frozen VGG-19's relu1_1 ..
relu5_1. Facts from fnzhan/MoNCE SPADE_MoNCE (models/networks/loss.py VGGLoss, conce.py, sinkhorn.py); where the
supplement differs, docs/monce.md says which was taken."""
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .spade_loss import VGG_WEIGHTS, SPADELoss, vgg_features

NCE_T = 0.07  # temperature (CUT's nce_T)
NUM_PATCHES = 256  # locations sampled per layer
OT_EPS = 1.0  # entropic regularisation of the transport
OT_ITERS = 50  # Sinkhorn iterations
DIAGONAL = -10.0  # similarity given to a location with itself (masked out of the negatives and of the plan)
OT_WEIGHT = 128.0  # --ot_weight of the train_*.sh scripts: scales the plan; the loss does not depend on it
OT_LAYER = 4  # the plan reweights relu5_1 only; relu1_1 .. relu4_1 are plain PatchNCE


def _self_pairs(n: int, device) -> torch.Tensor:
    return torch.eye(n, dtype=torch.bool, device=device)


def sinkhorn_plan(q: torch.Tensor, k: torch.Tensor, eps: float = OT_EPS, iters: int = OT_ITERS) -> torch.Tensor:
    """Entropic optimal-transport plan [B, P, P] between each image's P query features `q` and P key features
    `k` (both [B, P, C], L2-normalised): kernel exp(cos / eps), a location paired with itself at DIAGONAL,
    rows and columns scaled by `iters` Sinkhorn iterations towards sums of 1 (columns exactly, rows nearly).
    Differentiable in `q` only."""
    similarity = (q @ k.detach().transpose(1, 2)).masked_fill(_self_pairs(q.shape[1], q.device), DIAGONAL)
    kernel = torch.exp(similarity / eps)
    v = torch.ones_like(kernel[:, 0])
    for _ in range(iters):
        u = 1 / (kernel @ v.unsqueeze(-1)).squeeze(-1)
        v = 1 / (u.unsqueeze(1) @ kernel).squeeze(1)
    return u.unsqueeze(-1) * kernel * v.unsqueeze(1)


def patch_nce(q: torch.Tensor, k: torch.Tensor, plan: torch.Tensor | None = None,
              ot_weight: float = OT_WEIGHT) -> torch.Tensor:
    """Mean over the B * P query locations of the cross-entropy of picking the key at the same location among
    the P keys of the same image (the key at the same location is the positive, logits cos / NCE_T). With a
    transport `plan` each logit gains log(ot_weight * plan + 1e-8): a negative its plan entry, the positive its
    row's largest entry. Gradients reach `q` (and `plan`), never `k`."""
    k = k.detach()
    similarity = q @ k.transpose(1, 2)  # [B, P, P]; the diagonal pairs each location with itself
    positive = similarity.diagonal(dim1=1, dim2=2)
    negative = similarity
    if plan is not None:
        modulation = NCE_T * torch.log(plan * ot_weight + 1e-8)
        positive = positive + modulation.max(-1).values
        negative = negative + modulation
    negative = negative.masked_fill(_self_pairs(q.shape[1], q.device), DIAGONAL)
    logits = torch.cat([positive.unsqueeze(-1), negative], -1).flatten(0, 1) / NCE_T
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def sample_locations(features: list[torch.Tensor], num: int = NUM_PATCHES) -> list[torch.Tensor]:
    """Per layer, `num` distinct random locations (all if fewer), drawn on the features' device (no host copy per
    step; that device's RNG is in the training state, so a resumed run repeats them); the same locations serve
    fake and real and every image of the batch."""
    return [torch.randperm(f.shape[2] * f.shape[3], device=f.device)[:num] for f in features]


def _at(feature: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """The L2-normalised features [B, P, C] at `locations` of the flattened map, in fp32."""
    return F.normalize(feature.float().flatten(2)[:, :, locations].transpose(1, 2), dim=-1, eps=1e-7)


def monce(vgg, fake: torch.Tensor, real: torch.Tensor, ot_weight: float = OT_WEIGHT) -> torch.Tensor:
    """The modulated patch contrast of `fake` against `real`: sum over relu1_1 .. relu5_1 of SPADE's layer
    weights times patch_nce, the relu5_1 logits reweighted by the Sinkhorn plan (gradients through the plan
    into the fake features)."""
    with torch.no_grad():
        real_features = vgg_features(vgg, real)
    fake_features = vgg_features(vgg, fake)
    total = fake.new_zeros((), dtype=torch.float32)
    device = fake.device.type  # 50 Sinkhorn divisions: fp32 under mixed precision (meta, a stand-in, has none)
    with torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext():
        for i, (w, f, r, at) in enumerate(zip(VGG_WEIGHTS, fake_features, real_features,
                                              sample_locations(real_features))):
            q, k = _at(f, at), _at(r, at)
            plan = sinkhorn_plan(q, k) if i == OT_LAYER else None
            total = total + w * patch_nce(q, k, plan, ot_weight)
    return total


class MoNCELoss(SPADELoss):
    """SPADE's objective (hinge, feature matching 10, KL only with the VAE) with `cfg.vgg_weight` times the
    modulated patch contrast in place of the perceptual L1 (logged as G_monce)."""

    image_term = "G_monce"

    def image_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return monce(self.vgg, fake, real)
