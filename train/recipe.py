"""A run's recipe as `pipeline train --dry-run` prints it: steps, batch, learning-rate schedule, Adam betas,
initialisation, preprocessing and the generator's moving average (docs/protocols.md puts each paper's values
beside them)."""
from .data import Preprocess
from .ema import describe_ema
from .schedule import LinearDecay, schedule_for


def run_schedule(fam, section, steps: int | None = None) -> LinearDecay:
    """The run's learning-rate schedule: over params `steps`, or `steps` (`--steps`) when it is longer (a shorter
    run stops early on the params' schedule)."""
    return schedule_for(fam.lr_decay, max(steps or 0, section.steps), section.lr_decay_start)


def recipe(fam, cfg, section, steps: int | None = None) -> list[str]:
    """The recipe lines of family `fam` at configuration `cfg` under params section `section` (train.<model>),
    trained up to `steps` (None: params `steps`)."""
    batch = section.batch_size or cfg.batch_size
    settings = fam.optimizer(cfg)
    run = steps or section.steps
    adam = {n.key: settings.adam(n.key) for n in fam.network_keys}
    return [f"steps: {run} at batch {batch} ({run * batch} images)",
            run_schedule(fam, section, steps).describe({key: lr for key, (lr, _) in adam.items()}),
            "Adam betas: " + ", ".join(f"{key} {betas}" for key, (_, betas) in adam.items()),
            f"initialisation: {fam.initialisation}",
            Preprocess(section.fit, section.flip).describe(cfg.resolution),
            describe_ema(section.ema_kimg, section.ema_rampup, section.ema_rate, batch)]
