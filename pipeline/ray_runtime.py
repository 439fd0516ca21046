"""Ray actors for `pipeline annotate` (`executor.actor_pool`): size an actor pool to the cluster, and run shard jobs
on the pool, replacing an actor that dies and retrying its shard.

Sizing keeps `reserve_cpus` out of every actor's claim: Ray Data hangs when actors hold every CPU
(ray-project/ray#44687), and more generally anything else the job or the cluster needs must still be schedulable. On GPUs
each actor claims `gpus_per_worker` GPUs (at most one: an annotator runs on one device) and a share of the
unreserved CPUs that fits on every node, and runs its decoding, NMS, CLIP preprocessing and PNG encoding on that
many threads; on CPUs the unreserved CPUs are split evenly, each actor's cores run its model, and 2 threads do its
CPU side (the reserve keeps CPU free for Ray's own reads). Actors get work only once they have started: one the
cluster cannot place never holds a shard.
"""
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import ray
from ray.exceptions import RayActorError, RayTaskError

START_TIMEOUT = 600.0  # seconds to wait for a first actor to be placed and set up before giving up
# The line of a Python traceback that states the error: `Name: message` (module-qualified or not), unindented.
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<error>[A-Za-z_]\w*: .*)$")


def start_error(err: RayActorError) -> str:
    """What made an actor fail to start, in one line: the first line of its own error (`Type: message`), not
    Ray's preamble or the traceback, nor the error's later lines (torch's advice, say)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    found = next((m["error"] for line in lines[1:] if (m := _ERROR_LINE.match(line))), None)
    return found or (lines[0] if lines else type(err).__name__)


def _not_started(workers: int) -> RuntimeError:
    return RuntimeError(f"none of the {workers} workers started within {START_TIMEOUT:.0f} s: the cluster cannot "
                        "place them; lower --workers or --gpus-per-worker, or free GPUs and CPUs")


@dataclass(frozen=True)
class PoolShape:
    """How many actors, and what each claims from the scheduler."""

    workers: int
    num_cpus: float
    num_gpus: float
    torch_threads: int
    cpu_threads: int = 2  # the actor's pool for decoding, pre- and post-processing and encoding


def _usable_cpus(cpus: float, reserve_cpus: float) -> float:
    return max(cpus - reserve_cpus, cpus / 2)


def pool_shape(nodes: list[dict] | dict, workers: int, gpus_per_worker: float, reserve_cpus: float) -> PoolShape:
    """The actor pool for the resources of each node (one dict: one node): `workers` actors (0 = as many as the
    GPUs or unreserved CPUs allow), each with `gpus_per_worker` GPUs when there are GPUs and a CPU share that fits
    on every node (on GPUs: the unreserved CPUs of the node with the fewest per GPU worker)."""
    if gpus_per_worker > 1:
        raise ValueError(f"annotate.runtime.gpus_per_worker is {gpus_per_worker}: an annotator runs on one GPU, so "
                         "use 1 (one worker per GPU) or a fraction (workers sharing a GPU)")
    nodes = [nodes] if isinstance(nodes, dict) else nodes
    per_node = [(math.floor(float(n.get("GPU", 0)) / gpus_per_worker), _usable_cpus(float(n.get("CPU", 1)),
                                                                                    reserve_cpus)) for n in nodes]
    per_node = [(count, cpus) for count, cpus in per_node if count > 0]
    if per_node:
        count = workers or sum(c for c, _ in per_node)
        share = min(cpus / c for c, cpus in per_node)
        # the model thread waits on the GPU, so the pool gets the whole share
        return PoolShape(count, round(share, 4), gpus_per_worker, max(1, math.floor(share)),
                         max(2, math.floor(share)))
    usable = _usable_cpus(sum(float(n.get("CPU", 1)) for n in nodes), reserve_cpus)
    count = workers or max(1, math.floor(usable))
    share = usable / count
    return PoolShape(count, round(share, 4), 0.0, max(1, math.floor(share)))


class ActorPool:
    """A fixed number of identical actors made by `spawn()`; a dead actor is killed and replaced."""

    def __init__(self, spawn: Callable[[], "ray.actor.ActorHandle"], size: int):
        self._spawn = spawn
        self.actors = [spawn() for _ in range(size)]
        self.replaced = 0

    def call_first(self, method: str, attempts: int = 3):
        """Call `method` on the first actor to start and return its result (an actor that dies is replaced, up to
        `attempts` tries). An actor whose own setup raises is an error saying why; none placed and set up within
        `START_TIMEOUT` seconds is the error `map` gives."""
        for attempt in range(1, attempts + 1):
            starting = {actor.__ray_ready__.remote(): index for index, actor in enumerate(self.actors)}
            ready, _ = ray.wait(list(starting), num_returns=1, timeout=START_TIMEOUT)
            if not ready:
                raise _not_started(len(self.actors))
            index = starting[ready[0]]
            try:
                return ray.get(getattr(self.actors[index], method).remote())
            except RayActorError as e:
                if getattr(e, "actor_init_failed", False) or attempt == attempts:
                    raise RuntimeError(f"a worker could not start: {start_error(e)}") from None
                self._replace(index)

    def _replace(self, index: int) -> None:
        ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._spawn()
        self.replaced += 1

    def map(self, jobs: list, submit: Callable, attempts: int) -> Iterator[tuple[object, object, str | None]]:
        """Run `submit(actor, job)` for every job, one job per actor at a time; yield (job, result, error) as
        they finish. An actor takes work only once it has started: one the cluster cannot place (too few free
        GPUs, a lost node) never holds a job while the others finish the queue; none started within
        `START_TIMEOUT` seconds is an error. A job whose actor died goes back to the queue for the next free
        actor, up to `attempts` tries in all."""
        pending, tries, idle = deque(jobs), Counter(), deque()
        running = {}
        starting = {actor.__ray_ready__.remote(): index for index, actor in enumerate(self.actors)}
        while pending or running:
            while idle and pending:
                index, job = idle.popleft(), pending.popleft()
                running[submit(self.actors[index], job)] = (index, job)
            if not running and not starting:
                raise RuntimeError("no worker left to run the remaining shards")
            ready, _ = ray.wait(list(running) + list(starting), num_returns=1,
                                timeout=None if running or idle else START_TIMEOUT)
            if not ready:
                raise _not_started(len(self.actors))
            [ref] = ready
            if ref in starting:
                self._started(starting, ref, idle)
                continue
            index, job = running.pop(ref)
            result, error = None, None
            try:
                result = ray.get(ref)
                idle.append(index)
            except RayActorError as e:
                self._replace(index)
                starting[self.actors[index].__ray_ready__.remote()] = index
                tries[job] += 1
                if tries[job] < attempts:
                    pending.appendleft(job)
                    continue
                error = f"its worker died {tries[job]} times; last: {str(e).splitlines()[0]}"
            except RayTaskError as e:
                idle.append(index)
                cause = e.cause if e.cause is not None else e
                error = f"{type(cause).__name__}: {cause}"
            yield job, result, error

    def _started(self, starting: dict, ref, idle: deque) -> None:
        index = starting.pop(ref)
        try:
            ray.get(ref)
            idle.append(index)
        except RayActorError as e:
            if getattr(e, "actor_init_failed", False):
                raise RuntimeError(f"a replacement worker could not start: {start_error(e)}") from None
            self._replace(index)
            starting[self.actors[index].__ray_ready__.remote()] = index

    def shutdown(self) -> None:
        """Kill every actor of the pool."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
