"""Weight snapshots (a family's networks and its generator's moving average: G, D, G_ema for a GAN) and
training-state files (everything else an exact resume needs), and what a run keeps of them.

A save (every `snapshot_every` steps, every `keep_snapshot_every` steps and at the last step) writes both files of
its step. Once they are durable (each fsynced and renamed, then the folder synced) older saves are pruned: the
newest `keep_states` complete saves stay whole (the resume points) and, of the others, the weight snapshots of
every `keep_snapshot_every`-th step. Nothing is deleted before a newer save is durable, so a kill at any point
leaves at least that; the next prune (after the next save, or when the run resumes) removes the rest."""
import os
import random
import re
import sys
from pathlib import Path

import torch

from shardio.shards import atomic_path

STATE_RE = re.compile(r"^training-state-(\d{6})\.pt$")
SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d{6})\.pt$")
PARTIAL_RE = re.compile(r"^\.(training-state|network-snapshot)-\d{6}\.pt\.tmp-\d+$")  # atomic_path's, left by a kill


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
    steps = complete_saves(run_dir)
    return steps[-1] if steps else None


def complete_saves(run_dir: Path) -> list[int]:
    """The steps, ascending, whose training state and weight snapshot both exist (a resume point each)."""
    return [s for s in sorted(_steps(run_dir, STATE_RE)) if snapshot_path(run_dir, s).is_file()]


def save_due(step: int, last: int, snapshot_every: int, keep_snapshot_every: int | None) -> bool:
    """Whether the loop saves after `step`: every `snapshot_every` steps, every `keep_snapshot_every` steps (so
    the snapshots kept for good exist) and at the `last` step."""
    return step % snapshot_every == 0 or step == last or bool(keep_snapshot_every and step % keep_snapshot_every == 0)


def prune(run_dir: Path, keep_states: int, keep_snapshot_every: int | None) -> list[str]:
    """Delete what the run no longer keeps (see the module's docstring; `keep_snapshot_every` None keeps every
    weight snapshot) and the partial files a killed save left; returns the names deleted. Call it only after the
    newest save's files are renamed into place: the folder is synced first, so they survive a power cut."""
    sync_dir(run_dir)
    whole = set(complete_saves(run_dir)[-keep_states:])
    doomed = [state_path(run_dir, s) for s in sorted(_steps(run_dir, STATE_RE) - whole)]
    doomed += [snapshot_path(run_dir, s) for s in sorted(_steps(run_dir, SNAPSHOT_RE) - whole)
               if not (keep_snapshot_every is None or s % keep_snapshot_every == 0)]
    doomed += [p for p in run_dir.iterdir() if PARTIAL_RE.match(p.name)]
    for path in doomed:  # training states first: a kill in between leaves at most a snapshot without its state
        path.unlink(missing_ok=True)
    return [p.name for p in doomed]


def sync_dir(path: Path) -> None:
    """fsync a folder, so the renames into it are on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _steps(run_dir: Path, pattern: re.Pattern) -> set[int]:
    return {int(m[1]) for p in Path(run_dir).iterdir() if (m := pattern.match(p.name))} if run_dir.is_dir() else set()


def seed_streams(seed: int) -> None:
    """Seed the global torch and Python RNGs, the streams `rng_state` saves: left unseeded, Python's would start
    from the OS's entropy, and two runs of the same params (or a run and its resumed self) would save different
    training states and draw differently from any code that used it."""
    torch.manual_seed(seed)
    random.seed(seed)


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
    """torch.save of the payload's `canonical` form through a temporary file renamed when complete."""
    with atomic_path(path) as tmp:
        torch.save(canonical(payload), tmp)


def canonical(value):
    """`value` with its dicts, lists and tuples copied and its strings interned, so that its pickle depends on the
    values alone: pickle writes an object it meets again as a reference to the first, and a resumed run's optimiser
    state (keys read from a file, not the literals of the code) would otherwise save to other bytes than an
    uninterrupted run's. Tensors and other objects are kept; a state dict's attributes (`_metadata`) too."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        copied = type(value)((canonical(k), canonical(v)) for k, v in value.items())
        if hasattr(value, "__dict__"):
            copied.__dict__.update(canonical(vars(value)))
        return copied
    if type(value) in (list, tuple):
        return type(value)(canonical(v) for v in value)
    return value


def load(path: Path) -> dict:
    """torch.load of tensors and plain containers only (never pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)
