"""The disk a training run will use at most, from its networks' sizes and its params, before it starts: the
saves it keeps (train/checkpoint.py's retention), the weight snapshots it keeps for good, and its sample grids."""
from dataclasses import dataclass

from torch import nn

from .samples import PATTERNS

GRID_ROWS = 3 + len(PATTERNS)  # the conditions (image, seg, sketch), then one row per modality pattern


def snapshot_bytes(nets: dict[str, nn.Module]) -> int:
    """Bytes of a weight snapshot: every network's state dict and the generator's again (its moving average)."""
    sizes = [sum(t.numel() * t.element_size() for t in net.state_dict().values()) for net in nets.values()]
    return sum(sizes) + sizes[0]


def state_bytes(nets: dict[str, nn.Module]) -> int:
    """Bytes of a training state: Adam's two moments of every parameter (the rest is a few kB)."""
    return 2 * sum(p.numel() * p.element_size() for net in nets.values() for p in net.parameters())


@dataclass(frozen=True)
class DiskPlan:
    """What a run of `steps` steps writes and keeps (sizes in bytes)."""

    steps: int
    snapshot_every: int
    keep_states: int
    keep_snapshot_every: int | None
    sample_every: int
    tensorboard: bool
    snapshot: int  # one weight snapshot
    state: int  # one training state
    grid: int  # one sample grid's raw pixels: a PNG of it is at most about as large

    @property
    def kept_snapshots(self) -> int:
        """Weight snapshots kept for good at the end (every one when `keep_snapshot_every` is None)."""
        every = self.keep_snapshot_every or self.snapshot_every
        return self.steps // every + (self.keep_snapshot_every is None and self.steps % every != 0)

    @property
    def grids(self) -> int:
        """Sample grids written (every `sample_every` steps and at the last)."""
        return self.steps // self.sample_every + (self.steps % self.sample_every != 0)

    def most(self) -> int:
        """The most bytes the run's folder holds at once: the newest saves kept whole and the one being written
        before the oldest is deleted, the weight snapshots kept for good, every grid (twice with TensorBoard,
        whose event file holds each again); log lines not counted."""
        saves = (self.keep_states + 1) * (self.snapshot + self.state)
        return saves + self.kept_snapshots * self.snapshot + self.grids * self.grid * (1 + self.tensorboard)


def disk_plan(nets: dict[str, nn.Module], section, steps: int, resolution: int, grid_size: int = 4) -> DiskPlan:
    """The plan of a run of `nets` under the train params `section` (sizes from the networks as built; they
    may be on the meta device)."""
    return DiskPlan(steps, section.snapshot_every, section.keep_states, section.keep_snapshot_every,
                    section.sample_every, section.tensorboard, snapshot_bytes(nets), state_bytes(nets),
                    GRID_ROWS * grid_size * resolution * resolution * 3)
