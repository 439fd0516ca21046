"""Every param set docs/protocols.md names for a paper's rows is valid in the repository's params and makes the
evaluation compute each score key the paper reports (by the protocol record `pipeline evaluate --dry-run` prints
and the report writes)."""
import re
from pathlib import Path

import pytest
import yaml

from pipeline.commands.common import StageContext
from pipeline.params import load_params
from shardio.layout import Layout
from train.eval_plan import plan
from train.metrics import REGISTRY
from train.models import family
from train.protocol import record

REPO = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"# param set: (\S+) \(profile (\S+), model (\S+)\)\n# keys: (.+)\n(?:# images: (\d+)\n)?")


def param_sets() -> list[tuple]:
    """(name, profile, model, keys, images or None, overrides) of each param-set block of docs/protocols.md."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "protocols.md").read_text(), re.S)
    sets = []
    for block in blocks:
        header = HEADER.match(block)
        assert header, f"a yaml block of docs/protocols.md without a param-set header:\n{block}"
        name, profile, model, keys, images = header.groups()
        sets.append((name, profile, model, keys.split(), images and int(images), yaml.safe_load(block) or {}))
    return sets


def test_the_document_names_a_param_set_for_every_paper():
    assert {model for _, _, model, *_ in param_sets()} == {"poegan", "spade-seg", "inade", "spade-seg-monce",
                                                          "unite-conquer", "cluster-guided"}


def protocol_of(params_file: Path, profile: str, model: str) -> dict:
    """The protocol record the evaluation of `model` on `profile` would follow under `params_file`."""
    params = load_params(params_file).for_dataset(profile)
    stage = StageContext(params, profile, params.profile(profile), Layout(params_file.parent / "data", profile))
    section = params.train.model(model)
    cfg = family(model).configure(section.config or stage.profile.train_config, section)
    evaluation = plan(stage, model, None, cfg)
    return record(stage, evaluation, evaluation.limit, evaluation.limit)


@pytest.mark.parametrize("name, profile, model, keys, images, overrides", param_sets(),
                         ids=[name for name, *_ in param_sets()])
def test_each_param_set_computes_the_papers_keys(tmp_path, name, profile, model, keys, images, overrides):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["datasets"][profile]["overrides"].update(overrides)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    protocol = protocol_of(params, profile, model)
    rows = {row["name"]: row["metrics"] for row in protocol["rows"]}
    for key in keys:
        row, score = key.split("/")
        assert any(score in REGISTRY[metric].keys for metric in rows.get(row, [])), (name, key, rows)
    if images:
        assert protocol["images"] == images
