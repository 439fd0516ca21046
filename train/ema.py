"""The generator's moving average with StyleGAN2's ramp-up (NVlabs stylegan2-ada-pytorch, training_loop.py):
its half-life is `ema_kimg` thousand images, shortened to `ema_rampup` x the images seen so far early on, so a
short run's average is not mostly its initial weights. A family whose paper fixes a decay per step (ADM's 0.9999)
gives that instead."""

EMA_KIMG_PER_32 = 10.0  # stylegan2-ada: ema_kimg = batch * 10 / 32 unless set


def ema_beta(images_seen: int, batch_size: int, ema_kimg: float | None, ema_rampup: float | None,
             rate: float | None = None) -> float:
    """Decay of this step's update: `rate` when given (ADM's --ema_rate: the same every step, no ramp-up), else
    0.5 ** (batch / half-life in images). images_seen counts the images of the steps before this one, so the
    first half-life update copies G."""
    if rate is not None:
        return rate
    half_life = (batch_size * EMA_KIMG_PER_32 / 32 if ema_kimg is None else ema_kimg) * 1000
    if ema_rampup is not None:
        half_life = min(half_life, images_seen * ema_rampup)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


def describe_ema(ema_kimg: float | None, ema_rampup: float | None, rate: float | None, batch_size: int) -> str:
    """One line for `pipeline train --dry-run`: the moving average of G the loop keeps."""
    if rate is not None:
        return f"moving average of G: decay {rate:g} every step, no ramp-up"
    kimg = batch_size * EMA_KIMG_PER_32 / 32 if ema_kimg is None else ema_kimg
    rampup = "no ramp-up" if ema_rampup is None else f"ramp-up {ema_rampup:g} of the images seen"
    return f"moving average of G: half-life {kimg:g} kimg, {rampup}"
