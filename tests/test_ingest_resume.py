"""A real `pipeline ingest` process killed with SIGKILL mid-run, then rerun: it redoes only the shards without a
marker and ends byte-identical to a run that was never interrupted."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from ingest_fixtures import encode, outputs, params_file, picture, write

from pipeline.ingest import ingest
from shardio.layout import Layout
from pipeline.params import load_params

PIPELINE = str(Path(sys.executable).with_name("pipeline"))
IMAGES = 32
SHARDS = IMAGES // 2  # 24 train + 8 test images in shards of 2


def command(params: Path, data: Path) -> list[str]:
    return [PIPELINE, "ingest", "--dataset", "raw", "--params", str(params), "--data-dir", str(data),
            "--workers", "2", "--no-progress"]


def test_a_killed_run_resumes_to_the_same_bytes(tmp_path):
    for i in range(IMAGES):  # PNGs to be re-encoded: each shard of two costs a little real work
        write(tmp_path / "raw" / f"{i:03d}.png", encode(picture(640, 480, seed=i), "PNG"))
    params = params_file(tmp_path, ingest={"shard_size": 2, "max_short_side": 256, "min_size": 32},
                         datasets={"raw": {"source": {"kind": "folder", "path": str(tmp_path / "raw")},
                                           "test_size": 0.25}})
    killed, clean = Layout(tmp_path / "killed", "raw"), Layout(tmp_path / "clean", "raw")

    run = subprocess.Popen(command(params, killed.data_dir), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(killed.images.glob("*.stats.json")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(random.uniform(0, 0.05))
    os.killpg(run.pid, signal.SIGKILL)  # the whole process group: the CLI and its workers
    run.wait()
    assert run.returncode == -signal.SIGKILL, run.stderr.read().decode()

    marked = {p.name.removesuffix(".stats.json") + ".tar" for p in killed.images.glob("*.stats.json")}
    assert marked and len(marked) < SHARDS, "the kill should land while shards are still being written"
    assert not killed.manifest.exists()
    stamps = {name: (killed.images / name).stat().st_mtime_ns for name in marked}

    resumed = subprocess.run(command(params, killed.data_dir), capture_output=True, text=True, check=True)
    assert f"{len(marked)} already done" in resumed.stdout
    assert {name: (killed.images / name).stat().st_mtime_ns for name in marked} == stamps  # left untouched

    uninterrupted = load_params(params).for_dataset("raw")  # in this process, one worker: same bytes expected
    ingest(clean, uninterrupted.ingest, uninterrupted.profile("raw").source, 0.25, workers=1, progress=False)
    assert outputs(killed) == outputs(clean)
    assert len(list(clean.images.glob("*.tar"))) == SHARDS
