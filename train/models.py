"""Model families the trainer knows: name -> builder. A baseline adds one module and one line here."""
from dataclasses import dataclass
from typing import Callable

from torch import nn


@dataclass(frozen=True)
class ModelFamily:
    """How to build a family's configuration, networks and loss object."""

    config: Callable[[str], object]  # profile name -> configuration
    networks: Callable[[object, int], tuple[nn.Module, nn.Module]]  # (config, num_classes) -> (G, D)
    loss: Callable  # (G, D, vgg, config) -> loss object with accumulate_gradients / state_dict


def _poegan() -> ModelFamily:
    from .configs import get_config
    from .loss import PoEGANLoss
    from .poegan.discriminator import Discriminator
    from .poegan.generator import Generator

    return ModelFamily(get_config, lambda cfg, n: (Generator(cfg, n), Discriminator(cfg, n)), PoEGANLoss)


REGISTRY: dict[str, Callable[[], ModelFamily]] = {
    "poegan": _poegan,
}


def family(name: str) -> ModelFamily:
    """The model family `name`; unknown names raise KeyError listing the known ones."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters())
