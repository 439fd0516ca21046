"""Learning-rate schedules. A family declares which part of its run trains at the full rate (train/models.py
ModelFamily.lr_decay); the loop multiplies each network's base rate by `LinearDecay.factor(step)` before every
step. The factor is a pure function of the step, so a resumed run trains at exactly the rates of an
uninterrupted one."""
from dataclasses import dataclass


@dataclass(frozen=True)
class LinearDecay:
    """The full rate up to step `hold`, then linear decay to 0 at step `total`. NVlabs/SPADE
    `trainers/pix2pix_trainer.py` update_learning_rate does this per epoch: after epoch e > niter,
    lr -= lr / niter_decay. So epochs 0..niter (0-based) train at the full rate and epoch k after that trains at
    (niter + niter_decay - k) / niter_decay. Here the unit is a step, not an epoch: step s (0-based) trains at
    min(1, (total - s) / (total - hold)). When `hold >= total` the rate is constant."""

    hold: int
    total: int

    @property
    def constant(self) -> bool:
        return self.hold >= self.total

    def factor(self, step: int) -> float:
        """The multiple of the base rate that step `step` (0-based: the step about to be trained) uses."""
        if self.constant:
            return 1.0
        return min(1.0, (self.total - step) / (self.total - self.hold))

    def describe(self, base: dict[str, float]) -> str:
        """One line for `pipeline train --dry-run`: the base rates and the steps where the rate changes."""
        rates = ", ".join(f"{key} {lr:g}" for key, lr in base.items())
        if self.constant:
            return f"learning rate: {rates}, constant for all {self.total} steps"
        return (f"learning rate: {rates} up to step {self.hold + 1}, then decaying linearly every step to "
                f"1/{self.total - self.hold} of it at step {self.total} (0 after it)")

    def state_dict(self) -> dict:
        return {"hold": self.hold, "total": self.total}

    def same_rates(self, saved: dict) -> bool:
        """Whether the schedule of `saved` (a state_dict) gives every step the rate this one gives it."""
        other = LinearDecay(**saved)
        return other == self or (other.constant and self.constant)


def schedule_for(decay_from: float | None, steps: int, decay_start: int | None = None) -> LinearDecay:
    """The schedule of a run of `steps` steps. It uses params `lr_decay_start` when set. Otherwise it holds the
    family's fraction `decay_from` of the run at the full rate (None: constant)."""
    if decay_start is None:
        decay_start = steps if decay_from is None else int(steps * decay_from)
    return LinearDecay(min(decay_start, steps), steps)


def set_rates(optimizers: dict, base: dict[str, float], factor: float) -> None:
    """Each optimizer's param groups at its network's base rate times `factor`."""
    for key, opt in optimizers.items():
        for group in opt.param_groups:
            group["lr"] = base[key] * factor
