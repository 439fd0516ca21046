"""The driver of `pipeline annotate`: for each requested annotator, an actor pool on Ray (one model per actor,
loaded once), every unfinished image shard as one job, a progress bar over images, and a summary."""
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import ray
from tqdm import tqdm

from annotators.base import build, is_device_failure
from annotators.weights import WeightsError

from .annotate import ShardJob, annotate_shard, plan
from .executor import actor_pool, connect
from shardio.layout import Layout, image_shards
from .rate import per_image
from .ray_runtime import PoolShape, pool_shape
from shardio.shards import image_fingerprint, keep_only, remove_temporaries


class AnnotatorWorker:
    """One annotator, set up once on this actor's device, annotating whole shards."""

    def __init__(self, name: str, section, weights_dir: str, torch_threads: int, cpu_threads: int):
        import cv2
        import torch

        from annotators.runtime import computed_on

        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(1)
        self.cpu_threads = cpu_threads
        device = torch.device("cuda" if ray.get_gpu_ids() else "cpu")
        self.annotator = build(name, section, Path(weights_dir))
        self.annotator.setup(str(device))
        # recorded with each shard, outside its fingerprint: a shard made on a CPU stays done on a GPU
        self.computed_on = computed_on(device, section.precision)

    def metadata(self) -> dict:
        return self.annotator.metadata()

    def run(self, job: ShardJob, batch_size: int, prefetch: int, max_pixels: int) -> dict:
        worker = {"node": ray.get_runtime_context().get_node_id(), "actor": ray.get_runtime_context().get_actor_id(),
                  **self.computed_on}
        try:
            return annotate_shard(self.annotator, job, batch_size, prefetch, max_pixels, worker, self.cpu_threads)
        except Exception as err:
            if is_device_failure(err):  # this process's GPU is unusable: the pool replaces it, retries the shard
                ray.actor.exit_actor()
            raise


@dataclass
class AnnotatorSummary:
    """What one annotator did in this run."""

    name: str
    shards: int = 0
    already_done: int = 0
    images: int = 0
    annotated: int = 0
    provided: int = 0
    failed: int = 0
    # in the shards earlier runs finished: their failures count as much as this run's
    earlier_annotated: int = 0
    earlier_failed: int = 0
    failed_shards: dict[str, str] = field(default_factory=dict)
    workers_replaced: int = 0
    startup_seconds: float = 0.0  # until the first worker had its model loaded
    seconds: float = 0.0

    def line(self) -> str:
        """One human-readable line."""
        text = (f"{self.name}: {self.images} images in {self.shards - self.already_done} shard(s) "
                f"({self.already_done} already done), {self.annotated} annotated, {self.provided} provided, "
                f"{self.failed} failed; {self.seconds:.1f} s, {per_image(self.images, self.seconds)}")
        if self.earlier_failed:
            text += f"; {self.earlier_failed} failed in the shards already done"
        if self.workers_replaced:
            text += f"; {self.workers_replaced} worker(s) replaced"
        for shard, error in self.failed_shards.items():
            text += f"\n  shard {shard} failed: {error}"
        return text


def run(stage, names: list[str], address: str | None = None, batch_size: int | None = None,
        workers: int | None = None, gpus_per_worker: float | None = None,
        progress: bool = True) -> list[AnnotatorSummary]:
    """Annotate the dataset's image shards with each of `names` on Ray; returns one summary per annotator."""
    runtime = stage.params.annotate.runtime
    for image_shard in image_shards(stage.layout):  # an unfinished or damaged one: one clear error before Ray
        image_fingerprint(image_shard)
    check_weights(stage, names)
    # Actors on an existing cluster have their own working directory: they get absolute paths only.
    layout = Layout(stage.layout.data_dir.resolve(), stage.dataset)
    summaries = {}
    for name in names:  # an annotator whose every shard is done is seen from the markers: no cluster, no model
        start, summary, section = time.perf_counter(), AnnotatorSummary(name), getattr(stage.params.annotate, name)
        metadata = build(name, section, layout.weights).expected_metadata()
        if metadata is not None and not _planned(layout, name, section, metadata, summary):
            summary.seconds = time.perf_counter() - start
            summaries[name] = summary
    if todo := [name for name in names if name not in summaries]:
        shape = pool_shape(connect(address), workers or runtime.workers, gpus_per_worker or runtime.gpus_per_worker,
                           runtime.reserve_cpus)
        summaries |= {name: _run_annotator(stage, layout, name, shape, batch_size, progress) for name in todo}
    return [summaries[name] for name in names]


