"""`dvc repro` on a copy of the project with a tiny sample: the chain runs, a second repro does nothing, a changed
param marks exactly its stages, and a repro killed mid-annotate resumes by redoing only unfinished shards.

The copy's dvc.yaml trains and evaluates the families in MODELS only (the chain twice is most of this file's time);
the others are trained and evaluated end to end from the CLI in their own test files."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml
from dvc.repo import Repo

from train.families import REGISTRY

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# PoE-GAN, and cluster-guided fitted on its run (a train stage whose input is another's output); SPADE-Sketch,
# Unite-and-Conquer and cluster-guided are trained and evaluated end to end nowhere else in the default suite.
MODELS = ("poegan", "spade-sketch", "unite-conquer", "cluster-guided")
# The other families -> the test file that trains and evaluates each from the CLI instead.
ELSEWHERE = {"spade-seg": "test_train_spade.py", "spade-seg-monce": "test_train_spade.py",
             "inade": "test_train_inade.py"}

# Small enough for CI: 4 drawn landscapes + 8 photos at 96 px, shards of 4, models on random weights.
TINY = {
    "sample": {"landscapes": 4},
    "ingest": {"max_short_side": 96, "min_size": 32, "shard_size": 4},
    "annotate": {"seg": {"long_side": 65}, "sketch": {"resolution": 64}},
    "datasets": {"sample": {"overrides": {
        "annotate.seg.weights": "random", "annotate.clip.weights": "random",
        "annotate.sketch.weights": "random", "annotate.sketch.simplify": False,
        "train.defaults.vgg_weights": "random",
        "evaluate.inception_weights": "random",
        "evaluate.lpips_weights": "random"}}},
    "train": {**{model: {"steps": 2, "batch_size": 2, "workers": 0,  # one snapshot and sample grid: at the end
                         **({"sample_steps": 2} if model == "unite-conquer" else {})}  # diffusion: 2 DDIM steps
                 for model in ("poegan", "spade-sketch", "unite-conquer")},
              "cluster-guided": {"codes": 40, "kmeans_inits": 1, "rounds": 2, "steps_per_round": 5,
                                 "consistency_samples": 20, "batch_size": 20, "grid_size": 2}},
    "evaluate": {"num_images": 2, "diversity_groups": 2, "diversity_pairs": 1, "diversity_images": 2,
                 "kid_subsets": 2},
    "compare": {"samples": 1, "draws": 1},  # one sample, one image per cell: seconds
}


def merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "overrides":
            merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def project(tmp_path_factory, ray_address):
    """A git + DVC copy of the project's tracked files with tiny params, after one full `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (REPO / name).is_file() and name != "dvc.lock":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = only_models(merge(yaml.safe_load((root / "params.yaml").read_text()), TINY), MODELS)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "RAY_ADDRESS": ray_address, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    first = dvc(root, env, "repro")
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-qm", "first repro"], cwd=root, env=env, check=True)
    return root, env, first


def only_models(params: dict, models: tuple[str, ...]) -> dict:
    """The params with only `models` in the list DVC's train and evaluate stages take (which lists all of them)."""
    listed = params["models"]
    assert set(models) <= set(listed), f"params.yaml's models are {list(listed)}, not all of {models}"
    params["models"] = {m: listed[m] for m in listed if m in models}
    return params


