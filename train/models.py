"""Model families the trainer knows: name -> builder. A baseline adds one module and one line here.

Importing this module does not import torch (only building a family does), so the command line lists REGISTRY's
names in its help and choices without paying for it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
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
class EvalRow:
    """One row of a family's evaluation: its name in the report, the condition (train/metrics/conditions.py) whose
    modalities the generator is given and whose metrics score it, and the call generate(cond, masks) -> (image, _)."""

    name: str
    condition: str
    generate: Callable


@dataclass(frozen=True)
class FitFrom:
    """A family fitted from another family's trained run instead of trained by the loop."""

    base: str  # the family whose newest snapshot it fits from
    fit: Callable  # (base snapshot, run dir, config, num_classes, params section, device) -> summary dict


@dataclass(frozen=True)
class ModelFamily:
    """How to build a family's configuration, networks, loss object and optimizer settings, which networks it
    trains in which phases, and which evaluation conditions it can be scored under. The first of `network_keys`
    is the generator: the loop keeps its moving average (`<key>_ema` in snapshots), which draws the sample grids
    and is evaluated, as `G(batch, masks) -> (image, extra)`."""

    config: Callable[[str], object]  # configuration name -> configuration
    networks: Callable[[object, int], tuple[nn.Module, ...]]  # (config, num_classes) -> one per `network_keys`
    loss: Callable  # (*networks, vgg, config) -> loss object: accumulate_gradients per round, end_step, state_dict
    optimizer: Callable[[object], OptimizerSettings | SharedAdam]  # configuration -> Adam settings per network
    conditions: tuple[str, ...] | None = None  # evaluation conditions it can be scored under; None: every one
    rows: Callable[[nn.Module], list[EvalRow]] | None = None  # rows of the loaded G; None: one per condition
    fitted: FitFrom | None = None  # set: `pipeline train` fits it from the base's run (no loss, D, optimizer)
    # configuration -> the generator modalities (shardio.modalities MODEL_MODALITIES) its G reads, i.e. what `pipeline
    # generate` may give it; None: the modalities of `conditions` (every modality when that is None)
    inputs: Callable[[object], tuple[str, ...]] | None = None
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
    # fraction of the run's params `steps` trained at the full learning rate before a linear decay to 0
    # (train/schedule.py; SPADE's --niter / (--niter + --niter_decay)); None: constant
    lr_decay: float | None = None

    def takes(self, cfg) -> tuple[str, ...]:
        """The generator modalities G reads under `cfg`, in MODEL_MODALITIES order."""
        from shardio.modalities import MODEL_MODALITIES
        from .conditions import generator_modalities

        if self.inputs is not None:
            read = set(self.inputs(cfg))
        elif self.conditions is None:
            read = set(MODEL_MODALITIES)
        else:
            read = set().union(*(generator_modalities(c) for c in self.conditions))
        return tuple(m for m in MODEL_MODALITIES if m in read)

    def refusal(self, cfg, given) -> str | None:
        """Why G cannot generate from exactly the modalities `given` (a modality it does not read, or too few for
        a family not scored unconditionally: then some condition's modalities must all be given), else None."""
        from .conditions import generator_modalities

        takes = self.takes(cfg)
        extra = [m for m in given if m not in takes]
        if extra:
            return f"does not take {', '.join(extra)}; it takes {', '.join(takes)}"
        if self.conditions is None or "unconditional" in self.conditions:
            return None
        if not any(generator_modalities(c) <= set(given) for c in self.conditions):
            needed = " or ".join("+".join(sorted(generator_modalities(c))) for c in self.conditions)
            return f"cannot generate from {'+'.join(given) or 'no condition'}: it needs {needed}"
        return None

    def configure(self, name: str, section) -> object:
        """The configuration `name` with the params section's settings applied."""
        cfg = self.config(name)
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
    from .baselines.spade import conditioned_on, networks
    from .baselines.spade_config import CONFIGS, MONCE_CONFIGS, config_for
    from .baselines.spade_loss import SPADELoss

    return ModelFamily(config_for(condition, MONCE_CONFIGS if monce else CONFIGS), networks,
                       MoNCELoss if monce else SPADELoss,
                       lambda cfg: OptimizerSettings(cfg.lr_G, cfg.lr_D, cfg.betas, cfg.grad_clip),
                       conditions=(condition,),  # conditioned on one modality: only evaluated under it
                       inputs=conditioned_on,
                       lr_decay=0.5)  # --niter = --niter_decay: the second half decays (docs/spade.md, monce.md)


def _inade() -> ModelFamily:
    """INADE (docs/inade.md): SPADE's loop settings, instance-adaptive normalisation and noise remapping."""
    from .baselines.inade import networks
    from .baselines.inade_config import get_config
    from .baselines.inade_loss import InadeLoss

    return ModelFamily(get_config, networks, InadeLoss,
                       lambda cfg: OptimizerSettings(cfg.lr_G, cfg.lr_D, cfg.betas, cfg.grad_clip), conditions=("seg",))


def _cluster_guided() -> ModelFamily:
    """Cluster-guided synthesis over PoE-GAN's unconditional generator (arXiv:2112.12911)."""
    from .cluster_guided.fit import fit
    from .cluster_guided.generator import ClusterGuidedGenerator
    from .configs import get_config

    def unavailable(*_):
        raise TypeError("cluster-guided is fitted from a PoE-GAN run, not trained with a loss and optimizer")

    def rows(G):  # the mixture of all clusters, then each cluster alone
        return [EvalRow("unconditional", "unconditional", G)] + [
            EvalRow(name, "unconditional", call) for name, call in G.rows()]

    return ModelFamily(get_config, lambda cfg, n: (ClusterGuidedGenerator(cfg, n), None), unavailable, unavailable,
                       conditions=("unconditional",), rows=rows, fitted=FitFrom("poegan", fit))


def _unite_conquer() -> ModelFamily:
    """Diffusion experts per modality trained in one phase, no discriminator, no VGG; the generator samples."""
    import torch

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
    "inade": _inade,
    "cluster-guided": _cluster_guided,
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
