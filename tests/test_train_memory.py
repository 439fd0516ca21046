"""The training memory estimate: live-tensor accounting, the per-GPU batch a null batch_gpu becomes on every real
profile, and what `pipeline train --dry-run` prints of it."""
import re

import pytest
import torch
from click.testing import CliRunner
from test_train_cli import REPO_PARAMS

from annotators.labelmaps import load_label_map
from pipeline.cli import main
from pipeline.commands.train_plan import choose_batch_gpu
from pipeline.params import load_params
from train.memory import BACKWARD_FACTOR, GB, LiveBytes, MemoryEstimate, estimate
from train.families import REGISTRY
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


def _real_profiles():
    """(family, configuration, classes, batch size) of every trained family at every real dataset profile that has
    a configuration for it (SPADE, INADE and Unite-and-Conquer have none at landscape's 1024 px)."""
    params = load_params(REPO_PARAMS)
    for name in ("coco", "landscape", "mm-celeba-hq"):
        profile, sections = params.profile(name), params.for_dataset(name).train
        for model in REGISTRY:
            fam, section = family(model), sections.model(model)
            if fam.fitted is not None:
                continue
            try:
                cfg = fam.configure(section.config or profile.train_config, section)
            except KeyError:
                continue
            classes = load_label_map(profile.label_map).num_classes
            yield pytest.param(fam, cfg, classes, section.batch_size or cfg.batch_size, id=f"{name}-{model}")


@pytest.mark.parametrize("fam, cfg, classes, batch_size", list(_real_profiles()))
def test_a_null_batch_gpu_fits_every_real_profile_on_40_and_80_gb_gpus(fam, cfg, classes, batch_size):
    memory = estimate(fam, cfg, classes)
    for world in (1, 8):
        share = batch_size // world
        for gb in (40, 80):
            chosen = memory.batch_gpu(share, gb * GB)
            assert share % chosen == 0 and memory.peak(chosen) <= gb * GB, (world, gb, chosen)
            larger = [b for b in range(chosen + 1, share + 1) if share % b == 0]
            assert not larger or memory.peak(larger[0]) > gb * GB  # the largest divisor that fits


def _dry_run(*args, **env):
    result = CliRunner().invoke(main, ["train", "--dataset", "coco", "--dry-run", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_dry_run_of_a_real_profile_prints_the_batch_it_will_use_its_rounds_and_the_disk_it_will_take():
    for args, env, world in ((["--gpu-memory", "40", "--nproc", "8"], {}, 8), ([], {"WORLD_SIZE": "4"}, 4)):
        output = _dry_run(*args, **env)
        line = re.search(r"^batch_size (\d+) over (\d+) process\(es\): (\d+) per process and step; batch_gpu "
                         r"(\d+), estimated peak (\d+\.\d) GB .* (\d+) accumulation round", output, re.M)
        batch, processes, share, chosen, peak, rounds = (float(x) for x in line.groups())
        gb = float(args[1]) if args else 80  # no GPU here: a dry run sizes for 80 GB
        assert processes == world and share == batch / world and chosen * rounds == share and peak <= gb
        assert re.search(r"^saves: every \d+ steps .* the newest \d+ kept whole", output, re.M)
        assert re.search(r"^most disk the run will use: \d+\.\d GB", output, re.M)


def test_a_cpu_run_takes_its_whole_share_unless_given_a_memory_to_fit(capsys):
    fam = family("poegan")
    cfg = fam.config("tiny")
    assert choose_batch_gpu(fam, cfg, 182, "poegan", None, 8, 1, None, "the CPU") is None  # no estimate: as before
    fits_four = estimate(fam, cfg, 182).peak(4)
    assert choose_batch_gpu(fam, cfg, 182, "poegan", None, 8, 1, fits_four, "1 GB (--gpu-memory)") == 4
    assert choose_batch_gpu(fam, cfg, 182, "poegan", 8, 8, 1, fits_four, "1 GB (--gpu-memory)") == 8
    err = capsys.readouterr().err
    assert "batch_gpu 8's estimated peak" in err and "the largest per-GPU batch that fits: 4" in err
