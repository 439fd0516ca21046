"""Learning-rate schedules: SPADE's linear decay in steps, the families' declarations, and when a resumed run's
schedule counts as changed."""
import pytest

from train.families import REGISTRY
from train.models import family
from train.schedule import LinearDecay, schedule_for


def spade_rates(lr: float, niter: int, niter_decay: int) -> list[float]:
    """The rate of each epoch under NVlabs/SPADE's train.py loop: epochs 1..niter + niter_decay, and after each
    epoch `update_learning_rate(epoch)` (pix2pix_trainer.py) subtracts lr / niter_decay once epoch > niter."""
    rates, old_lr = [], lr
    for epoch in range(1, niter + niter_decay + 1):
        rates.append(old_lr)
        if epoch > niter:
            old_lr -= lr / niter_decay
    return rates


@pytest.mark.parametrize("niter, niter_decay", [(3, 3), (2, 5), (0, 4), (30, 30)])
def test_linear_decay_gives_each_step_the_rate_spade_gives_each_epoch(niter, niter_decay):
    schedule = schedule_for(None, niter + niter_decay, decay_start=niter)
    ours = [2e-4 * schedule.factor(s) for s in range(schedule.total)]
    assert ours == pytest.approx(spade_rates(2e-4, niter, niter_decay), rel=1e-9)


def test_spade_and_monce_decay_over_the_second_half_the_others_are_constant():
    decaying = {name for name in REGISTRY if family(name).lr_decay is not None}
    assert decaying == {"spade-seg", "spade-sketch", "spade-seg-monce"}
    assert schedule_for(family("spade-seg-monce").lr_decay, 72000) == LinearDecay(36000, 72000)
    inade = schedule_for(family("inade").lr_decay, 37500)
    assert inade.constant and {inade.factor(s) for s in (0, 20000, 37499)} == {1.0}


def test_params_lr_decay_start_overrides_the_family_and_steps_alone_means_constant():
    assert schedule_for(0.5, 10, decay_start=2) == LinearDecay(2, 10)
    assert schedule_for(0.5, 10, decay_start=10).constant


def test_a_changed_decay_is_a_changed_schedule_but_a_longer_constant_one_is_not():
    assert not LinearDecay(5, 10).same_rates({"hold": 5, "total": 12})
    assert LinearDecay(7, 7).same_rates({"hold": 5, "total": 5})
    assert LinearDecay(5, 10).same_rates({"hold": 5, "total": 10})
