"""`pipeline annotate` on a real local Ray (2 CPUs, one per module): aligned, deterministic, resumable shards
that survive dead workers, a killed job and bad images; then pack and preview on what it wrote."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import ray
import torch
import webdataset as wds
import yaml
from click.testing import CliRunner

from annotators.base import Annotator
from annotators.weights import WeightsError, cache_path
from image_shards import jpeg, write_image_shards
from ingest_fixtures import encode, picture, write
from public_layouts import filled, hed_bsds500_port_layout
from pipeline.cli import main
from pipeline.annotate import ShardJob, annotate_shard
from shardio.layout import Layout
from pipeline.ray_runtime import ActorPool, pool_shape
from shardio.shards import class_counts, fingerprint, read_shard, read_stats, shard_writer, write_stats

ANNOTATORS = ["seg", "sketch", "clip"]
SLOW = ["sketch"]  # tests of the machinery run this one alone (on bigger images where a shard must take a while)
OFFLINE = {"annotate.seg.weights": "random", "annotate.seg.long_side": 32, "annotate.sketch.weights": "random",
           "annotate.sketch.simplify": False, "annotate.clip.weights": "random", "annotate.clip.model": "ViT-S-32"}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray with 2 CPUs for the whole module (Ray start-up is the slow part)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def write_params(folder: Path, **overrides) -> Path:
    """The repo's params with the sample profile made offline and fast (random weights, tiny seg input)."""
    params = yaml.safe_load(open("params.yaml"))
    params["datasets"]["sample"]["overrides"] = {**OFFLINE, **overrides}
    params["datasets"]["sample"]["annotate"] = ANNOTATORS
    params["pack"]["workers"] = 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def make_dataset(folder: Path, per_shard: list[int], size=(40, 32)) -> tuple[Layout, list[str], Path]:
    layout = Layout(folder / "data", "sample")
    keys = write_image_shards(layout, per_shard, size=size)
    return layout, keys, write_params(folder)


def annotate(layout: Layout, params: Path, *args: str, only=ANNOTATORS) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["annotate", "--dataset", "sample", "--params", str(params), "--data-dir",
                                       str(layout.data_dir), "--no-progress", "--only", ",".join(only), *args])
    return result.exit_code, result.output


def shard_bytes(layout: Layout, names=ANNOTATORS) -> dict[str, bytes]:
    return {f"{n}/{p.name}": p.read_bytes() for n in names for p in sorted(layout.annotations(n).glob("*.tar"))}


@ray.remote(num_cpus=1)
def one_cpu_task() -> int:
    return 1


def in_background(run) -> threading.Event:
    """Start `run()` in a thread; the event returned is set when it ends, with its return value as `.result`."""
    done = threading.Event()

    def target():
        done.result = run()
        done.set()

    threading.Thread(target=target, daemon=True).start()
    return done


def test_pool_never_claims_the_reserved_cpus():
    shape = pool_shape({"CPU": 2.0}, workers=2, gpus_per_worker=1, reserve_cpus=1)
    assert shape.workers == 2 and shape.workers * shape.num_cpus <= 1 and shape.num_gpus == 0
    assert pool_shape({"CPU": 16.0}, 0, 1, 1).workers == 15
    gpu = pool_shape({"CPU": 8.0, "GPU": 4.0}, 0, 0.5, 1)
    assert gpu.workers == 8 and gpu.num_gpus == 0.5 and gpu.workers * gpu.num_cpus <= 7


def test_a_gpu_worker_gets_its_share_of_the_cpus_and_one_gpu_at_most():
    shape = pool_shape({"CPU": 33.0, "GPU": 4.0}, 0, 1, 1)  # decoding, NMS and encoding run on its threads
    assert (shape.workers, shape.num_gpus, shape.num_cpus, shape.torch_threads) == (4, 1, 8.0, 8)
    with pytest.raises(ValueError, match="gpus_per_worker is 2: an annotator runs on one GPU"):
        pool_shape({"CPU": 32.0, "GPU": 8.0}, 0, 2, 1)


def test_a_gpu_workers_cpu_side_gets_its_share_and_a_cpu_workers_keeps_two_threads():
    # decoding, pre- and post-processing and encoding: the model thread of a GPU worker waits on the GPU
    assert pool_shape({"CPU": 33.0, "GPU": 4.0}, 0, 1, 1).cpu_threads == 8
    assert pool_shape([{"CPU": 16.0, "GPU": 4.0}, {"CPU": 64.0, "GPU": 2.0}], 0, 1, 1).cpu_threads == 3
    assert pool_shape({"CPU": 4.0, "GPU": 4.0}, 0, 1, 1).cpu_threads == 2  # never fewer than on a CPU
    # on CPUs the actor's cores run the model and the reserve stays free for Ray's reads (ray#44687)
    assert pool_shape({"CPU": 16.0}, 0, 1, 1).cpu_threads == 2


