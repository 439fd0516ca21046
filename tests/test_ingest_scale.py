"""Ingest at scale: a rerun over unchanged files reads no image bytes (their hashes come from the manifest's and
rejects' stamps), a touched file is read again and only it, and ingest on a local Ray cluster (one task per
shard) writes the same bytes as the local processes; the executor's Ray tasks (`executor.shard_map`) give the
local results and raise a job's own error."""
import os

import executor_jobs
import pytest
import ray
from executor_jobs import SETUP_VARIABLE, fails_on_five, mark, marked, square
from ingest_fixtures import LIMITS, encode, folder_source, jpeg, outputs, picture, read_table, write

from pipeline.executor import shard_map
from pipeline.ingest import ingest
from pipeline.sources import Blob
from shardio.layout import Layout

FILES = {f"{i:02d}.jpg": jpeg(72, 64, seed=i) for i in range(9)} | {
    "p.png": encode(picture(90, 70, seed=20), "PNG"),
    "again.jpg": jpeg(72, 64, seed=3),              # a duplicate
    "tiny.png": encode(picture(16, 16), "PNG"),     # rejected at the header check
    "broken.jpg": jpeg(80, 60, seed=30)[:700],      # rejected only at decoding, in its shard
}


@pytest.fixture
def raw(tmp_path):
    for name, data in FILES.items():
        write(tmp_path / "raw" / name, data)
    return tmp_path / "raw"


@pytest.fixture
def bytes_read(monkeypatch):
    """Every byte read through a source's blobs (images and provided files), in this process."""
    count = {"bytes": 0, "files": []}
    read = Blob.read

    def counting(blob):
        data = read(blob)
        count["bytes"] += len(data)
        count["files"].append(os.path.basename(blob.path))
        return data
    monkeypatch.setattr(Blob, "read", counting)
    return count


def run(layout, raw, **options):
    return ingest(layout, LIMITS, folder_source(raw), 0.25, progress=False, **options)


def test_a_rerun_over_unchanged_files_reads_no_image_bytes(tmp_path, raw, bytes_read):
    layout = Layout(tmp_path / "data", "demo")
    first = run(layout, raw, workers=1)
    assert bytes_read["bytes"] > 0 and sum(first.accepted.values()) == 10
    before, bytes_read["bytes"], bytes_read["files"] = outputs(layout), 0, []
    again = run(layout, raw, workers=1)
    assert bytes_read["bytes"] == 0 and again.written == 0
    assert outputs(layout) == before
    assert (again.accepted, again.rejected, again.duplicates) == (first.accepted, first.rejected, first.duplicates)

    os.utime(raw / "04.jpg", ns=(1, 1))  # same bytes, another modification time: read (and hashed) again
    os.utime(raw / "tiny.png", ns=(1, 1))
    run(layout, raw, workers=1)
    assert sorted(bytes_read["files"]) == ["04.jpg", "tiny.png"]
    shards = lambda files: {k: v for k, v in files.items() if k.startswith("images/")}  # noqa: E731
    assert shards(outputs(layout)) == shards(before)  # their shards were done already: same content, same plan
    assert len(read_table(layout.manifest)) == 10


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs; ingest leaves one of them free (reserve_cpus) for reads and Ray's own work."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray.cloudpickle.register_pickle_by_value(executor_jobs)  # Ray's workers cannot import the tests' modules
    yield
    ray.cloudpickle.unregister_pickle_by_value(executor_jobs)
    ray.shutdown()


def test_ingest_on_ray_writes_the_bytes_of_the_local_run(tmp_path, raw, local_ray):
    local, on_ray = Layout(tmp_path / "local", "demo"), Layout(tmp_path / "ray", "demo")
    run(local, raw, workers=2)
    summary = run(on_ray, raw, workers=0, use_ray=True, reserve_cpus=1.0)
    assert summary.shards == summary.written == 3 and outputs(on_ray) == outputs(local)
    assert {r["source"]: r["reason"] for r in read_table(on_ray.rejects)} == {
        "again.jpg": "duplicate", "tiny.png": "too_small", "broken.jpg": "undecodable"}


def test_ray_tasks_give_the_local_results_and_raise_the_jobs_own_error(local_ray):
    jobs = list(range(12))
    with shard_map("ray", 0, setup=mark, reserve_cpus=1.0) as run:
        assert list(run(square, jobs, ordered=True)) == [n * n for n in jobs]
        assert sorted(run(square, jobs)) == [n * n for n in jobs]
        assert list(run(marked, [0])) == ["set"]  # setup ran in the task's worker
        with pytest.raises(ValueError, match="job 5 is bad") as raised:
            list(run(fails_on_five, jobs))
    assert type(raised.value) is ValueError  # not Ray's RayTaskError wrapping it
    assert SETUP_VARIABLE not in os.environ
