"""What a person watching a run sees: TensorBoard event files beside log.jsonl (every loss, learning rates,
images/s, sample grids) that continue cleanly after a resume, the progress bar's live figures, and W&B on request."""
import os
from dataclasses import replace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from train_shards import write_training_shards

from annotators.labelmaps import load_label_map
from train.families.poegan.configs import get_config
from train.dashboard import TENSORBOARD_DIR
from train.loop import RunSpec, train
from train.models import family
from train.vgg import VGGRelu51

MICRO = replace(get_config("tiny"), resolution=16, batch_size=4, channel_base=8, channel_max=32,
                latent_base=2, latent_max=8)
LABELS = load_label_map("coco-stuff-182")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return [str(p) for p in write_training_shards(tmp_path_factory.mktemp("shards"), images=4, per_shard=4,
                                                  short_side=20)]


def _train(run_dir, shards, steps, progress=False, **kw):
    spec = RunSpec(run_dir, shards, shards, LABELS.num_classes, LABELS.colours, steps=steps, shuffle_buffer=4,
                   epoch_batches=4, snapshot_every=3, sample_every=3, log_every=2, grid_size=2, **kw)
    return train(family("poegan"), MICRO, VGGRelu51(None), spec, progress=progress)


def _events(run_dir):
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_tensorboard_gets_every_logged_number_lrs_speed_and_grids_and_resumes_without_duplicates(shards, tmp_path):
    _train(tmp_path, shards, 4)
    # killed after step 4 was logged, before its training state was written: step 4 is trained again
    for name in ("training-state-000004.pt", "network-snapshot-000004.pt"):
        (tmp_path / name).unlink()
    records = _train(tmp_path, shards, 5)
    events = _events(tmp_path)
    tags = set(events.Tags()["scalars"])
    assert {"G/adv", "G/kl", "G/img_contrastive", "D/adv", "Dreg/grad_norm", "lr/G", "lr/D", "train/images",
            "train/images_per_s", "train/kl_balance/0"} <= tags
    adv = events.Scalars("G/adv")
    assert [e.step for e in adv] == list(range(1, 6))  # the lost step's events were dropped, not duplicated
    assert adv[-1].value == pytest.approx(records[-1]["G_adv"])
    assert events.Scalars("lr/G")[0].value == pytest.approx(MICRO.lr)
    assert [e.step for e in events.Images("samples")] == [3, 5]


def test_the_progress_bar_shows_speed_and_losses(shards, tmp_path, capsys):
    _train(tmp_path, shards, 4, progress=True, tensorboard=False)
    err = capsys.readouterr().err
    assert "img/s=" in err and "G_adv=" in err and "D_adv=" in err and "4/4" in err
    assert not (tmp_path / TENSORBOARD_DIR).exists()
    assert not (tmp_path / "wandb").exists()  # no project named: W&B stays off


@pytest.mark.slow  # W&B's service process takes tens of seconds to start and stop
def test_weights_and_biases_logs_offline_runs_under_the_run_identity(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # the test machine has no network; offline runs sync later
    monkeypatch.setenv("WANDB_SILENT", "true")
    _train(tmp_path, shards, 1, tensorboard=False, wandb_project="mmsynth-test",
           identity={"fingerprint": "abc123", "params": {"steps": 1}})
    runs = list((tmp_path / "wandb").glob("offline-run-*-abc123"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")) and os.path.getsize(next(runs[0].glob("*.wandb"))) > 0