def test_gpu_workers_are_sized_node_by_node():
    # from the totals (6 GPUs, 47 free CPUs) each worker would claim 7.8 CPUs: only 2 fit on the first node
    nodes = [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 32.0, "GPU": 2.0}, {"CPU": 64.0}]
    shape = pool_shape(nodes, 0, 1, 1)
    assert shape.workers == 6 and shape.num_cpus == 3.75  # the first node's 15 free CPUs over its 4 workers
    assert pool_shape([{"CPU": 8.0}, {"CPU": 8.0}], 0, 1, 1).workers == 15  # CPU pools: the cluster's CPUs


@ray.remote(num_cpus=0)
class Echo:
    def run(self, job):
        return job

    def metadata(self):
        return {}


@ray.remote(num_cpus=0)
class FailsToStart:
    def __init__(self):
        raise WeightsError("cannot read weights file w.pth as a torch state dict (damaged)\n\nCheck the "
                           "documentation of torch.load to learn more")

    def metadata(self):
        return {}


def test_work_goes_only_to_workers_that_started(cluster):
    placeable = iter([False, True])
    pool = ActorPool(lambda: (Echo if next(placeable) else Echo.options(resources={"absent": 1})).remote(), 2)
    done = []
    worker = threading.Thread(target=lambda: done.extend(pool.map([1, 2, 3], lambda a, j: a.run.remote(j), 1)),
                              daemon=True)
    worker.start()
    worker.join(60)  # a job handed to the unplaceable worker would wait forever
    pool.shutdown()
    assert sorted(job for job, _, _ in done) == [1, 2, 3] and all(error is None for _, _, error in done)


def test_workers_that_never_start_are_an_error(cluster, monkeypatch):
    monkeypatch.setattr("pipeline.ray_runtime.START_TIMEOUT", 1.0)
    pool = ActorPool(lambda: Echo.options(resources={"absent": 1}).remote(), 2)
    with pytest.raises(RuntimeError, match="none of the 2 workers started within 1 s"):
        list(pool.map([1], lambda a, j: a.run.remote(j), 1))
    pool.shutdown()


def test_a_first_call_on_workers_that_never_start_is_the_same_error(cluster, monkeypatch):
    """The driver's first call (the annotator's metadata) waits no longer than `map` does for a worker to start."""
    monkeypatch.setattr("pipeline.ray_runtime.START_TIMEOUT", 1.0)
    pool = ActorPool(lambda: Echo.options(resources={"absent": 1}).remote(), 2)
    outcome = _within(30, lambda: pool.call_first("metadata"))  # today's call_first waits for ever
    pool.shutdown()
    assert outcome[0] == "error" and "none of the 2 workers started within 1 s" in outcome[1], outcome


def test_the_first_call_goes_to_a_worker_that_started(cluster):
    placeable = iter([False, True])
    pool = ActorPool(lambda: (Echo if next(placeable) else Echo.options(resources={"absent": 1})).remote(), 2)
    outcome = _within(30, lambda: pool.call_first("metadata"))
    pool.shutdown()
    assert outcome == ("ok", {})


def test_a_worker_start_error_is_its_first_meaningful_line(cluster):
    pool = ActorPool(lambda: FailsToStart.remote(), 1)
    outcome = _within(30, lambda: pool.call_first("metadata"))
    pool.shutdown()
    assert outcome == ("error", "a worker could not start: WeightsError: cannot read weights file w.pth as a torch "
                                "state dict (damaged)")


