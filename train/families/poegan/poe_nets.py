"""Global and local PoE-Nets (main paper Fig. 4, supplement B.1): experts predicted by small networks."""
import torch
from torch import nn

from .configs import GLOBAL_DIM
from ...layers import MLP, EqualConv2d, LeakyReLU
from .poe import EXPERT_THETA, PRIOR_THETA, limit_logvar, product_of_experts, sample, single_modality_kls


def _hidden(in_dim: int) -> int:
    # B.1: hidden width = input / 4. The floor only binds for `tiny` (every Table 3 input is >= 64 wide).
    return max(in_dim // 4, 16)


def _gaussian(out: torch.Tensor, theta: float):
    mu, logvar = out.chunk(2, dim=1)
    return mu, limit_logvar(logvar, theta)


class GlobalPoENet(nn.Module):
    """z^0 (512-d) from the prior N(0, I) and one 4-layer MLP expert per modality, then w = MLP(z^0)."""

    def __init__(self, in_dims: dict[str, int], mapping_hidden: int = GLOBAL_DIM):
        super().__init__()
        self.experts = nn.ModuleDict({
            name: MLP([d, _hidden(d), _hidden(d), _hidden(d), 2 * GLOBAL_DIM]) for name, d in in_dims.items()})
        self.mapping = MLP([GLOBAL_DIM, mapping_hidden, GLOBAL_DIM])  # B.1: two layers, hidden 512

    def forward(self, features: dict, masks: dict):
        """features: per modality a [B, D] vector. Returns (w, {modality: KL [B]})."""
        any_feat = next(iter(features.values()))
        zeros = torch.zeros(any_feat.shape[0], GLOBAL_DIM, device=any_feat.device)
        prior = (zeros, zeros)  # N(0, I): its log variance 0 is inside any tanh limit
        experts = {n: (*_gaussian(self.experts[n](f), EXPERT_THETA), masks[n]) for n, f in features.items()}
        z0 = sample(*product_of_experts(prior, experts.values()))
        return self.mapping(z0), single_modality_kls(prior, experts)


class ExpertCNN(nn.Sequential):
    """4 convolutions, 1x1 first and last, 3x3 between, width = input / 4 (B.1); outputs (mu, logvar)."""

    def __init__(self, in_ch: int, latent_ch: int):
        h = _hidden(in_ch)
        super().__init__(EqualConv2d(in_ch, h, 1), LeakyReLU(), EqualConv2d(h, h, 3), LeakyReLU(),
                         EqualConv2d(h, h, 3), LeakyReLU(), EqualConv2d(h, 2 * latent_ch, 1))


class LocalPoENet(nn.Module):
    """At one decoder resolution: the prior expert p(z^k | z^<k) from the decoder features, an expert per
    spatial modality from that modality's encoder features alone (as each Global PoE-Net expert reads only its
    modality, B.1 "similarly"); their product gives z^k. docs/poegan.md, "Parameter counts", gives the reading."""

    def __init__(self, dec_ch: int, enc_ch: dict[str, int], latent_ch: int):
        super().__init__()
        self.prior = ExpertCNN(dec_ch, latent_ch)
        self.experts = nn.ModuleDict({n: ExpertCNN(c, latent_ch) for n, c in enc_ch.items()})

    def forward(self, h, enc_feats: dict, masks: dict, eps: torch.Tensor | None = None):
        """Returns (z^k, {modality: KL(p(z^k|z^<k, y_i) || p(z^k|z^<k)) [B]}); only the modalities in `enc_feats`
        have an expert (none: z^k from the prior expert alone). eps: the standard normal draw of z^k (broadcast
        over the batch), instead of a fresh one."""
        prior = _gaussian(self.prior(h), PRIOR_THETA)
        experts = {n: (*_gaussian(net(enc_feats[n]), EXPERT_THETA), masks[n])
                   for n, net in self.experts.items() if n in enc_feats}
        mu, logvar = product_of_experts(prior, experts.values())
        z = sample(mu, logvar) if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return z, single_modality_kls(prior, experts)
