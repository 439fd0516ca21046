"""The SPADE objective as one object with one entry point, `accumulate_gradients(phase, ...)`, like
PoE-GAN's: hinge adversarial loss averaged over the discriminator scales, discriminator feature matching
(weight 10), VGG-19 perceptual loss (weight 10) and the encoder's KL divergence (weight 0.05) — NVlabs/SPADE
models/pix2pix_model.py and models/networks/loss.py; the INADE supplement (001) Eq. 5 restates the weights."""
import torch
import torch.nn.functional as F

from ...models import DISCRIMINATOR_PHASE, GENERATOR_PHASE, Phase, Stateless
from .spade_config import SPADEConfig

# VGGLoss: L1 on relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (torchvision vgg19().features indices) ...
VGG_LAYERS = (1, 6, 11, 20, 29)
VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)  # ... weighted 1/32, 1/16, 1/8, 1/4, 1


def hinge_d(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))), each averaged over scales."""
    real = sum(F.relu(1 - r).mean() for r in real_logits) / len(real_logits)
    fake = sum(F.relu(1 + f).mean() for f in fake_logits) / len(fake_logits)
    return real + fake


def hinge_g(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Generator hinge loss: -mean(D(fake)), averaged over scales."""
    return -sum(f.mean() for f in fake_logits) / len(fake_logits)


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]],
                     layers: slice = slice(None, -1)) -> torch.Tensor:
    """L1 between the discriminator's intermediate outputs (`layers`: all but the logits) on fake and real, summed
    over layers and averaged over scales (lambda_feat / num_D per term in SPADE)."""
    total = sum(F.l1_loss(f, r.detach()) for fs, rs in zip(fake, real) for f, r in zip(fs[layers], rs[layers]))
    return total / len(fake)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the code's dimensions (SPADE's KLDLoss), mean over the
    batch (SPADE sums over its per-GPU batch; the mean keeps the weight independent of the batch size)."""
    mu, logvar = mu.float(), logvar.float()  # exp() of an fp16 log-variance overflows under mixed precision
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp())).sum(1).mean()


def vgg_features(vgg, image: torch.Tensor) -> list[torch.Tensor]:
    """relu1_1 .. relu5_1 of the shared frozen VGG-19 (train/vgg.py) on the image in [-1, 1] as it is: NVlabs/SPADE,
    tzt101/INADE and fnzhan/MoNCE feed their VGG19 (architecture.py) the generator's range, not ImageNet's."""
    x = image
    out = []
    for i, layer in enumerate(vgg.features):
        x = layer(x)
        if i in VGG_LAYERS:
            out.append(x)
    return out


def perceptual(vgg, fake: torch.Tensor, real: torch.Tensor, weights: tuple = VGG_WEIGHTS) -> torch.Tensor:
    """SPADE's VGG loss: sum over the five layers of weight * L1(fake features, real features)."""
    with torch.no_grad():
        targets = vgg_features(vgg, real)
    return sum(w * F.l1_loss(f, t) for w, f, t in zip(weights, vgg_features(vgg, fake), targets) if w)


class SPADELoss(Stateless):
    """G phase: hinge + 10 feature matching + 10 VGG + 0.05 KL (with the VAE); D phase: hinge on real and
    (detached) fake. No regularisation phase (SPADE has no R1); nothing to carry across a resume."""

    def __init__(self, G, D, vgg, cfg: SPADEConfig):
        self.G, self.D, self.vgg, self.cfg = G, D, vgg, cfg

    def accumulate_gradients(self, phase: Phase, batch: dict, masks: dict, backward) -> dict[str, torch.Tensor]:
        """Compute the G or D phase on a batch, hand its total to `backward`, return the loss terms (detached
        device tensors). With the VAE the generator always encodes the real image's style (SPADE trains that path
        on every sample), so `masks` are unused."""
        step = {GENERATOR_PHASE: self._generator, DISCRIMINATOR_PHASE: self._discriminator}[phase]
        return step(batch, backward)

    image_term = "G_vgg"  # the name of the term comparing fake and real images through the VGG-19

    def image_loss(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The VGG-19 term between generated and real images: SPADE's perceptual L1."""
        return perceptual(self.vgg, fake, real)

    def generator_terms(self, batch: dict) -> dict[str, torch.Tensor]:
        """The unweighted generator loss terms on a batch (with graph); the KL only with the VAE."""
        fake, posterior = self.G(batch)
        fake_out = self.D(fake, batch)
        with torch.no_grad():
            real_out = self.D(batch["image"], batch)
        terms = {"G_hinge": hinge_g([o[-1] for o in fake_out]), "G_feat": self.feature_loss(fake_out, real_out),
                 self.image_term: self.image_loss(fake, batch["image"])}
        if posterior is not None:
            terms["G_kl"] = self.kl_loss(posterior)
        return terms

    def feature_loss(self, fake_out: list, real_out: list) -> torch.Tensor:
        """Feature matching on every intermediate discriminator layer."""
        return feature_matching(fake_out, real_out)

    def kl_loss(self, posterior: tuple) -> torch.Tensor:
        """The KL of the encoder's (mu, logvar) to N(0, I)."""
        return kl_divergence(*posterior)

    def _generator(self, batch, backward):
        terms = self.generator_terms(batch)
        c = self.cfg
        weights = {"G_hinge": 1.0, "G_feat": c.feat_weight, self.image_term: c.vgg_weight, "G_kl": c.kl_weight}
        backward(sum(weights[name] * t for name, t in terms.items()))
        return {name: t.detach() for name, t in terms.items()}

    def _discriminator(self, batch, backward):
        with torch.no_grad():
            fake, _ = self.G(batch)
        fake_logits = [o[-1] for o in self.D(fake.detach(), batch)]
        real_logits = [o[-1] for o in self.D(batch["image"], batch)]
        loss = hinge_d(real_logits, fake_logits)
        backward(loss)
        return {"D_hinge": loss.detach()}
