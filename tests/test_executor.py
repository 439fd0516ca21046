"""The one shard executor: every kind maps a function over jobs with the same signature and the same results, keeps
the jobs' order when asked, holds at most a window of jobs, and stops at a job's error, raised as the job raised it
(not wrapped by the pool or by Ray). Ray's tasks are tested beside ingest on Ray (test_ingest_scale.py), sharing
its local Ray."""
import os

import pytest
from executor_jobs import SETUP_VARIABLE, fails_on_five, mark, marked, pid, square

from pipeline.executor import cluster_address, shard_map

JOBS = list(range(12))


@pytest.mark.parametrize("where, workers", [("threads", 1), ("threads", 3), ("processes", 2)])
def test_every_local_executor_gives_every_result_and_the_jobs_order_when_asked(where, workers):
    with shard_map(where, workers) as run:
        assert sorted(run(square, JOBS)) == [n * n for n in JOBS]
        assert list(run(square, JOBS, ordered=True)) == [n * n for n in JOBS]


def test_one_local_worker_runs_the_jobs_in_this_process_and_processes_run_setup_in_theirs():
    with shard_map("processes", 1) as run:
        assert set(run(pid, JOBS)) == {os.getpid()}
    with shard_map("processes", 2, setup=mark) as run:
        assert os.getpid() not in set(run(pid, JOBS)) and list(run(marked, [0])) == ["set"]
    assert SETUP_VARIABLE not in os.environ  # setup runs in the workers, never here


@pytest.mark.parametrize("where", ["threads", "processes"])
def test_a_jobs_error_stops_the_map_as_the_job_raised_it(where):
    taken = []
    with shard_map(where, 2) as run, pytest.raises(ValueError, match="job 5 is bad"):
        for result in run(fails_on_five, JOBS, ordered=True):
            taken.append(result)
    assert taken == [0, 1, 2, 3, 4]


def test_the_driver_never_holds_more_than_a_window_of_jobs():
    submitted = []

    def jobs():
        for n in JOBS:
            submitted.append(n)
            yield n
    with shard_map("threads", 2) as run:
        results = run(square, jobs(), ordered=True)
        next(results)
        assert len(submitted) <= 2 * 2  # two in flight per worker
        assert list(results) == [n * n for n in JOBS[1:]]


def test_an_unknown_executor_and_the_cluster_address(monkeypatch):
    with pytest.raises(ValueError, match="unknown executor 'gpu'"):
        with shard_map("gpu"):
            pass
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert (cluster_address("other:1"), cluster_address(None)) == ("other:1", "head:6379")
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert cluster_address(None) is None
