"""Where the stages' shard jobs run: the one executor of `pipeline ingest`, `annotate` and `pack`.

`shard_map(where, workers)` opens an executor and yields `map(fn, jobs)`, which runs the stateless `fn` once per job
and yields the results as they finish (in the jobs' order when `ordered`), with a bounded number of jobs submitted
and not yet taken, so the driver never holds more than that window of jobs:

- `threads`: a thread pool of this process (pack: its writes and fsync release the GIL, and forking a process that
  has imported torch costs more than a shard);
- `processes`: a pool of local processes (ingest: decoding holds the GIL), each running `setup` once; they start
  from a fresh server process, not forked from this one, whose heap by then grows with the collection and which
  each forked worker would hold a copy of;
- `ray`: tasks of one CPU each, spread over the nodes of the cluster `cluster_address` names (a local Ray without
  one), each running `setup` first; a task whose worker or node is lost is retried by Ray. `workers` 0 is the
  cluster's CPUs less `reserve_cpus`, and no task is queued beyond `workers`: Ray would start a queued one on a
  reserved CPU, and those stay free for reads and Ray's own work (Ray Data hangs when actors or tasks hold every
  CPU: ray-project/ray#44687).

Locally `workers` 0 is every core this process may use, and one worker runs the jobs in this process. A job's error
stops the map (the jobs not started are cancelled) and is raised as the job raised it, not wrapped by Ray.

`actor_pool(spawn, size)` is the stateful executor (annotate: a model set up once per actor): Ray actors that take
one shard at a time, a dead one replaced and its shard redone (`ray_runtime.ActorPool`).
"""
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager

EXECUTORS = ("threads", "processes", "ray")
IN_FLIGHT_PER_WORKER = 2  # local jobs queued per worker: one running, one ready, so no worker waits on the driver
TASK_RETRIES = 3  # Ray retries of a task whose worker or node died

ShardMap = Callable[..., Iterator]  # map(fn, jobs, ordered=False) -> results


def cluster_address(address: str | None = None) -> str | None:
    """The Ray cluster to use: `address`, else RAY_ADDRESS, else None (local execution, or a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None = None) -> list[dict]:
    """Join the cluster `cluster_address(address)` names, or start a local one sized to this machine; reuse an
    already initialised Ray. Returns the resources of each live node."""
    import logging

    import ray

    if not ray.is_initialized():
        if address := cluster_address(address):
            ray.init(address=address, logging_level=logging.WARNING)
        else:  # Ray detects the machine's CPUs (cgroup limits included) and GPUs itself
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def available_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def shard_map(where: str, workers: int = 0, setup: Callable[[], None] | None = None, address: str | None = None,
              reserve_cpus: float = 1.0) -> Iterator[ShardMap]:
    """A `map(fn, jobs, ordered=False)` running on `where` (one of EXECUTORS) with `workers` jobs at a time.
    `setup` runs once in every worker process (processes) or before every task (Ray), never in this process: jobs
    run here (threads, one local worker) get what the caller set here."""
    if where not in EXECUTORS:
        raise ValueError(f"unknown executor {where!r}; known: {', '.join(EXECUTORS)}")
    if where == "ray":
        yield _ray_map(workers, setup, address, reserve_cpus)
        return
    workers = workers or available_cores()
    if workers <= 1:
        yield lambda fn, jobs, ordered=False: map(fn, jobs)
        return
    with (ThreadPoolExecutor(workers, thread_name_prefix="shard") if where == "threads" else
          ProcessPoolExecutor(workers, multiprocessing.get_context("forkserver"), initializer=setup)) as pool:
        yield lambda fn, jobs, ordered=False: _windowed(
            lambda job: pool.submit(fn, job), lambda futures: next(iter(wait(futures, return_when=FIRST_COMPLETED)[0])),
            lambda future: future.result(), lambda future: future.cancel(), jobs, IN_FLIGHT_PER_WORKER * workers,
            ordered)


def _windowed(submit: Callable, first_done: Callable, result: Callable, cancel: Callable, jobs: Iterable,
              window: int, ordered: bool) -> Iterator:
    """`result(submit(job))` for every job, as they finish (`first_done` of the pending) or in order, with at most
    `window` submitted and not yet taken; when the consumer stops or a result raises, the pending are cancelled."""
    pending = []
    try:
        for job in jobs:
            pending.append(submit(job))
            while len(pending) >= window:
                yield result(_take(pending, first_done, ordered))
        while pending:
            yield result(_take(pending, first_done, ordered))
    finally:
        for handle in pending:
            cancel(handle)


def _take(pending: list, first_done: Callable, ordered: bool):
    handle = pending[0] if ordered else first_done(pending)
    pending.remove(handle)
    return handle


def _task(setup: Callable[[], None] | None, fn: Callable, job):
    """One job as a Ray task: per-process settings (PIL's pixel limit) are set in the task's worker first."""
    if setup is not None:
        setup()
    return fn(job)


def _ray_map(workers: int, setup: Callable[[], None] | None, address: str | None, reserve_cpus: float) -> ShardMap:
    import ray

    nodes = connect(address)
    if not workers:
        workers = max(1, int(sum(float(node.get("CPU", 0)) for node in nodes) - reserve_cpus))
    task = ray.remote(_task).options(num_cpus=1, scheduling_strategy="SPREAD", max_retries=TASK_RETRIES)
    return lambda fn, jobs, ordered=False: _windowed(
        lambda job: task.remote(setup, fn, job), lambda refs: ray.wait(refs, num_returns=1)[0][0], _ray_result,
        ray.cancel, jobs, workers, ordered)


def _ray_result(ref):
    """The task's result; its own error, without Ray's wrapping, if it raised."""
    import ray
    from ray.exceptions import RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as e:
        raise (e.cause if e.cause is not None else e) from None


@contextmanager
def actor_pool(spawn: Callable, size: int) -> Iterator:
    """A `ray_runtime.ActorPool` of `size` actors made by `spawn()` (Ray already connected), killed at the end."""
    from .ray_runtime import ActorPool

    pool = ActorPool(spawn, size)
    try:
        yield pool
    finally:
        pool.shutdown()