def dvc(root: Path, env: dict, *args: str) -> str:
    result = subprocess.run([str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def changed_stages(root: Path) -> set[str]:
    """The stages `dvc status` lists, asked in this process (a `dvc` process costs a second more each time)."""
    with Repo(str(root)) as repo:  # names come as `<dvc.yaml relative to this process's cwd>:<stage>` from elsewhere
        return {name.rsplit(":", 1)[-1] for name in repo.status()}


def stages(root: Path) -> set[str]:
    return {line.split()[0] for line in dvc_list(root)}


def dvc_list(root: Path) -> list[str]:
    out = subprocess.run([str(BIN / "dvc"), "stage", "list"], cwd=root, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def test_repro_runs_every_stage_then_does_nothing(project):
    root, env, first = project
    assert ran(first) == stages(root)
    assert {"sample", "ingest", "annotate@seg", "annotate@sketch", "annotate@clip", "pack", "preview"} <= ran(first)
    assert (root / "data/sample/preview.png").stat().st_size > 0
    assert len(list((root / "data/sample/shards").glob("*.tar"))) == len(list((root / "data/sample/images").glob("*.tar")))
    assert ran(dvc(root, env, "repro")) == set()
    assert changed_stages(root) == set()
    metrics = json.loads(dvc(root, env, "metrics", "show", "--json"))
    files = metrics[""]["data"] if "" in metrics else next(iter(metrics.values()))["data"]
    assert "data/sample/card.json" in files
    assert not any("error" in result for result in files.values()), files
    assert {f"data/runs/sample/metrics/{m}.json" for m in MODELS} <= set(files)  # side by side
    evaluation = files["data/runs/sample/metrics/poegan.json"]["data"]
    written = json.loads((root / "data/runs/sample/poegan/eval/metrics.json").read_text())
    protocol = written.pop("protocol")
    assert {k: v for k, v in evaluation.items() if k != "protocol"} == written  # every number, where it was
    # beside them the protocol's scalars (its lists of rows and metrics are in the file, not in the table)
    assert evaluation["protocol"]["reference"] == protocol["reference"] == {"split": "test", "images": 2}
    assert evaluation["protocol"]["images"] == 2 and "rows" not in evaluation["protocol"]  # evaluate.num_images
    assert {"unconditional/fid", "seg/fid", "all/fid"} <= set(evaluation)
    assert "sketch/fid" in files["data/runs/sample/metrics/spade-sketch.json"]["data"]
    assert {"unconditional/fid", "cluster-r8-0/fid", "cluster-r8-1/fid"} <= set(
        files["data/runs/sample/metrics/cluster-guided.json"]["data"])
    assert {"unconditional/fid", "text/fid", "sketch/fid", "all/fid"} <= set(
        files["data/runs/sample/metrics/unite-conquer.json"]["data"])
    dvc(root, env, "plots", "show", "--out", str(root / "plots"))
    assert (root / "plots" / "index.html").is_file()
    page = (root / "data/runs/sample/compare/index.html").read_text()  # the chain ends with the comparison
    assert all(f'data-model="{m}"' in page for m in REGISTRY) and "not trained" in page


def test_metrics_show_lists_the_evaluated_models_and_no_error_for_the_others(tmp_path):
    """`make demo` evaluates some models: `dvc metrics show` must not call the others' missing numbers an error."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for command in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(command, cwd=tmp_path, env=env, check=True)
    (tmp_path / "data/sample").mkdir(parents=True)
    (tmp_path / "data/sample/card.json").write_text('{"samples": 4}')
    (tmp_path / "data/runs/sample/metrics").mkdir(parents=True)
    (tmp_path / "data/runs/sample/metrics/poegan.json").write_text('{"all/fid": 1.5}')
    # a protocol record (docs/protocols.md) beside the numbers: its lists and nulls are left out, not an error
    protocol = {"images": 8, "reference": {"split": "test", "images": 8}, "snapshot": None, "seed": 0,
                "rows": [{"name": "all", "condition": "all", "metrics": ["fid"]}], "seeding": ["noise: (0, i)"]}
    (tmp_path / "data/runs/sample/metrics/inade.json").write_text(json.dumps({"seg/fid": 2.5, "protocol": protocol}))
    shown = subprocess.run([str(BIN / "dvc"), "metrics", "show", "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert shown.returncode == 0 and "failed to load" not in shown.stdout + shown.stderr, shown.stdout + shown.stderr
    files = json.loads(shown.stdout.strip().splitlines()[-1])[""]["data"]
    assert files == {"data/sample/card.json": {"data": {"samples": 4}},
                     "data/runs/sample/metrics/poegan.json": {"data": {"all/fid": 1.5}},
                     "data/runs/sample/metrics/inade.json": {"data": {"seg/fid": 2.5, "protocol": {
                         "images": 8, "reference": {"split": "test", "images": 8}, "seed": 0}}}}


ANNOTATE = {"annotate@seg", "annotate@sketch", "annotate@clip"}
TRAIN = {f"train@{model}" for model in MODELS}
EVALUATE = {f"evaluate@{model}" for model in MODELS}  # they run the annotators too
EVERY = {"sample", "ingest", "weights", *ANNOTATE, "pack", "preview", *TRAIN, *EVALUATE, "compare"}
# The rerun boundary, written out by hand (never read from dvc.yaml): a changed param -> the stages it must mark
# changed, and no others. Stages downstream of those rerun through their inputs once these have run.
RERUNS = [
    ("dataset", "coco", EVERY - {"sample"}),  # another profile: every stage of the chain, not the built-in sample
    ("sample.landscapes", 5, {"sample"}),
    ("sample.seed", 1, {"sample"}),
    ("sample.include_photos", False, {"sample"}),
    ("ingest.min_size", 33, {"ingest"}),
    ("ingest.max_pixels", 10**7, {"ingest"} | ANNOTATE),  # annotate refuses larger images itself
    ("ingest.max_aspect", 3.0, {"ingest"}),
    ("ingest.max_short_side", 97, {"ingest"}),
    ("ingest.jpeg_quality", 90, {"ingest"}),
    ("ingest.shard_size", 5, {"ingest"}),
    ("annotate.seg.long_side", 97, {"annotate@seg"} | EVALUATE),
    ("annotate.seg.weights", "other.pth", {"weights", "annotate@seg"} | EVALUATE),
    ("annotate.sketch.threshold", 0.6, {"annotate@sketch"} | EVALUATE),
    ("annotate.sketch.simplify_weights", "other.pth", {"weights", "annotate@sketch"} | EVALUATE),
    ("annotate.clip.model", "RN50", {"weights", "annotate@clip"} | EVALUATE),  # weights: fetches the checkpoint
    ("annotate.clip.batch_size", 3, {"annotate@clip"} | EVALUATE),
    ("annotate.runtime.workers", 1, set()),  # how annotate runs, never what it writes
    ("annotate.runtime.max_failed_fraction", 0.5, set()),
    ("pack.modalities", ["seg", "clip"], {"pack"}),
    ("pack.workers", 2, {"pack"}),
    ("preview.samples", 3, {"preview"}),
    ("models.poegan", {"under": "", "reads": "shards", "demo": False}, set()),  # `make demo`'s choice alone
    ("train.defaults.seed", 1, TRAIN | EVALUATE),
    ("train.poegan.seed", 1, {"train@poegan", "evaluate@poegan"}),
    ("train.spade-seg.seed", 1, set()),  # not in MODELS: no stage of the copy reads it
    ("train.spade-sketch.steps", 3, {"train@spade-sketch", "evaluate@spade-sketch"}),
    ("train.spade-seg-monce.seed", 1, set()),  # not in MODELS: no stage of the copy reads it
    ("train.cluster-guided.clusters", 3, {"train@cluster-guided", "evaluate@cluster-guided"}),
    ("train.inade.seed", 1, set()),  # not in MODELS: no stage of the copy reads it
    ("train.unite-conquer.sample_steps", 3, {"train@unite-conquer", "evaluate@unite-conquer"}),
    ("evaluate.seed", 1, EVALUATE),
    ("compare.samples", 2, {"compare"}),
    ("datasets.sample.source", {"kind": "sample", "path": "raw/elsewhere"}, {"sample", "ingest"}),
    ("datasets.sample.test_size", 0.3, {"ingest"}),
    ("datasets.sample.label_map", "celebamask-hq-19", {"pack", "preview"} | TRAIN | EVALUATE),
    ("datasets.sample.annotate", ["sketch", "clip"], {"weights", "pack"} | ANNOTATE),
    ("datasets.sample.text", "image", {"pack"}),  # recorded in the training shards: training follows them
    ("datasets.sample.train_config", "coco-64", TRAIN | EVALUATE),
    ("datasets.sample.overrides", {"preview.seed": 1}, EVERY),
    ("datasets.landscape.label_map", "celebamask-hq-19", set()),  # a profile that is not running
    ("datasets.coco.overrides", {"ingest.jpeg_quality": 80}, set()),
]


def test_the_rerun_table_covers_every_params_section_and_profile_key():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    sections = {key for key in params if key not in ("annotate", "train", "datasets")}
    sections |= {f"{group}.{name}" for group in ("annotate", "train") for name in params[group]}
    sections |= {f"datasets.sample.{key}" for key in params["datasets"]["sample"]}
    covered = {key for key, _, _ in RERUNS}
    assert {s for s in sections if not any(k == s or k.startswith(s + ".") for k in covered)} == set()
    assert {f"ingest.{key}" for key in params["ingest"]} <= covered  # each one reruns differently


def test_every_model_family_is_trained_and_evaluated_here_or_in_its_own_test_file():
    assert sorted([*MODELS, *ELSEWHERE]) == sorted(REGISTRY)
    for family, test_file in ELSEWHERE.items():
        text = (REPO / "tests" / test_file).read_text()
        assert '"evaluate", "--model"' in text and f'"{family}"' in text, f"{test_file} does not evaluate {family}"


def test_a_changed_param_marks_exactly_its_stages(project):
    root, _, _ = project
    original = (root / "params.yaml").read_text()
    wrong = {}
    try:
        for key, value, expected in RERUNS:
            params = yaml.safe_load(original)
            node = params
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            inherited = parents[:1] == ["train"] and leaf in params["train"]["defaults"]  # a family's own setting
            assert leaf in node or inherited, f"params.yaml has no {key}"
            node[leaf] = value
            (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            if (changed := changed_stages(root)) != expected:
                wrong[key] = {"missing": sorted(expected - changed), "unexpected": sorted(changed - expected)}
    finally:
        (root / "params.yaml").write_text(original)
    assert wrong == {}
    assert changed_stages(root) == set()


def test_an_experiment_reruns_the_changed_stage_and_what_depends_on_it(project):
    """`dvc exp run -S` on one model's training length: its training and evaluation rerun, nothing upstream (an
    annotator's param reaching every downstream stage is checked by status in the test above, without the
    minutes of rerunning them all)."""
    root, env, _ = project
    # the uncached copies of the metrics (dvc.yaml: `dvc metrics show`) are not restored by `dvc checkout`
    uncached = {path: path.read_bytes() for path in (root / "data/runs/sample/metrics").glob("*.json")}
    try:
        out = dvc(root, env, "exp", "run", "-S", "train.spade-sketch.steps=3")
        downstream = {s for s in stages(root) if s.split("@")[0] not in ("sample", "weights", "ingest", "annotate",
                                                                          "pack", "preview", "train", "evaluate")}
        assert ran(out) == {"train@spade-sketch", "evaluate@spade-sketch"} | downstream
        run = root / "data/runs/sample/spade-sketch/train"
        assert (run / "network-snapshot-000003.pt").is_file()
    finally:
        subprocess.run(["git", "checkout", "params.yaml", "dvc.lock"], cwd=root, env=env, check=True)
        dvc(root, env, "checkout", "--force")
        for path, data in uncached.items():
            path.write_bytes(data)
    assert changed_stages(root) == set()


def test_a_repro_killed_mid_annotate_redoes_only_unfinished_shards(project):
    """`persist: true` keeps finished shards; their fingerprinted markers make the rerun skip them, and shards
    made under the old params are redone, never reused."""
    root, env, _ = project
    sketch = root / "data/sample/sketch"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["annotate"]["sketch"]["resolution"] = 320  # slower shards, so the kill lands between them
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    old = {p.name: p.read_text() for p in sketch.glob("*.stats.json")}
    job = subprocess.Popen([str(BIN / "dvc"), "repro", "annotate@sketch"], cwd=root, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _redone(sketch, old):
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    finished = _redone(sketch, old)
    assert 0 < len(finished) < len(old), "the kill should land between the first and the last shard"
    out = dvc(root, env, "repro", "annotate@sketch")
    assert f"({len(finished)} already done)" in out, out
    now = {p.name: p.read_text() for p in sketch.glob("*.stats.json")}
    assert {name: now[name] for name in finished} == finished  # not redone
    assert all(now[name] != old[name] for name in old)  # every stale shard was redone
    assert not list(sketch.glob(".*"))


def _redone(folder: Path, old: dict) -> dict:
    current = {p.name: p.read_text() for p in folder.glob("*.stats.json")}
    return {name: text for name, text in current.items() if text != old.get(name)}