def _planned(layout: Layout, name: str, section, metadata: dict, summary: AnnotatorSummary) -> list[ShardJob]:
    """The shards `name` still has to annotate (`annotate.plan`), counted in `summary` with what the finished ones
    hold; the annotator's folder is left with only the planned shards."""
    jobs, done = plan(layout, name, section, metadata)
    summary.shards, summary.already_done = len(jobs) + len(done), len(done)
    summary.earlier_annotated = sum(stats["annotated"] for stats in done.values())
    summary.earlier_failed = sum(stats["failed"] for stats in done.values())
    keep_only(layout.annotations(name), set(done) | {job.out.name for job in jobs})
    return jobs


def check_weights(stage, names: list[str]) -> None:
    """Raise WeightsError listing every weights file the annotators `names` need that is missing or of the wrong
    layout, each with what to do: one clear error before any worker starts, not a traceback from every worker."""
    problems = []
    for name in names:
        try:
            build(name, getattr(stage.params.annotate, name), stage.layout.weights.resolve()).check_weights()
        except WeightsError as err:
            problems += [f"  {name}: {line}" for line in str(err).splitlines()]
    if problems:
        raise WeightsError(f"{len(problems)} weights file(s) missing or unusable:\n" + "\n".join(problems) +
                           f"\n(`pipeline weights fetch --needed --dataset {stage.dataset}` fetches every registered "
                           "one the dataset needs)")


def _run_annotator(stage, layout: Layout, name: str, shape: PoolShape, batch_size: int | None,
                   progress: bool) -> AnnotatorSummary:
    section = getattr(stage.params.annotate, name)
    runtime = stage.params.annotate.runtime
    actor = ray.remote(AnnotatorWorker)
    run_id = uuid.uuid4().hex[:8]
    spawn = lambda: actor.options(  # noqa: E731
        num_cpus=shape.num_cpus, num_gpus=shape.num_gpus, max_restarts=0, scheduling_strategy="SPREAD",
        name=f"mmsynth-annotate-{name}-{run_id}-{uuid.uuid4().hex[:6]}",
    ).remote(name, section, str(layout.weights), shape.torch_threads, shape.cpu_threads)
    summary = AnnotatorSummary(name)
    start = time.perf_counter()
    with actor_pool(spawn, shape.workers) as pool:
        try:
            metadata = pool.call_first("metadata")
            summary.startup_seconds = time.perf_counter() - start
            jobs = _planned(layout, name, section, metadata, summary)
            submit = lambda worker, job: worker.run.remote(  # noqa: E731
                job, batch_size or section.batch_size, runtime.prefetch_batches, stage.params.ingest.max_pixels)
            with tqdm(total=sum(j.samples for j in jobs), unit="img", desc=f"annotate {name}", disable=not progress,
                      dynamic_ncols=True) as bar:
                for job, stats, error in pool.map(jobs, submit, runtime.shard_attempts):
                    bar.update(job.samples)
                    summary.images += job.samples
                    if error is not None:
                        summary.failed_shards[job.image_shard.name] = error
                        continue
                    summary.annotated += stats["annotated"]
                    summary.provided += stats["provided"]
                    summary.failed += stats["failed"]
            remove_temporaries(layout.annotations(name))
        finally:
            summary.workers_replaced = pool.replaced
    summary.seconds = time.perf_counter() - start
    return summary
