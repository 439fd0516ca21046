"""Where ingest's jobs run: in this process, in a pool of local processes, or as Ray tasks on a cluster (one task
per job: a chunk of images to scan, or one shard to write). Every runner maps a function over an iterable of jobs
lazily, with a bounded number in flight, and yields the results in the jobs' order, so the driver never holds
more than a window of jobs."""
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from .imageio import pil_limits, set_pil_limits

IN_FLIGHT_PER_WORKER = 2  # jobs queued per worker: one running, one ready, so no worker waits on the driver


def bounded_map(submit: Callable, result: Callable, jobs: Iterable, window: int) -> Iterator:
    """`result(submit(job))` for every job, in order, with at most `window` jobs submitted and not yet taken."""
    pending = deque()
    for job in jobs:
        pending.append(submit(job))
        if len(pending) >= window:
            yield result(pending.popleft())
    while pending:
        yield result(pending.popleft())


def _in_limits(fn: Callable, job, max_pixels: int):
    """Run one job as a Ray task: PIL's pixel limit is per process, so set it in the task's worker first."""
    set_pil_limits(max_pixels)
    return fn(job)


@contextmanager
def runner(workers: int, max_pixels: int, ray_address: str | None = None, use_ray: bool = False,
           reserve_cpus: float = 1.0) -> Iterator[Callable[[Callable, Iterable], Iterator]]:
    """A `run(fn, jobs)` on `workers` processes (in this process when 1), or on Ray when `use_ray` (joining
    `ray_address`, else RAY_ADDRESS, else a local Ray), with `workers` tasks at a time (0: the cluster's CPUs
    less `reserve_cpus`, which stay free for reads and Ray's own work: ray-project/ray#44687)."""
    if use_ray:
        yield _ray_run(workers, max_pixels, ray_address, reserve_cpus)
    elif workers <= 1:
        with pil_limits(max_pixels):
            yield lambda fn, jobs: map(fn, jobs)
    else:
        with ProcessPoolExecutor(workers, initializer=set_pil_limits, initargs=(max_pixels,)) as pool:
            yield lambda fn, jobs: bounded_map(lambda job: pool.submit(fn, job), lambda f: f.result(), jobs,
                                               IN_FLIGHT_PER_WORKER * workers)


def _ray_run(workers: int, max_pixels: int, address: str | None, reserve_cpus: float) -> Callable:
    import ray

    from .ray_runtime import connect

    nodes = connect(address)
    if not workers:
        cpus = sum(float(node.get("CPU", 0)) for node in nodes)
        workers = max(1, int(cpus - reserve_cpus))
    task = ray.remote(num_cpus=1, max_retries=2)(_in_limits)
    # no task queued beyond `workers`: Ray would start a queued one on a reserved CPU
    return lambda fn, jobs: bounded_map(lambda job: task.remote(fn, job, max_pixels), ray.get, jobs, workers)
