"""`pipeline evaluate` end to end: a `tiny` PoE-GAN trained two steps on shards written here, evaluated on their
test split under every condition, with the numbers made by random-weight networks marked; the same numbers
under `torchrun` with two processes; memory that does not grow with the number of images; and the clear
refusals (no snapshot, no test shards, no metric weights)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from metric_fixtures import write_random_inception
from train_shards import write_sample_shards, write_training_shards

from pipeline.cli import main
from pipeline.params.stages import EvaluateParams
from train.eval_data import EvalSet, pixel_digests
from train.evaluate import generate, reference_set
from train.metrics.base import EvalContext
from train.metrics.conditions import CONDITIONS as MODALITIES_OF
from train.metrics.fid import reference_features
from train.models import family

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
CONDITIONS = ["unconditional", "text", "seg", "sketch", "all"]


def write_params(path: Path, **evaluate) -> Path:
    """The repository's params with a two-step tiny training and a small evaluation."""
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"]["poegan"].update(batch_size=2, workers=0, snapshot_every=2, sample_every=2, steps=2)
    raw["annotate"]["seg"].update(long_side=32, batch_size=4)
    raw["evaluate"].update(metrics=["fid", "kid", "seg_consistency", "lpips_diversity"], num_images=4, batch_size=4,
                           kid_subsets=2, diversity_groups=2, diversity_pairs=1, diversity_images=2)
    # as the sample's overrides (which say 'random' for the metric weights), so that they win
    raw["datasets"]["sample"]["overrides"].update({f"evaluate.{k}": v for k, v in evaluate.items()})
    path.write_text(yaml.safe_dump(raw))
    return path


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(root, data dir) with train and test shards and a tiny PoE-GAN run of two steps."""
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "data"
    write_sample_shards(data)
    params = write_params(root / "params.yaml")
    result = run("train", "--params", str(params), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    return root, data


def test_evaluates_every_condition_into_metrics_and_report(trained, caplog):
    root, data = trained
    params = write_params(root / "eval-params.yaml", inception_weights="random", lpips_weights="random",
                          metrics=["fid", "kid", "seg_consistency", "lpips_diversity", "ssim", "lpips_gt"])
    result = run("evaluate", "--params", str(params), "--data-dir", str(data), "--num-images", "3")
    assert result.exit_code == 0, result.output
    assert "evaluate.inception_weights is 'random'" in caplog.text
    assert "evaluate.lpips_weights is 'random'" in caplog.text
    out = data / "runs" / "sample" / "poegan" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    for condition in CONDITIONS:
        assert metrics[f"{condition}/fid"] > 0  # an untrained generator is far from the real images
        assert metrics[f"{condition}/lpips_diversity"] > 0  # new noise, new images
    # the seg map is scored only where it was given to the generator
    assert {k for k in metrics if k.endswith("/seg_miou")} == {"seg/seg_miou", "all/seg_miou",
                                                             "random_weights/seg_miou"}
    # every number a random-weight network made says so, in metrics.json and where it stands in the report
    assert metrics["random_weights/fid"] == metrics["random_weights/kid"] == "inception"
    assert metrics["random_weights/lpips_diversity"] == "alexnet"
    assert metrics["random_weights/seg_miou"] == "seg annotator"  # the sample's segmenter is random too
    report = (out / "report.md").read_text()
    unconditional = next(line for line in report.splitlines() if line.startswith("| unconditional |"))
    assert unconditional.count("†") == 4  # fid, kid, kid_std, lpips_diversity
    assert "† Computed by networks with random weights" in report and "fid, kid, kid_std by inception" in report
    assert all(f"samples_{c}.png" in report and (out / f"samples_{c}.png").is_file() for c in CONDITIONS)
    assert "3 test images at 32 px" in report and (out / "fid_per_condition.png").is_file()
    # closeness to the test image each condition came from, on every row but the unconditional one
    assert {k.split("/")[0] for k in metrics if k.endswith("/ssim")} == set(CONDITIONS) - {"unconditional"}
    assert all(0 < metrics[f"{c}/lpips_gt"] and -1 <= metrics[f"{c}/ssim"] < 1 for c in CONDITIONS[1:])
    assert metrics["random_weights/lpips_gt"] == "alexnet"
    # the protocol travels with the numbers, and the dry run printed the same one before the run
    record = metrics["protocol"]
    assert record["images"] == 3 and record["reference"] == {"split": "test", "images": 3}
    assert [row["name"] for row in record["rows"]] == CONDITIONS and record["snapshot"].startswith("network-")
    assert record["rows"][0]["metrics"] == ["fid", "kid", "lpips_diversity"]  # no ground truth unconditionally
    assert json.loads((data / "runs" / "sample" / "metrics" / "poegan.json").read_text()) == metrics
    section = report.split("## Protocol\n\n")[1].split("\n\n")[0].splitlines()
    dry = run("evaluate", "--params", str(params), "--data-dir", str(data), "--num-images", "3", "--dry-run")
    assert dry.exit_code == 0 and section and all(line[2:] in dry.output.splitlines() for line in section)


def test_fid_against_the_training_split_when_asked(trained):
    """evaluate.reference_split: train (INADE's official evaluation) scores FID against the training images (up to
    evaluate.num_images: all 4 here), and the protocol says so."""
    root, data = trained
    out = data / "runs" / "sample" / "poegan" / "eval"
    fids = {}
    for split in ("test", "train"):
        params = write_params(root / f"reference-{split}.yaml", inception_weights="random", metrics=["fid"],
                              conditions=["seg"], reference_split=split)
        result = run("evaluate", "--params", str(params), "--data-dir", str(data), "--num-images", "3")
        assert result.exit_code == 0, result.output
        metrics = json.loads((out / "metrics.json").read_text())
        images = {"test": 3, "train": 4}[split]
        assert metrics["protocol"]["reference"] == {"split": split, "images": images}
        assert f"reference set (FID/KID): {images} {split} images" in (out / "report.md").read_text()
        fids[split] = metrics["seg/fid"]
    # the same generated images, other real ones; both reference sets cached under their own split's name
    assert fids["train"] != fids["test"]
    assert {"train", "test"} <= {path.name.split("-")[2] for path in (data / "cache" / "fid").glob("*.npy")}


def _pipeline(args, tmp_path, torchrun: int = 0) -> subprocess.CompletedProcess:
    """`pipeline ARGS` in a fresh process (under `torchrun` with that many processes), one thread each."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    script = [str(Path(sys.executable).parent / "pipeline")]
    if torchrun:
        script = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}", *script]
    done = subprocess.run([sys.executable, *script, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow  # ~2 min on 2 loaded cores: two evaluations of 4 images
def test_two_torchrun_processes_evaluate_to_the_numbers_and_samples_of_one_process(trained, tmp_path):
    _, data = trained
    # 2 images a batch: each process generates one of the two batches; the diversity groups span both
    params = write_params(tmp_path / "params.yaml", inception_weights="random", lpips_weights="random", batch_size=2,
                          diversity_images=3)
    out = data / "runs" / "sample" / "poegan" / "eval"
    outputs = {}
    for processes in (0, 2):
        shutil.rmtree(data / "cache", ignore_errors=True)  # rank 0 computes the reference features in both
        _pipeline(["evaluate", "--params", str(params), "--data-dir", str(data)], tmp_path, torchrun=processes)
        outputs[processes] = {name: (out / name).read_bytes() for name in
                              ["metrics.json", "report.md", "samples_all.png", "samples_unconditional.png"]}
    assert outputs[2] == outputs[0]
    assert json.loads(outputs[0]["metrics.json"])["all/lpips_diversity"] > 0


def _peak_rss_mb(params: Path, data: Path, images: int, tmp_path: Path) -> float:
    """Peak resident memory (MB) of `pipeline evaluate --num-images IMAGES` in a process of its own."""
    code = ("import resource, sys; from pipeline.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, "evaluate", "--params", str(params), "--data-dir", str(data),
                           "--num-images", str(images)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return float(done.stdout.split()[-1])


@pytest.mark.slow  # minutes on 2 loaded cores: evaluations of 8 and 32 images
def test_evaluation_memory_does_not_grow_with_the_number_of_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    data = root / "data"
    write_sample_shards(data, test=32)
    params = write_params(root / "params.yaml", inception_weights="random", metrics=["fid"],
                          conditions=["unconditional"], batch_size=4)
    assert run("train", "--params", str(params), "--data-dir", str(data)).exit_code == 0
    small, large = (_peak_rss_mb(params, data, images, root) for images in (8, 32))
    # Holding the test split (its one-hot seg maps alone are 0.75 MB an image at 32 px and 182 classes) grew by
    # about 18 MB here; what may grow now is the Inception features, 8 KB an image and set (~0.4 MB).
    assert large - small < 8, (small, large)
    assert large < 1.25 * small


def test_refuses_without_snapshot_or_test_shards(tmp_path, trained):
    _, data = trained
    params = write_params(tmp_path / "params.yaml", inception_weights="random", lpips_weights="random")
    result = run("evaluate", "--params", str(params), "--data-dir", str(data), "--model", "spade-seg")
    assert result.exit_code == 1
    assert "no network-snapshot-*.pt" in result.output and "pipeline train" in result.output

    empty = tmp_path / "data"
    run_dir = empty / "runs" / "sample" / "poegan" / "train"
    run_dir.mkdir(parents=True)
    for snapshot in (data / "runs" / "sample" / "poegan" / "train").glob("network-snapshot-*.pt"):
        (run_dir / snapshot.name).write_bytes(snapshot.read_bytes())
    result = run("evaluate", "--params", str(params), "--data-dir", str(empty))
    assert result.exit_code == 1 and "NNNNNN.tar in" in result.output and "pipeline pack" in result.output


def test_missing_inception_weights_stop_before_any_output_with_the_registry_message(tmp_path, trained):
    _, data = trained
    params = write_params(tmp_path / "params.yaml", inception_weights="inception-2015-12-05")
    result = run("evaluate", "--params", str(params), "--data-dir", str(data))
    assert result.exit_code == 1
    assert "inception-2015-12-05" in result.output and "not found" in result.output


def test_reference_features_are_recomputed_when_the_test_images_change_under_the_same_keys(tmp_path):
    shards = tmp_path / "shards"
    inception = write_random_inception(tmp_path / "inception.pth")
    ctx = EvalContext(EvaluateParams(inception_weights=str(inception)), tmp_path, tmp_path / "cache")

    def reference(jpeg_quality: int):
        write_training_shards(shards, images=3, per_shard=3, short_side=36, split="test", jpeg_quality=jpeg_quality)
        test = EvalSet(shards, 32, 182, limit=3, seed=0, batch_size=2)
        batches = list(test)
        digests = [d for batch in batches for d in pixel_digests(batch.images)]
        return batches, reference_features(reference_set("sample", test, digests, 32), ctx)

    before, features = reference(95)
    # re-ingested with another jpeg_quality: the same keys, other pixels, so other reference features
    after, recomputed = reference(60)
    assert [b.keys for b in after] == [b.keys for b in before]
    assert not np.array_equal(after[0].images, before[0].images)
    assert not np.array_equal(recomputed, features)
    # the first images again: their cached features are found, not confused with the second set's
    assert np.array_equal(reference(95)[1], features) and len(list((tmp_path / "cache").iterdir())) == 2


def random_conditions(seed: int, num_classes: int = 182, size: int = 32) -> dict:
    """One test sample's conditions as `read_test_set` gives them, drawn from `seed`."""
    rng = torch.Generator().manual_seed(seed)
    seg = torch.nn.functional.one_hot(torch.randint(0, num_classes, (1, size, size), generator=rng), num_classes)
    return {"image": torch.rand(1, 3, size, size, generator=rng) * 2 - 1, "seg": seg.permute(0, 3, 1, 2).float(),
            "sketch": (torch.rand(1, 1, size, size, generator=rng) < 0.1).float(),
            "text": torch.randn(1, 512, generator=rng)}


@pytest.mark.parametrize("model", ["poegan", "spade-seg", "spade-sketch", "spade-seg-monce", "inade"])
def test_each_condition_generates_from_exactly_its_modalities_and_never_from_the_test_image(model):
    torch.manual_seed(0)
    G, _ = family(model).networks(family(model).config("tiny"), 182)
    G.eval().requires_grad_(False)
    cond, other = random_conditions(0), random_conditions(1)
    for condition in family(model).conditions or MODALITIES_OF:
        given = set(MODALITIES_OF[condition])  # generator modalities, named as the condition tensors are
        images = generate(G, cond, condition, seed=0, batch_size=1, device="cpu")
        # every input the condition excludes, the real image (the style input) included, is ignored to the bit
        excluded = {k: other[k] if k not in given else v for k, v in cond.items()}
        assert generate(G, excluded, condition, seed=0, batch_size=1, device="cpu").tobytes() == images.tobytes()
        for name in given:  # and each input it includes is used
            changed = generate(G, {**cond, name: other[name]}, condition, seed=0, batch_size=1, device="cpu")
            assert not np.array_equal(changed, images), (condition, name)


@pytest.mark.parametrize("gpu_memory", [80, 40])
def test_dry_run_says_what_landscape_evaluation_computes_and_a_per_gpu_batch_that_fits(tmp_path, gpu_memory):
    result = run("evaluate", "--params", str(REPO_PARAMS), "--data-dir", str(tmp_path), "--dataset", "landscape",
                 "--dry-run", "--gpu-memory", str(gpu_memory))
    assert result.exit_code == 0, result.output
    fits = re.search(rf"^per-GPU batch on {gpu_memory} GB: (\d+) \(evaluate.batch_size 32\), estimated peak "
                     r"([\d.]+) GB", result.output, re.M)
    # at 1024 px PoE-GAN's fp32 forward needs more than 80 GB for a batch of 32: a smaller batch is chosen
    assert fits and 0 < int(fits[1]) < 32 and float(fits[2]) <= gpu_memory
    assert "rows (condition: metrics): unconditional: fid, kid, lpips_diversity; text: fid, kid, clip_score" \
        in result.output
    assert "images per condition: 50000" in result.output and "label map coco-stuff-182 (182 classes)" in result.output
    assert not (tmp_path / "runs").exists()  # nothing written
