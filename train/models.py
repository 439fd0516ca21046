"""Model families the trainer knows: name -> builder. A baseline adds one module and one line here."""
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class OptimizerSettings:
    """Adam settings of one family: learning rates of G and D, betas, gradient-norm clip (None: no clipping)."""

    lr_G: float
    lr_D: float
    betas: tuple[float, float]
    grad_clip: float | None
    betas_D: tuple[float, float] | None = None  # None: `betas`

    def adam(self, network: str) -> tuple[float, tuple[float, float]]:
        """Adam's (lr, betas) of network "G" or "D"."""
        return (self.lr_G, self.betas) if network == "G" else (self.lr_D, self.betas_D or self.betas)


@dataclass(frozen=True)
class SharedAdam:
    """One Adam setting for every network of a family (a diffusion family has one network)."""

    lr: float
    betas: tuple[float, float]
    grad_clip: float | None

    def adam(self, network: str) -> tuple[float, tuple[float, float]]:
        return self.lr, self.betas


@dataclass(frozen=True)
class Network:
    """One trained network of a family: its key (in snapshots, optimiser and scaler states, phases) and what
    `pipeline train --dry-run` calls it."""

    key: str
    label: str


@dataclass(frozen=True)
class Phase:
    """One optimisation phase of a training step: the loss's phase name (passed to `accumulate_gradients`, prefix
    of its logged gradient norm), the network it trains with its own optimiser, the steps it is due on, and
    whether its gradient norm is clipped at the family's `grad_clip`."""

    name: str
    network: str
    every: int = 1  # due on steps divisible by this (lazy regularisation)
    clip: bool = True

    def due(self, step: int) -> bool:
        return step % self.every == 0


GAN_NETWORKS = (Network("G", "generator"), Network("D", "discriminator"))
GAN_PHASES = (Phase("G", "G"), Phase("D", "D"))


def lazy_regularisation(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple]:
    """Adam's lr and betas for a network regularised every `interval` steps: a regularisation step stands for
    `interval` of them, so one main + one lazy step take interval + 1 steps' worth (StyleGAN2, Appendix B:
    lr * c, beta ** c with c = interval / (interval + 1))."""
    c = interval / (interval + 1)
    return lr * c, tuple(b ** c for b in betas)


@dataclass(frozen=True)
class ModelFamily:
    """How to build a family's configuration, networks, loss object and optimizer settings, which networks it
    trains in which phases, and which evaluation conditions it can be scored under. The first of `network_keys`
    is the generator: the loop keeps its moving average (`<key>_ema` in snapshots), which draws the sample grids
    and is evaluated, as `G(batch, masks) -> (image, extra)`."""

    config: Callable[[str], object]  # profile name -> configuration
    networks: Callable[[object, int], tuple[nn.Module, ...]]  # (config, num_classes) -> one per `network_keys`
    loss: Callable  # (*networks, vgg, config) -> loss object: accumulate_gradients per round, end_step, state_dict
    optimizer: Callable[[object], OptimizerSettings | SharedAdam]  # configuration -> Adam settings per network
    conditions: tuple[str, ...] | None = None  # evaluation conditions it can be scored under; None: every one
    network_keys: tuple[Network, ...] = GAN_NETWORKS
    phases: tuple[Phase, ...] = GAN_PHASES  # run in this order within a step
    uses_vgg: bool = True  # its loss takes the VGG-19 (relu5_1) the trainer loads from params `vgg_weights`
    # (networks by key, condition batch, modality masks) -> outputs of the forward whose activations a training
    # step holds (train/memory.py); None: a GAN's, the generator then the discriminator on its image
    training_forward: Callable[[dict, dict, dict], object] | None = None
    # (configuration, params section train.<model>) -> the configuration with the params' settings; None: as is
    with_params: Callable[[object, object], object] | None = None
    # configuration -> at most this many evaluation images per condition when none are asked for (what the
    # profile's sampling can afford); None: params evaluate.num_images
    eval_images: Callable[[object], int | None] | None = None

    def configure(self, profile: str, section) -> object:
        """The configuration `profile` with the params section's settings applied."""
        cfg = self.config(profile)
        return self.with_params(cfg, section) if self.with_params else cfg

    def build(self, cfg, num_classes: int) -> dict[str, nn.Module]:
        """The networks by key, in `network_keys` order."""
        built = self.networks(cfg, num_classes)
        return dict(zip((n.key for n in self.network_keys), built, strict=True))

    def generator(self, cfg, num_classes: int) -> nn.Module:
        """The generator alone (built with the others, which are dropped)."""
        return self.build(cfg, num_classes)[self.network_keys[0].key]


