"""What a model family is to the trainer (ModelFamily: its configurations, networks, loss, optimiser settings,
phases, evaluation rows) and the objective's interface (Loss); `family(name)` builds a registered one
(train/families/__init__.py lists them, each declared in its own folder).

Importing this module does not import torch (only building a family does), so the command line lists the
registry's names in its help and choices without paying for it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from .families import REGISTRY, declaration

if TYPE_CHECKING:
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
    """One optimisation phase of a training step: its name (prefix of its logged gradient norm), the network it
    trains with its own optimiser, the steps it is due on, and whether its gradient norm is clipped at the family's
    `grad_clip`. The loop runs a phase only on the steps it is due on and hands the Phase itself to the loss."""

    name: str
    network: str
    every: int = 1  # due on steps divisible by this (lazy regularisation)
    clip: bool = True

    def due(self, step: int) -> bool:
        """Whether the phase runs on `step`: the one place a phase's cadence is decided."""
        return step % self.every == 0


GAN_NETWORKS = (Network("G", "generator"), Network("D", "discriminator"))
GENERATOR_PHASE, DISCRIMINATOR_PHASE = Phase("G", "G"), Phase("D", "D")
GAN_PHASES = (GENERATOR_PHASE, DISCRIMINATOR_PHASE)


class Loss(Protocol):
    """A family's objective as the loop drives it (train/loop.py), built as `family.loss(*networks, vgg, config)`.
    Per step, for each of the family's due phases and each accumulation round, `accumulate_gradients`; then
    `end_step` once."""

    def accumulate_gradients(self, phase: Phase, batch: dict, masks: dict,
                             backward: Callable[[torch.Tensor], None]) -> dict[str, torch.Tensor]:
        """Compute `phase` (one of the family's phases) on a batch with its modality masks, hand each total to
        `backward` (the loop's: loss scaling, the mean over accumulation rounds), and return the loss terms as
        detached device tensors (the loop reads them at its log interval)."""

    def end_step(self) -> None:
        """Fold what the step's rounds gathered into state carried to the next step (nothing for most)."""

    def log_state(self) -> dict:
        """Extra per-step log fields (device tensors or numbers)."""

    def state_dict(self) -> dict:
        """What an exact resume needs besides networks and optimisers."""

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output."""


class Stateless:
    """The Loss methods of an objective that carries nothing from step to step."""

    def end_step(self) -> None:
        """Nothing carries from step to step."""

    def log_state(self) -> dict:
        """No extra log fields."""
        return {}

    def state_dict(self) -> dict:
        """Nothing to resume."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """A training state of this objective holds nothing; anything else belongs to another objective."""
        if state:
            raise ValueError(f"{type(self).__name__} has no state, got keys {sorted(state)}")


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
    # (base snapshot, run dir, config, num_classes, params section, device, run_record=the record its snapshot
    # carries, train/run_config.py) -> summary dict
    fit: Callable


@dataclass(frozen=True)
class ModelFamily:
    """How to build a family's configuration, networks, loss object and optimizer settings, which networks it
    trains in which phases, and which evaluation conditions it can be scored under. The first of `network_keys`
    is the generator: the loop keeps its moving average (`<key>_ema` in snapshots), which draws the sample grids
    and is evaluated, as `G(batch, masks) -> (image, extra)`."""

    config: Callable[[str], object]  # configuration name -> configuration
    networks: Callable[[object, int], tuple[nn.Module, ...]]  # (config, num_classes) -> one per `network_keys`
    loss: Callable[..., Loss]  # (*networks, vgg, config) -> its objective
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
    initialisation: str = "PyTorch's default"  # how its networks start, for `pipeline train --dry-run`

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


def family(name: str) -> ModelFamily:
    """The model family `name`, built from its declaration (train/families/); unknown names raise KeyError listing
    the known ones."""
    return declaration(name).build()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters())
