"""Model families the trainer knows: name -> builder. A baseline adds one module and one line here."""
from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class OptimizerSettings:
    """Adam settings of one family: learning rates of G and D, betas, gradient-norm clip (None: no clipping)."""

    lr_G: float
    lr_D: float
    betas: tuple[float, float]
    grad_clip: float | None
    betas_D: tuple[float, float] | None = None  # None: `betas`


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
    """How to build a family's configuration, networks, loss object and optimizer settings."""

    config: Callable[[str], object]  # profile name -> configuration
    networks: Callable[[object, int], tuple[nn.Module, nn.Module]]  # (config, num_classes) -> (G, D)
    loss: Callable  # (G, D, vgg, config) -> loss object: accumulate_gradients per round, end_step, state_dict
    optimizer: Callable[[object], OptimizerSettings]  # configuration -> Adam settings
    conditions: tuple[str, ...] | None = None  # evaluation conditions it can be scored under; None: every one
    rows: Callable[[nn.Module], list[EvalRow]] | None = None  # rows of the loaded G; None: one per condition
    fitted: FitFrom | None = None  # set: `pipeline train` fits it from the base's run (no loss, D, optimizer)
    # configuration -> the generator modalities (train/configs.py MODALITIES) its G reads, i.e. what `pipeline
    # generate` may give it; None: the modalities of `conditions` (every modality when that is None)
    inputs: Callable[[object], tuple[str, ...]] | None = None

    def takes(self, cfg) -> tuple[str, ...]:
        """The generator modalities G reads under `cfg`, in MODALITIES order."""
        from .configs import MODALITIES
        from .conditions import generator_modalities

        if self.inputs is not None:
            read = set(self.inputs(cfg))
        elif self.conditions is None:
            read = set(MODALITIES)
        else:
            read = set().union(*(generator_modalities(c) for c in self.conditions))
        return tuple(m for m in MODALITIES if m in read)

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


def _poegan() -> ModelFamily:
    from .configs import get_config
    from .loop import BETAS, GRAD_CLIP
    from .loss import R1_INTERVAL, PoEGANLoss
    from .poegan.discriminator import Discriminator
    from .poegan.generator import Generator

    def optimizer(cfg):
        lr_D, betas_D = lazy_regularisation(cfg.lr, BETAS, R1_INTERVAL)  # D has lazy R1; G no regulariser
        return OptimizerSettings(cfg.lr, lr_D, BETAS, GRAD_CLIP, betas_D)

    return ModelFamily(get_config, lambda cfg, n: (Generator(cfg, n), Discriminator(cfg, n)), PoEGANLoss, optimizer)


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
                       inputs=conditioned_on)


def _inade() -> ModelFamily:
    """INADE (docs/inade.md): SPADE's loop settings, instance-adaptive normalisation and noise remapping."""
    from .baselines.inade import networks
    from .baselines.inade_config import get_config
    from .baselines.inade_loss import InadeLoss

    return ModelFamily(get_config, networks, InadeLoss,
                       lambda cfg: OptimizerSettings(cfg.lr_G, cfg.lr_D, cfg.betas, cfg.grad_clip), conditions=("seg",))


def _cluster_guided() -> ModelFamily:
    """Cluster-guided synthesis over PoE-GAN's unconditional generator (../shared/papers/004_…txt)."""
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


REGISTRY: dict[str, Callable[[], ModelFamily]] = {
    "poegan": _poegan,
    "spade-seg": lambda: _spade("seg"),
    "spade-sketch": lambda: _spade("sketch"),
    "spade-seg-monce": lambda: _spade("seg", monce=True),
    "inade": _inade,
    "cluster-guided": _cluster_guided,
}


def family(name: str) -> ModelFamily:
    """The model family `name`; unknown names raise KeyError listing the known ones."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters())
