"""Product of Gaussian experts with a prior expert that is always present (main paper Sec. 3.1, supplement B)."""
import torch

from ...noise import randn_like

PRIOR_THETA = 1.0  # B: log-variance of the prior expert limited to (-1, 1)
EXPERT_THETA = 10.0  # B: log-variance of experts predicted from modalities limited to (-10, 10)


def limit_logvar(logvar: torch.Tensor, theta: float) -> torch.Tensor:
    """theta * tanh(logvar / theta): keeps the log variance inside (-theta, theta) (supplement B)."""
    return theta * torch.tanh(logvar / theta)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(like.dtype).reshape(mask.shape + (1,) * (like.dim() - mask.dim()))


def product_of_experts(prior, experts):
    """The Gaussian product of the prior (mu, logvar) and experts (mu, logvar, mask[B]) whose mask is set.

    Precision is the sum of the precisions, the mean the precision-weighted mean; a masked-out expert has
    zero precision, so with every expert masked the product is the prior itself.
    """
    mu0, logvar0 = prior
    precision = torch.exp(-logvar0)
    weighted = mu0 * precision
    for mu, logvar, mask in experts:
        p = torch.exp(-logvar) * _expand(mask, mu)
        precision = precision + p
        weighted = weighted + mu * p
    var = 1.0 / precision
    return weighted * var, torch.log(var)


def kl_gaussians(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """Elementwise KL(N(mu_q, var_q) || N(mu_p, var_p)) of diagonal Gaussians."""
    return 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) * torch.exp(-logvar_p) - 1.0)


def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A reparameterised draw mu + sigma * eps."""
    return mu + torch.exp(0.5 * logvar) * randn_like(mu)


def single_modality_kls(prior, experts: dict) -> dict:
    """Per modality, KL(p(z | y_i) || p(z)) summed over all but the batch axis (main paper Eq. 9).

    p(z | y_i) is the product of the prior and expert i alone; the result is [B] per modality.
    """
    out = {}
    for name, (mu, logvar, _mask) in experts.items():
        ones = torch.ones(mu.shape[0], device=mu.device, dtype=torch.bool)
        mu_q, logvar_q = product_of_experts(prior, [(mu, logvar, ones)])
        out[name] = kl_gaussians(mu_q, logvar_q, *prior).flatten(1).sum(1)
    return out
