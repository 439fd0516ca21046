"""The training memory estimate (`pipeline train --dry-run`): live-tensor accounting and the batch that fits."""
import re

import torch
from test_train_cli import _run

from train.memory import BACKWARD_FACTOR, LiveBytes, MemoryEstimate, estimate
from train.models import family


def test_live_bytes_counts_created_tensors_while_they_live_and_not_views():
    with LiveBytes() as live:
        a = torch.zeros(1000)  # 4000 bytes
        view = a[:10]
        b = a + 1  # 4000 more
        del b
        c = a * 2
    assert live.peak == 8000 and live.live == 8000 and view.shape == (10,) and c.shape == a.shape


def test_the_largest_batch_is_the_last_one_that_fits():
    memory = MemoryEstimate(static=10 * 10**9, fixed=10**9, per_sample=3 * 10**9)
    largest = memory.largest_batch(40e9)
    assert memory.peak(largest) <= 40e9 < memory.peak(largest + 1)
    assert MemoryEstimate(50 * 10**9, 0, 10**9).largest_batch(40e9) == 0


def test_estimate_grows_with_resolution_and_batch():
    fam = family("poegan")
    small, large = (estimate(fam, fam.config(name), 182) for name in ("tiny", "coco-64"))
    assert 0 < small.per_sample < large.per_sample and small.static < large.static
    assert large.peak(8) > large.peak(4) > BACKWARD_FACTOR * large.per_sample * 4


def test_dry_run_prints_the_memory_estimate_and_the_batch_that_fits():
    result = _run(["--config", "tiny", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^estimated peak GPU memory: \d+\.\d GB at the whole batch of \d+ on one GPU",
                     result.output, re.M)
    fits = re.search(r"largest per-GPU batch \(train.<model>.batch_gpu\): (\d+) on 40 GB, (\d+) on 80 GB",
                     result.output)
    assert fits and 0 < int(fits[1]) <= int(fits[2])
