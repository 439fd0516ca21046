"""The Gaussian diffusion of ADM (openai/guided-diffusion gaussian_diffusion.py): T steps of linear betas,
epsilon prediction with a learned-range variance trained by the hybrid loss (MSE + variational bound, Nichol &
Dhariwal 2021 Eq. 16), and sampling on respaced timesteps by DDIM (eta = 0) or ancestrally. The schedule tables and
the sampling steps are diffusers' DDPMScheduler / DDIMScheduler; the variational bound is written out here (no
library has it)."""
import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from ...noise import generator, randn_like


class Diffusion:
    """Schedule tables (float64 on the CPU, moved with the tensors they meet) and the hybrid loss."""

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        self.schedule = dict(num_train_timesteps=timesteps, beta_start=beta_start, beta_end=beta_end,
                             beta_schedule="linear", clip_sample=True, timestep_spacing="leading")
        self.timesteps = timesteps
        betas = DDPMScheduler(**self.schedule).betas.double()
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        self.betas, self.alphas_cumprod = betas, alphas_cumprod
        # q(x_{t-1} | x_t, x_0) (Ho et al. 2020 Eq. 7); the log variance clipped at t = 0, where it is 0
        self.posterior_variance = betas * (1 - prev) / (1 - alphas_cumprod)
        self.posterior_log_variance = torch.log(torch.cat([self.posterior_variance[1:2],
                                                           self.posterior_variance[1:]]))
        self.posterior_coef_x0 = betas * prev.sqrt() / (1 - alphas_cumprod)
        self.posterior_coef_xt = (1 - prev) * (1 - betas).sqrt() / (1 - alphas_cumprod)
        self.log_betas = betas.log()
        self._copies = {}  # (table, device) -> the table there: moved once, not at every step

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
        abar = self._at("alphas_cumprod", t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log variance (clipped) of q(x_{t-1} | x_t, x_0)."""
        mean = self._at("posterior_coef_x0", t, x0) * x0 + self._at("posterior_coef_xt", t, xt) * xt
        return mean, self._at("posterior_log_variance", t, xt)

    def model_log_variance(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Learned range (Nichol & Dhariwal Eq. 15): v in [-1, 1] interpolates log beta_t and log beta~_t."""
        frac = (v + 1) / 2
        return frac * self._at("log_betas", t, v) + (1 - frac) * self._at("posterior_log_variance", t, v)

    def hybrid_loss(self, output: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                    noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the epsilon MSE and the variational-bound term (bits per dimension; KL to the posterior,
        the decoder's discretised likelihood at t = 0), the latter through the variance only (the mean is
        stopped, as ADM's training_losses does)."""
        eps, v = output.float().chunk(2, dim=1)
        mse = (noise - eps).square().mean((1, 2, 3))
        abar = self._at("alphas_cumprod", t, xt)
        pred_x0 = (xt - (1 - abar).sqrt() * eps.detach()) / abar.sqrt()
        model_mean, _ = self.posterior(pred_x0, xt, t)
        model_logvar = self.model_log_variance(v, t)
        true_mean, true_logvar = self.posterior(x0, xt, t)
        kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean((1, 2, 3)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar).mean((1, 2, 3)) / math.log(2.0)
        return mse, torch.where(t == 0, nll, kl)

    def sampler(self, kind: str, steps: int):
        """diffusers' scheduler for `steps` respaced steps (every T/steps-th timestep, as ADM's "ddimN"):
        DDIM or the ancestral sampler with the learned-range variance."""
        if kind == "ddim":
            scheduler = DDIMScheduler(**self.schedule, set_alpha_to_one=True, steps_offset=0)
        else:
            scheduler = DDPMScheduler(**self.schedule, variance_type="learned_range")
        scheduler.set_timesteps(steps)
        return scheduler

    def _at(self, table: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The schedule table's entries at t, [B, 1, 1, 1] in `like`'s dtype and device."""
        key = (table, like.device)
        if key not in self._copies:
            self._copies[key] = getattr(self, table).to(like.device)
        return self._copies[key][t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def sample(self, model_output, shape: tuple, device, kind: str = "ddim", steps: int = 100) -> torch.Tensor:
        """Images [-1, 1] of `shape` on `device` from noise: `model_output(x_t, t)` -> [B, 6, H, W] (epsilon, v).
        Noise comes from train/noise.py (a private generator for grids and evaluation, drawn on the CPU: the same
        on every device). The schedulers' tables stay on the host, indexed by Python timesteps: their 0-d entries
        enter the device's ops as scalars, with no copy and no sync; the network's timesteps are made on the
        device. DDIM clips its x_0 estimate to [-1, 1] and takes epsilon from the clipped x_0 (guided-diffusion
        ddim_sample: _predict_eps_from_xstart after clipping pred_xstart)."""
        scheduler = self.sampler(kind, steps)
        x = randn_like(torch.empty(shape, device=device))
        for t in scheduler.timesteps.tolist():
            out = model_output(x, torch.full((shape[0],), t, device=device, dtype=torch.long)).float()
            if kind == "ddim":  # epsilon re-derived from the clipped x_0, as ADM's ddim_sample
                x = scheduler.step(out[:, :3], t, x, eta=0.0, use_clipped_model_output=True).prev_sample
            else:
                x = scheduler.step(out, t, x, generator=generator()).prev_sample
        return x.clamp(-1, 1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp logvar1) || N(mean2, exp logvar2)), elementwise."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2).square() * torch.exp(-logvar2))


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """A fast approximation of the standard normal CDF (ADM's approx_standard_normal_cdf)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x, means, log_scales) -> torch.Tensor:
    """Log likelihood of 8-bit images x in [-1, 1] under a Gaussian discretised into 256 bins (edge bins open)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _std_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _std_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(
        x > 0.999, log_one_minus_cdf_min, torch.log((cdf_plus - cdf_min).clamp(min=1e-12))))
    return log_probs
