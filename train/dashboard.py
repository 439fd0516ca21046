"""Where a run is watched while it trains: TensorBoard event files in the run folder beside `log.jsonl` (every
logged number, images/s, and each sample grid), the progress bar's live figures, and Weights & Biases when the
params name a project (off by default: nothing leaves the machine unless asked)."""
import numbers
from pathlib import Path

import numpy as np

TENSORBOARD_DIR = "tensorboard"  # under the run folder: `tensorboard --logdir data/runs` shows every run


def scalars(record: dict, phases: tuple[str, ...]) -> dict[str, float]:
    """The numbers of one log record by TensorBoard tag: losses and norms `<phase>_<term>` grouped by phase
    (`G/adv`), learning rates `lr_<network>` as `lr/<network>`, the rest under `train/`; list values (per-level KL
    weights) become one tag per element."""
    tags = {}
    for key, value in record.items():
        if key == "step":
            continue
        phase, _, term = key.partition("_")
        group, name = (phase, term) if (phase in phases or phase == "lr") and term else ("train", key)
        values = value if isinstance(value, list) else [value]
        for i, v in enumerate(values):
            if isinstance(v, numbers.Real) and not isinstance(v, bool):
                tags[f"{group}/{name}" + (f"/{i}" if isinstance(value, list) else "")] = float(v)
    return tags


def postfix(record: dict, images_per_s: float | None, phases: tuple[str, ...]) -> dict[str, str]:
    """The progress bar's figures after a log read: images/s and each phase's loss terms (not gradient norms or
    skipped-step flags)."""
    shown = {} if images_per_s is None else {"img/s": f"{images_per_s:.3g}"}
    shown.update({k: f"{v:.3g}" for k, v in record.items() if k.partition("_")[0] in phases
                  and not k.endswith(("grad_norm", "skipped")) and isinstance(v, float)})
    return shown


class Dashboard:
    """Rank 0's live view of a run. `resume_step`: events of steps after it, left by a killed run, are dropped
    so the curves continue where the training state does."""

    def __init__(self, run_dir: Path, resume_step: int, phases: tuple[str, ...], *,
                 tensorboard: bool = True, wandb_project: str | None = None, wandb_id: str | None = None,
                 config: dict | None = None):
        self.phases = phases
        self.last: tuple[int, float] | None = None  # (images, sec) of the previous record: images/s between reads
        self.writer = self.wandb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=resume_step + 1, flush_secs=10)
        if wandb_project:
            import wandb  # optional: `pipeline train` checked it is installed before starting

            # one W&B run per run identity: a resumed run continues it, a run started over gets a new one
            self.wandb = wandb.init(project=wandb_project, dir=str(run_dir), id=wandb_id, resume="allow",
                                    config=config or {})

    def log(self, records: list[dict]) -> float | None:
        """Send the records of one log interval; returns the images/s over it (None before the second read)."""
        rate = None
        for record in records:
            step = record["step"]
            tags = scalars(record, self.phases)
            if self.last is not None and record["sec"] > self.last[1]:
                rate = (record["images"] - self.last[0]) / (record["sec"] - self.last[1])
                tags["train/images_per_s"] = rate
            self.last = (record["images"], record["sec"])
            if self.writer is not None:
                for tag, value in tags.items():
                    self.writer.add_scalar(tag, value, step)
            if self.wandb is not None:
                self.wandb.log(tags, step=step)
        if self.writer is not None:
            self.writer.flush()  # a killed run keeps every step it logged
        return rate

    def grid(self, step: int, grid: np.ndarray) -> None:
        """Send a sample grid (uint8 [H, W, 3])."""
        if self.writer is not None:
            self.writer.add_image("samples", grid, step, dataformats="HWC")
        if self.wandb is not None:
            import wandb

            self.wandb.log({"samples": wandb.Image(grid)}, step=step)

    def close(self) -> None:
        """Flush and close every sink."""
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()

