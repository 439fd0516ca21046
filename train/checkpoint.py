"""Weight snapshots (a family's networks and its generator's moving average: G, D, G_ema for a GAN) and
training-state files (everything else an exact resume needs)."""
import random
import re
from pathlib import Path

import torch

from shardio.shards import atomic_path

STATE_RE = re.compile(r"^training-state-(\d{6})\.pt$")


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"network-snapshot-{step:06d}.pt"


def state_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"training-state-{step:06d}.pt"


def newest_snapshot(run_dir: Path) -> Path | None:
    """The run's weight snapshot of the highest step, or None."""
    snapshots = sorted(Path(run_dir).glob("network-snapshot-[0-9]*.pt"))
    return snapshots[-1] if snapshots else None


def latest_state(run_dir: Path) -> int | None:
    """The step of the newest training-state file whose weight snapshot also exists, or None."""
    steps = sorted(int(m[1]) for p in run_dir.glob("training-state-*.pt") if (m := STATE_RE.match(p.name)))
    steps = [s for s in steps if snapshot_path(run_dir, s).is_file()]
    return steps[-1] if steps else None


def rng_state() -> dict:
    """Torch (CPU and this process's CUDA device) and Python RNG states, in types `torch.load(weights_only=True)`
    accepts. Only the current device: a host with fewer GPUs can still load it."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore `rng_state()`; a CUDA state is restored on this process's device when there is one."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(path: Path, payload: dict) -> None:
    """torch.save through a temporary file renamed when complete."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: Path) -> dict:
    """torch.load of tensors and plain containers only (never pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)
