"""The PoE-GAN objective as one object with one entry point, `accumulate_gradients(phase, ...)` (the loop's Loss,
train/models.py; main paper Eq. 9 and Sec. 3.3; supplement B and Table 3)."""
import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ...models import DISCRIMINATOR_PHASE, GENERATOR_PHASE, Phase
from .configs import PoEGANConfig
from ...distributed import gather_batch
from .kl_balance import KLBalancer

MIN_TEMPERATURE = 0.01  # not in the paper: the learnable temperatures stop here, as CLIP caps its logit scale at 100
R1_GAMMA = 1.0  # B: R1 gradient penalty with weight 1 ...
R1_INTERVAL = 16  # ... and lazy regularization every 16 iterations
R1_PHASE = Phase("Dreg", "D", every=R1_INTERVAL, clip=False)  # lazy R1 on D, its gradient norm unclipped
PHASES = (GENERATOR_PHASE, DISCRIMINATOR_PHASE, R1_PHASE)


def contrastive(query: torch.Tensor, keys: torch.Tensor, log_temperature: torch.Tensor,
                present: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE: query i should be nearest (cosine) to key i among all keys of the batch; with `present` (bool [B]),
    among the present samples only, averaged over them (0 with fewer than two: no negative). Masked, not indexed,
    so no value is read back from the device. A learnable temperature below 0.01 is first clamped there in place
    (CLIP clamps its logit scale after each step)."""
    with torch.no_grad():
        log_temperature.clamp_(min=math.log(MIN_TEMPERATURE))
    logits = F.normalize(query.float(), dim=1) @ F.normalize(keys.float(), dim=1).t() / log_temperature.exp()
    targets = torch.arange(len(query), device=query.device)
    if present is None:
        return F.cross_entropy(logits, targets)
    logits = logits.masked_fill(~present[None, :], -math.inf)  # absent samples are no negatives ...
    logits = torch.where(present[:, None], logits, 0.0)  # ... and no queries (a finite row, weighted 0 below)
    per_query = F.cross_entropy(logits, targets, reduction="none") * present
    return per_query.sum() / present.sum().clamp(min=1)  # one present query: its only logit is its own, loss 0


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask.to(values.dtype)).sum() / len(values)


class PoEGANLoss:
    """Adversarial (non-saturating logistic, MPD at every scale), per-modality KL rebalanced per resolution,
    image contrastive on VGG-19 relu5_1, text contrastive, lazy R1."""

    def __init__(self, G, D, vgg, cfg: PoEGANConfig):
        self.G, self.D, self.vgg, self.cfg = G, D, vgg, cfg
        self.kl_balance = KLBalancer(cfg.resolutions)
        self._step_kls = []  # this step's spatial KL per accumulation round, folded in by `end_step`
        self._phases = {GENERATOR_PHASE: self._generator, DISCRIMINATOR_PHASE: self._discriminator,
                        R1_PHASE: self._r1}

    def state_dict(self) -> dict:
        """What an exact resume needs: the running KL rebalancing weights."""
        return {"kl_balance": self.kl_balance.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.kl_balance.load_state_dict(state["kl_balance"])

    def log_state(self) -> dict:
        """Extra per-step log fields: the current KL rebalancing weights."""
        return {"kl_balance": self.kl_balance.weights.clone()}  # read at the loop's log interval

    def end_step(self) -> None:
        """Fold the step's KL (the mean over its accumulation rounds, so the whole step's) into the rebalancing
        weights: once per step, however the step was split into rounds."""
        if self._step_kls:
            self.kl_balance.update(torch.stack(self._step_kls).mean(0))
            self._step_kls = []

    def accumulate_gradients(self, phase: Phase, batch: dict, masks: dict, backward) -> dict[str, torch.Tensor]:
        """Compute `phase` (one of PHASES) on a batch, hand its total to `backward`, return the loss terms
        (detached tensors on the device: reading one is a GPU sync, left to the loop's log interval)."""
        return self._phases[phase](batch, masks, backward)

    def _generator(self, batch, masks, backward):
        fake, kls = self.G(batch, masks)
        logits, image_emb, text_emb = self.D(fake, batch, masks)
        adv = sum(F.softplus(-logit).mean() for logit in logits)
        kl, kl_terms = self.kl_loss(kls, masks)
        fake_feats, real_feats = gather_batch(self.vgg(fake)), gather_batch(self.vgg(batch["image"]))
        img_c = contrastive(fake_feats, real_feats, self.G.log_temperature)
        txt_c = self._text_contrastive(image_emb, text_emb, masks["text"])
        total = adv + kl + self.cfg.image_contrastive * img_c + self.cfg.text_contrastive * txt_c
        backward(total)
        return {"G_adv": adv.detach(), "G_kl": kl.detach(), "G_img_contrastive": img_c.detach(),
                "G_text_contrastive": txt_c.detach(), **kl_terms}

    def _discriminator(self, batch, masks, backward):
        with torch.no_grad():
            fake, _ = self.G(batch, masks)
        fake_logits, _, _ = self.D(fake, batch, masks)
        real_logits, image_emb, text_emb = self.D(batch["image"], batch, masks)
        adv = sum(F.softplus(f).mean() + F.softplus(-r).mean() for f, r in zip(fake_logits, real_logits))
        txt_c = self._text_contrastive(image_emb, text_emb, masks["text"])
        backward(adv + self.cfg.text_contrastive * txt_c)
        return {"D_adv": adv.detach(), "D_text_contrastive": txt_c.detach()}

    def _r1(self, batch, masks, backward):
        real = batch["image"].detach().float().requires_grad_(True)
        device = real.device.type  # fp32: the inner gradient is not loss-scaled (meta, a stand-in, has no autocast)
        with torch.autocast(device, enabled=False) if torch.amp.is_autocast_available(device) else nullcontext():
            logits, _, _ = self.D(real, batch, masks)
            (grad,) = torch.autograd.grad(sum(l.sum() for l in logits), real, create_graph=True)
        penalty = grad.square().sum((1, 2, 3)).mean()
        backward(penalty * (R1_GAMMA / 2 * R1_INTERVAL))  # lazy: scaled by the interval (StyleGAN2)
        return {"D_r1": penalty.detach()}

    def _text_contrastive(self, image_emb, text_emb, text_mask):
        """Over the global batch: every rank's samples whose text is present."""
        image_emb, text_emb, text_mask = gather_batch(image_emb), gather_batch(text_emb), gather_batch(text_mask)
        return contrastive(image_emb, text_emb, self.D.log_temperature, present=text_mask.bool())

    def kl_loss(self, kls: list[dict], masks: dict) -> tuple[torch.Tensor, dict]:
        """sum_i lambda_i sum_k omega^k KL_i^k (Eq. 9): lambda from Table 3, omega from Eq. 1 for the spatial
        latents z^1..z^N (the running average as of the step's start; `end_step` folds this KL in); z^0 (1x1,
        global) enters with weight 1."""
        weights = self.cfg.kl_weights
        per_level = [sum(weights[n] * _masked_mean(v, masks[n]) for n, v in level.items()) for level in kls]
        self._step_kls.append(torch.stack([t.detach() for t in per_level[1:]]))
        omega = self.kl_balance.on(per_level[0].device)
        total = per_level[0] + sum(w * t for w, t in zip(omega, per_level[1:]))
        raw = {f"kl_{n}": sum(_masked_mean(level[n], masks[n]).detach() for level in kls if n in level)
               for n in weights}
        return total, raw