def _poegan() -> ModelFamily:
    from .configs import get_config
    from .loop import BETAS, GRAD_CLIP
    from .loss import R1_INTERVAL, PoEGANLoss
    from .poegan.discriminator import Discriminator
    from .poegan.generator import Generator

    def optimizer(cfg):
        lr_D, betas_D = lazy_regularisation(cfg.lr, BETAS, R1_INTERVAL)  # D has lazy R1; G no regulariser
        return OptimizerSettings(cfg.lr, lr_D, BETAS, GRAD_CLIP, betas_D)

    return ModelFamily(get_config, lambda cfg, n: (Generator(cfg, n), Discriminator(cfg, n)), PoEGANLoss, optimizer,
                       phases=(*GAN_PHASES, Phase("Dreg", "D", every=R1_INTERVAL, clip=False)))  # lazy R1, unclipped


def _spade(condition: str, monce: bool = False) -> ModelFamily:
    """SPADE on `condition`; `monce`: MoNCE's paired setting (deterministic SPADE, modulated patch contrast)."""
    from .baselines.monce_loss import MoNCELoss
    from .baselines.spade import networks
    from .baselines.spade_config import CONFIGS, MONCE_CONFIGS, config_for
    from .baselines.spade_loss import SPADELoss

    return ModelFamily(config_for(condition, MONCE_CONFIGS if monce else CONFIGS), networks,
                       MoNCELoss if monce else SPADELoss,
                       lambda cfg: OptimizerSettings(cfg.lr_G, cfg.lr_D, cfg.betas, cfg.grad_clip),
                       conditions=(condition,))  # conditioned on one modality: only evaluated under it


def _unite_conquer() -> ModelFamily:
    """Diffusion experts per modality trained in one phase, no discriminator, no VGG; the generator samples."""
    from .baselines.unite_conquer.config import get_config, with_params
    from .baselines.unite_conquer.experts import Experts
    from .baselines.unite_conquer.loss import ExpertsLoss

    def training_forward(nets, cond, masks):  # one expert's activations are alive at a time: the largest's
        G = nets["G"]
        name = max(G.experts, key=lambda n: count_parameters(G.experts[n]))
        t = torch.zeros(len(cond["image"]), dtype=torch.long, device=cond["image"].device)
        return G.expert(name, cond["image"], t, cond, masks[name], train=True)

    return ModelFamily(get_config, lambda cfg, n: (Experts(cfg, n),), ExpertsLoss,
                       lambda cfg: SharedAdam(cfg.lr, (0.9, 0.999), None),  # ADM: AdamW defaults, no clipping
                       network_keys=(Network("G", "generator"),), phases=(Phase("G", "G"),), uses_vgg=False,
                       training_forward=training_forward, with_params=with_params,
                       eval_images=lambda cfg: cfg.eval_images)


REGISTRY: dict[str, Callable[[], ModelFamily]] = {
    "poegan": _poegan,
    "spade-seg": lambda: _spade("seg"),
    "spade-sketch": lambda: _spade("sketch"),
    "spade-seg-monce": lambda: _spade("seg", monce=True),
    "unite-conquer": _unite_conquer,
}


def family(name: str) -> ModelFamily:
    """The model family `name`; unknown names raise KeyError listing the known ones."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters())
