"""The PoE-GAN objective as one object with one entry point, `accumulate_gradients(phase, ...)`
(main paper Eq. 9 and Sec. 3.3; supplement B and Table 3)."""
import torch
import torch.nn.functional as F

from .configs import PoEGANConfig
from .kl_balance import KLBalancer

R1_GAMMA = 1.0  # B: R1 gradient penalty with weight 1 ...
R1_INTERVAL = 16  # ... and lazy regularization every 16 iterations
PHASES = ("G", "D", "Dreg")


def contrastive(query: torch.Tensor, keys: torch.Tensor, log_temperature: torch.Tensor) -> torch.Tensor:
    """InfoNCE: query i should be nearest (cosine) to key i among all keys of the batch."""
    logits = F.normalize(query.float(), dim=1) @ F.normalize(keys.float(), dim=1).t() / log_temperature.exp()
    return F.cross_entropy(logits, torch.arange(len(query), device=query.device))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask.to(values.dtype)).sum() / len(values)


class PoEGANLoss:
    """Adversarial (non-saturating logistic, MPD at every scale), per-modality KL rebalanced per resolution,
    image contrastive on VGG-19 relu5_1, text contrastive, lazy R1."""

    def __init__(self, G, D, vgg, cfg: PoEGANConfig, backward=torch.Tensor.backward):
        self.G, self.D, self.vgg, self.cfg = G, D, vgg, cfg
        self.kl_balance = KLBalancer(cfg.resolutions)
        self.backward = backward  # the loop passes a GradScaler-aware backward under mixed precision

    def state_dict(self) -> dict:
        """What an exact resume needs: the running KL rebalancing weights."""
        return {"kl_balance": self.kl_balance.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.kl_balance.load_state_dict(state["kl_balance"])

    def log_state(self) -> dict:
        """Extra per-step log fields: the current KL rebalancing weights."""
        return {"kl_balance": self.kl_balance.weights.clone()}  # read at the loop's log interval

    def r1_due(self, step: int) -> bool:
        """Lazy regularisation: R1 runs only on every 16th step."""
        return step % R1_INTERVAL == 0

    def accumulate_gradients(self, phase: str, batch: dict, masks: dict, step: int) -> dict[str, torch.Tensor]:
        """Compute phase `phase` ("G", "D" or "Dreg") on a batch, backpropagate, return the loss terms (detached
        tensors on the device: reading one is a GPU sync, left to the loop's log interval)."""
        if phase == "G":
            return self._generator(batch, masks)
        if phase == "D":
            return self._discriminator(batch, masks)
        if phase == "Dreg":
            return self._r1(batch, masks) if self.r1_due(step) else {}
        raise ValueError(f"unknown loss phase {phase!r}; expected one of {PHASES}")

    def _generator(self, batch, masks):
        fake, kls = self.G(batch, masks)
        logits, image_emb, text_emb = self.D(fake, batch, masks)
        adv = sum(F.softplus(-logit).mean() for logit in logits)
        kl, kl_terms = self.kl_loss(kls, masks)
        img_c = contrastive(self.vgg(fake), self.vgg(batch["image"]), self.G.log_temperature)
        txt_c = self._text_contrastive(image_emb, text_emb, masks["text"])
        total = adv + kl + self.cfg.image_contrastive * img_c + self.cfg.text_contrastive * txt_c
        self.backward(total)
        return {"G_adv": adv.detach(), "G_kl": kl.detach(), "G_img_contrastive": img_c.detach(),
                "G_text_contrastive": txt_c.detach(), **kl_terms}

    def _discriminator(self, batch, masks):
        with torch.no_grad():
            fake, _ = self.G(batch, masks)
        fake_logits, _, _ = self.D(fake, batch, masks)
        real_logits, image_emb, text_emb = self.D(batch["image"], batch, masks)
        adv = sum(F.softplus(f).mean() + F.softplus(-r).mean() for f, r in zip(fake_logits, real_logits))
        txt_c = self._text_contrastive(image_emb, text_emb, masks["text"])
        self.backward(adv + self.cfg.text_contrastive * txt_c)
        return {"D_adv": adv.detach(), "D_text_contrastive": txt_c.detach()}

    def _r1(self, batch, masks):
        real = batch["image"].detach().requires_grad_(True)
        logits, _, _ = self.D(real, batch, masks)
        (grad,) = torch.autograd.grad(sum(l.sum() for l in logits), real, create_graph=True)
        penalty = grad.float().square().sum((1, 2, 3)).mean()
        self.backward(penalty * (R1_GAMMA / 2 * R1_INTERVAL))  # lazy: scaled by the interval (StyleGAN2)
        return {"D_r1": penalty.detach()}

    def _text_contrastive(self, image_emb, text_emb, text_mask):
        keep = text_mask.nonzero().flatten()
        if len(keep) < 2:  # a contrast needs at least one negative
            return image_emb.sum() * 0
        return contrastive(image_emb[keep], text_emb[keep], self.D.log_temperature)

    def kl_loss(self, kls: list[dict], masks: dict) -> tuple[torch.Tensor, dict]:
        """sum_i lambda_i sum_k omega^k KL_i^k (Eq. 9): lambda from Table 3, omega from Eq. 1 for the spatial
        latents z^1..z^N (running average); z^0 (1x1, global) enters with weight 1."""
        weights = self.cfg.kl_weights
        per_level = [sum(weights[n] * _masked_mean(v, masks[n]) for n, v in level.items()) for level in kls]
        omega = self.kl_balance.update(torch.stack([t.detach() for t in per_level[1:]])).to(per_level[0].device)
        total = per_level[0] + sum(w * t for w, t in zip(omega, per_level[1:]))
        raw = {f"kl_{n}": sum(_masked_mean(level[n], masks[n]).detach() for level in kls if n in level)
               for n in weights}
        return total, raw
