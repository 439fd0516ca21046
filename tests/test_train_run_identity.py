"""A run folder is resumed only by the run that started it: other params or shards are refused or replaced."""
from pathlib import Path

import pytest

from pipeline.params import load_params
from train.families.poegan.configs import get_config
from train.run_identity import RunMismatch, claim, identity

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def section():
    return load_params(REPO / "params.yaml").train.poegan


def test_more_steps_continue_the_run_other_params_are_refused(tmp_path, section):
    run = tmp_path / "run"
    cfg = get_config("tiny")
    first = identity("poegan", cfg, section, [])
    assert claim(run, first, restart=False) is False
    (run / "training-state-000010.pt").write_bytes(b"state")
    longer = identity("poegan", cfg, section.model_copy(update={"steps": section.steps * 2}), [])
    assert longer["fingerprint"] == first["fingerprint"]
    assert claim(run, longer, restart=False) is False and (run / "training-state-000010.pt").exists()

    reseeded = identity("poegan", cfg, section.model_copy(update={"seed": section.seed + 1}), [])
    with pytest.raises(RunMismatch, match="--restart-if-changed"):
        claim(run, reseeded, restart=False)
    assert (run / "training-state-000010.pt").exists()  # nothing lost by refusing
    assert claim(run, reseeded, restart=True) is True
    assert not (run / "training-state-000010.pt").exists()
    assert claim(run, reseeded, restart=False) is False


def test_other_training_shards_or_config_change_the_identity(tmp_path, section):
    shard = tmp_path / "train-000000.tar"
    shard.write_bytes(b"")
    (tmp_path / "train-000000.stats.json").write_text('{"fingerprint": "a"}')
    before = identity("poegan", get_config("tiny"), section, [str(shard)])
    (tmp_path / "train-000000.stats.json").write_text('{"fingerprint": "b"}')
    assert identity("poegan", get_config("tiny"), section, [str(shard)])["fingerprint"] != before["fingerprint"]
    assert identity("poegan", get_config("coco-64"), section, [str(shard)])["fingerprint"] != before["fingerprint"]