def _within(seconds: float, call) -> tuple[str, object]:
    """("ok", result) or ("error", message) of `call()` run in a thread, or ("hung", None) after `seconds`."""
    outcome = []

    def run():
        try:
            outcome.append(("ok", call()))
        except Exception as e:  # the test looks at the message
            outcome.append(("error", str(e)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else ("hung", None)


def test_annotate_is_aligned_identical_across_workers_and_batches_and_packs(cluster, tmp_path):
    layout, keys, params = make_dataset(tmp_path / "a", [3, 3, 2, 2])
    # 2 workers on a 2-CPU Ray must finish, and a 1-CPU task (what a reader needs) must still get scheduled
    # while they run: actors holding every CPU is the ray-project/ray#44687 hang.
    finished, probes = in_background(lambda: annotate(layout, params, "--workers", "2", "--batch-size", "2")), 0
    # a backstop against a hang, not a speed check: the probes test the scheduling, and the run took over 180 s at
    # load average 7
    deadline = time.monotonic() + 900
    while not finished.wait(0.5):
        assert ray.get(one_cpu_task.remote(), timeout=10) == 1
        probes += 1
        assert time.monotonic() < deadline, "annotate on a 2-CPU cluster did not finish"
    code, output = finished.result
    assert code == 0 and probes > 0, output
    assert "seg: 10 images" in output and "6 annotated, 4 provided, 0 failed" in output

    for name in ANNOTATORS:
        for index, image_shard in enumerate(sorted(layout.images.glob("*.tar"))):
            image_keys = [k for k, s in read_shard(image_shard)
                          if name not in json.loads(s["json"])["provided"]]
            samples = list(read_shard(layout.annotations(name) / image_shard.name))
            assert [k for k, _ in samples] == image_keys  # same keys, same order; provided seg skipped
            members = {"seg": {"seg.png"}, "sketch": {"sketch.png"}, "clip": {"clip.npy"}}[name]
            assert all(set(s) - {"clip_text.npy"} == members for _, s in samples)
            stats = read_stats(layout.annotations(name) / image_shard.name)
            assert stats["annotated"] == len(image_keys) and stats["metadata"]["weights"] == "random"
            assert stats["worker"]["device"] == "cpu" and stats["worker"]["precision"] == "fp32"  # not fingerprinted
            # the class counts of each label map, recorded for pack's card (pack decodes none)
            assert stats["seg_classes"] == ({k: class_counts(cv2.imdecode(np.frombuffer(s["seg.png"], np.uint8),
                                                                           cv2.IMREAD_UNCHANGED)) for k, s in samples}
                                            if name == "seg" else {})

    other, _, _ = make_dataset(tmp_path / "b", [3, 3, 2, 2])  # CLIP's batch invariance is the annotator's own test
    code, output = annotate(other, params, "--workers", "1", "--batch-size", "3", only=["seg", "sketch"])
    assert code == 0, output
    assert shard_bytes(other, ["seg", "sketch"]) == shard_bytes(layout, ["seg", "sketch"])

    before = {p: p.stat().st_mtime_ns for p in layout.annotations("seg").glob("*")}
    with pytest.MonkeyPatch.context() as patch:  # a no-op is decided from the markers: no Ray, no model
        patch.setattr("pipeline.annotate_run.connect", _no_cluster)
        code, output = annotate(layout, params)
    assert code == 0 and output.count("(4 already done)") == 3, output
    assert {p: p.stat().st_mtime_ns for p in layout.annotations("seg").glob("*")} == before

    pack = CliRunner().invoke(main, ["pack", "--dataset", "sample", "--params", str(params), "--data-dir",
                                     str(layout.data_dir), "--no-progress"])
    assert pack.exit_code == 0, pack.output
    urls = [str(p) for p in sorted(layout.shards.glob("*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert [s["__key__"] for s in samples] == keys
    for sample in samples:
        assert {"jpg", "seg.png", "sketch.png", "clip.npy", "json"} <= set(sample)
        assert set(sample["json"]["annotators"]) >= {"sketch", "clip"}
        assert sample["json"]["annotators"]["clip"] == {"model": "ViT-S-32", "pretrained": "random",
                                                         "weights": "random", "sha256": "random",
                                                         "computed_on": {"device": "cpu", "precision": "fp32"}}
        assert sample["clip.npy"].dtype == np.float16 and sample["clip.npy"].shape == (384,)
        if "txt" in sample:  # provided captions get their CLIP text embeddings
            assert sample["clip_text.npy"].shape == (len(sample["txt"].splitlines()), 384)
        else:
            assert "clip_text.npy" not in sample
    preview = CliRunner().invoke(main, ["preview", "--dataset", "sample", "--params", str(params), "--data-dir",
                                        str(layout.data_dir), "--samples", "4"])
    assert preview.exit_code == 0 and layout.preview.stat().st_size > 10_000, preview.output


def test_changed_params_redo_shards_but_batch_size_does_not(cluster, tmp_path):
    layout, _, params = make_dataset(tmp_path, [2, 2])
    assert annotate(layout, params, "--workers", "1", only=SLOW)[0] == 0
    first = shard_bytes(layout, SLOW)
    bigger_batches = write_params(tmp_path / "b", **{"annotate.sketch.batch_size": 5})
    code, output = annotate(layout, bigger_batches, "--workers", "1", only=SLOW)
    assert code == 0 and "sketch: 0 images" in output and "(2 already done)" in output
    code, output = annotate(layout, write_params(tmp_path / "c", **{"annotate.sketch.threshold": 0.9}), "--workers",
                            "1", only=SLOW)
    assert code == 0 and "sketch: 4 images in 2 shard(s) (0 already done)" in output
    assert shard_bytes(layout, SLOW) != first


def test_a_corrupt_image_is_recorded_and_the_shard_completes(cluster, tmp_path):
    layout, keys, params = make_dataset(tmp_path, [2, 3])
    shard = layout.images / "train-000001.tar"
    samples = list(read_shard(shard))
    with shard_writer(shard) as writer:
        for key, sample in samples:
            writer.write({"__key__": key, **sample, **({"jpg": b"\xff\xd8 not a jpeg"} if key == keys[3] else {})})
    code, output = annotate(layout, params, "--workers", "1", only=SLOW)
    assert code == 1 and "1 failed" in output and "1 image(s) and 0 shard(s) failed" in output
    stats = read_stats(layout.annotations("sketch") / "train-000001.tar")
    assert stats["failed"] == 1 and stats["failures"][0]["key"] == keys[3] and stats["failures"][0]["error"]
    assert [k for k, _ in read_shard(layout.annotations("sketch") / "train-000001.tar")] == [keys[2], keys[4]]
    code, output = annotate(layout, params, "--workers", "1", only=SLOW)  # a strict rerun stays red
    assert code == 1 and "(2 already done)" in output and "1 failed in the shards already done" in output
    tolerant = write_params(tmp_path / "t", **{"annotate.runtime.max_failed_fraction": 0.5})
    code, output = annotate(layout, tolerant, "--workers", "1", only=SLOW)
    assert code == 0 and "(2 already done)" in output  # failures are final for those params: not redone


def test_a_changed_image_shard_or_weights_file_redoes_every_shard(cluster, tmp_path):
    weights = tmp_path / "hed.pth"
    torch.save(filled(hed_bsds500_port_layout(), seed=0), weights)
    layout, _, _ = make_dataset(tmp_path, [2, 2])
    # a file of unknown origin: its pooling must be said
    params = write_params(tmp_path / "w", **{"annotate.sketch.weights": str(weights),
                                             "annotate.sketch.pooling": "floor"})
    assert annotate(layout, params, "--workers", "1", only=SLOW)[0] == 0
    for index, shard in enumerate(sorted(layout.images.glob("*.tar"))):  # ingested again: new JPEG bytes
        samples = list(read_shard(shard))
        with shard_writer(shard) as writer:
            for key, sample in samples:
                writer.write({"__key__": key, **sample, "jpg": jpeg(int(key, 16) + 100)})
        write_stats(shard, {**read_stats(shard), "fingerprint": fingerprint("test-ingest-again", index)})
    code, output = annotate(layout, params, "--workers", "1", only=SLOW)
    assert code == 0 and "sketch: 4 images in 2 shard(s) (0 already done)" in output, output
    assert "(2 already done)" in annotate(layout, params, "--workers", "1", only=SLOW)[1]  # unchanged: kept
    torch.save(filled(hed_bsds500_port_layout(), seed=1), weights)  # other weights under the same file name
    code, output = annotate(layout, params, "--workers", "1", only=SLOW)
    assert code == 0 and "sketch: 4 images in 2 shard(s) (0 already done)" in output, output


def test_resharding_leaves_only_the_current_shards_and_the_card_counts_them(cluster, tmp_path):
    for i in range(7):
        write(tmp_path / "raw" / f"{i}.png", encode(picture(48, 40, seed=i), "PNG"))
    layout = Layout(tmp_path / "data", "mine")

    def run_chain(shard_size: int) -> None:
        params = yaml.safe_load(open("params.yaml"))
        params["datasets"]["mine"] = {
            "source": {"kind": "folder", "path": str(tmp_path / "raw")}, "test_size": 0.01, "annotate": SLOW,
            "overrides": {**OFFLINE, "ingest.min_size": 16, "ingest.shard_size": shard_size}}
        params["pack"]["workers"] = 1
        path = tmp_path / f"params-{shard_size}.yaml"
        path.write_text(yaml.safe_dump(params))
        for command in (["ingest", "--workers", "1"], ["annotate", "--workers", "1"], ["pack"]):
            result = CliRunner().invoke(main, [*command, "--dataset", "mine", "--params", str(path), "--data-dir",
                                               str(layout.data_dir), "--no-progress"])
            assert result.exit_code == 0, result.output

    run_chain(3)
    assert len(list(layout.shards.glob("*.tar"))) == 3
    run_chain(8)  # 7 samples in one shard now
    for folder in (layout.images, layout.annotations("sketch")):
        assert sorted(p.name for p in folder.iterdir()) == ["train-000000.stats.json", "train-000000.tar"]
    # a training shard keeps its per-sample class counts beside it (pipeline/pack.py: write_classes)
    assert sorted(p.name for p in layout.shards.iterdir()) == [
        "train-000000.classes.json", "train-000000.stats.json", "train-000000.tar"]
    card = json.loads(layout.card_json.read_text())
    assert card["shards"] == 1 and card["samples"] == len(list(read_shard(layout.shards / "train-000000.tar"))) == 7


KILLED_SHARDS, KILLED_SIZE = [2] * 6, (320, 240)


@pytest.fixture(scope="module")
def uninterrupted(cluster, tmp_path_factory) -> dict[str, bytes]:
    """The shards of the kill tests' dataset from one uninterrupted single-worker run."""
    layout, _, params = make_dataset(tmp_path_factory.mktemp("reference"), KILLED_SHARDS, KILLED_SIZE)
    assert annotate(layout, params, "--workers", "1", only=SLOW)[0] == 0
    return shard_bytes(layout, SLOW)


def _wait_for_first_shard(layout: Layout, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(layout.annotations(SLOW[0]).glob("*.stats.json")):
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.05)


def test_an_actor_killed_mid_job_is_replaced_and_its_shard_redone(uninterrupted, tmp_path):
    layout, _, params = make_dataset(tmp_path, KILLED_SHARDS, KILLED_SIZE)
    done = in_background(lambda: annotate(layout, params, "--workers", "2", only=SLOW))
    _wait_for_first_shard(layout)
    victims = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("mmsynth-annotate-")]
    ray.kill(ray.get_actor(victims[0]["name"], namespace=victims[0]["namespace"]), no_restart=True)
    assert done.wait(300)
    code, output = done.result
    assert code == 0 and "worker(s) replaced" in output, output
    assert shard_bytes(layout, SLOW) == uninterrupted


def test_sigkilled_job_rerun_gives_identical_shards(cluster, uninterrupted, tmp_path):
    layout, _, params = make_dataset(tmp_path, KILLED_SHARDS, KILLED_SIZE)
    command = [str(Path(sys.executable).with_name("pipeline")), "annotate", "--dataset", "sample", "--params",
               str(params), "--data-dir", str(layout.data_dir), "--only", SLOW[0], "--workers", "2",
               "--no-progress"]
    job = subprocess.Popen(command, env={**os.environ, "RAY_ADDRESS": cluster}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        _wait_for_first_shard(layout)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    finished = {p.name: p.read_text() for p in layout.annotations(SLOW[0]).glob("*.stats.json")}
    assert 0 < len(finished) < len(KILLED_SHARDS)
    code, output = annotate(layout, params, "--workers", "2", only=SLOW)
    assert code == 0 and f"({len(finished)} already done)" in output, output
    assert {p.name: p.read_text() for p in layout.annotations(SLOW[0]).glob("*.stats.json")
            if p.name in finished} == finished  # finished shards were not redone
    assert not list(layout.annotations(SLOW[0]).glob(".*"))  # no half-written leftovers
    assert shard_bytes(layout, SLOW) == uninterrupted


class _Brightness(Annotator):
    """A real, tiny annotator (mean brightness as a 1x1 'sketch') that cannot handle images 64 px wide."""

    name = "sketch"

    def setup(self, device):
        pass

    def forward(self, items):
        if any(item.image.shape[1] == 64 for item in items):
            raise ValueError("cannot annotate 64-px-wide images")
        return [{"sketch.png": np.full((1, 1), int(item.image.mean()), np.uint8)} for item in items]

    def metadata(self):
        return {"model": "brightness"}


def test_an_image_failing_inside_the_annotator_fails_alone(tmp_path):
    layout = Layout(tmp_path, "sample")
    keys = write_image_shards(layout, [3], provided_every=99)
    shard = layout.images / "train-000000.tar"
    samples = list(read_shard(shard))
    with shard_writer(shard) as writer:  # the middle image becomes 64 px wide
        for key, sample in samples:
            writer.write({"__key__": key, **sample, **({"jpg": jpeg(1, 64, 32)} if key == keys[1] else {})})
    job = ShardJob(shard, "image-fp", layout.annotations("sketch") / shard.name, "fp", 3)
    stats = annotate_shard(_Brightness(), job, batch_size=3, prefetch=1, max_pixels=10**6)
    assert stats["annotated"] == 2 and stats["failed"] == 1
    assert stats["failures"] == [{"key": keys[1], "error": "ValueError: cannot annotate 64-px-wide images"}]
    assert [k for k, _ in read_shard(job.out)] == [keys[0], keys[2]]
    assert read_stats(job.out)["fingerprint"] == "fp" and read_stats(job.out)["image_fingerprint"] == "image-fp"


class _BrokenGPU(_Brightness):
    """Fails as an annotator does once its CUDA context is broken: every call, whatever the image."""

    def forward(self, items):
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")


def test_a_cuda_error_fails_the_shard_not_its_images(tmp_path):
    layout = Layout(tmp_path, "sample")
    write_image_shards(layout, [3], provided_every=99)
    shard = layout.images / "train-000000.tar"
    job = ShardJob(shard, "image-fp", layout.annotations("sketch") / shard.name, "fp", 3)
    with pytest.raises(torch.AcceleratorError, match="illegal memory access"):
        annotate_shard(_BrokenGPU(), job, batch_size=3, prefetch=1, max_pixels=10**6)
    assert read_stats(job.out) is None  # not marked done: the next run (or another worker) redoes it


def test_missing_weights_stop_the_job_before_any_worker_with_what_to_fetch(tmp_path, monkeypatch):
    def no_cluster(*args):
        raise AssertionError("Ray was started before the weights were checked")

    monkeypatch.setattr("pipeline.annotate_run.connect", no_cluster)
    layout, _, _ = make_dataset(tmp_path, [2])
    for overrides, named in (({"annotate.sketch.weights": "hed-bsds500"}, "pipeline weights fetch hed-bsds500"),
                             ({"annotate.sketch.simplify": True}, "pipeline weights fetch sketch-simplification-gan"),
                             ({"annotate.seg.weights": str(tmp_path / "nowhere.pth")}, "nowhere.pth")):
        code, output = annotate(layout, write_params(tmp_path, **overrides))
        assert code == 1 and named in output and "Traceback" not in output, output
    assert not layout.annotations("sketch").exists() or not list(layout.annotations("sketch").iterdir())


def test_every_missing_weights_file_is_listed_at_once_before_any_worker(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.annotate_run.connect", _no_cluster)
    layout, _, _ = make_dataset(tmp_path, [2])
    code, output = annotate(layout, write_params(tmp_path, **{
        "annotate.seg.weights": "deeplabv2-cocostuff164k", "annotate.sketch.weights": "hed-bsds500",
        "annotate.sketch.simplify": True}))
    assert code == 1 and "3 weights file(s) missing or unusable" in output and "Traceback" not in output, output
    for name in ("deeplabv2-cocostuff164k", "hed-bsds500", "sketch-simplification-gan"):
        assert f"pipeline weights fetch {name}" in output


def test_a_damaged_weights_file_stops_annotate_before_ray(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.annotate_run.connect", _no_cluster)
    layout, _, _ = make_dataset(tmp_path, [2])
    deeplab = cache_path("deeplabv2-cocostuff164k", layout.weights)
    deeplab.parent.mkdir(parents=True)
    deeplab.write_bytes(np.random.default_rng(0).bytes(4096))  # 4 KB of random bytes where DeepLab belongs
    code, output = annotate(layout, write_params(tmp_path, **{"annotate.seg.weights": "deeplabv2-cocostuff164k"}),
                            only=["seg"])
    assert code == 1 and f"cannot read weights file {deeplab}" in output and "Traceback" not in output, output
    torch.save(filled(hed_bsds500_port_layout()), deeplab)  # a real checkpoint, of another network
    code, output = annotate(layout, write_params(tmp_path, **{"annotate.seg.weights": "deeplabv2-cocostuff164k"}),
                            only=["seg"])
    assert code == 1 and "seg DeepLab-v2" in output and "does not match the model" in output, output


def _no_cluster(*args):
    raise AssertionError("Ray was started though the markers or the weights check had decided")
