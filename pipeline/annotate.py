"""The per-shard job of `pipeline annotate`: one image shard in, one aligned annotation shard out.

Inside a worker the shard flows through three overlapping steps with bounded buffers: JPEG decoding runs on a
small thread pool `prefetch` batches ahead of the model, the model runs in the calling thread, and PNG/NPY
encoding runs on the pool `prefetch` batches behind it while the next batch is in the model. OpenCV and torch
release the GIL, so a GPU worker is not kept waiting on decode and memory holds at most 2 x prefetch batches
whatever the shard or dataset size. (This "prefetching reader per actor" is chosen over Ray Data streaming:
output must keep the image shard's key order, one task per shard keeps resume and retry per shard, and no
separate read tasks exist that actors holding every CPU could starve, the ray-project/ray#44687 hang.)

A sample whose modality the dataset provides (its `json` lists it under `provided`) is skipped; an image that
fails to decode, to annotate or to encode is left out of the annotation shard and listed with its error in
the shard's stats, and the shard still completes. The output depends only on the image shard, the annotator's
params and its weights, never on the batch size or which worker ran it.
"""
import io
import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from annotators.base import Annotator, Item, encode, is_device_failure

from shardio.layout import SHARD_RE, Layout
from shardio.shards import class_counts, fingerprint, is_done, read_shard, read_stats, shard_writer, write_stats

CODE_VERSION = 2  # bump when what annotate writes changes for the same annotator outputs: every shard is redone
# Params that change how fast an annotator runs, not what it writes; left out of the fingerprint.
SPEED_ONLY_PARAMS = {"batch_size"}


@dataclass(frozen=True)
class ShardJob:
    """One unit of work: annotate `image_shard` (whose marker carries `image_fingerprint`) into `out`, marking it
    done with `fingerprint`."""

    image_shard: Path
    image_fingerprint: str
    out: Path
    fingerprint: str
    samples: int


def image_shards(layout: Layout) -> list[Path]:
    """The dataset's image shards in name order; none at all is an error naming the folder."""
    shards = sorted(p for p in layout.images.glob("*.tar") if SHARD_RE.match(p.name))
    if not shards:
        raise FileNotFoundError(f"{layout.images}: no image shards ({{split}}-{{index:06d}}.tar); "
                                "run `pipeline ingest`")
    return shards


def sample_count(image_shard: Path) -> int:
    """Samples in an image shard: the `count` ingest recorded in its stats, else counted by reading the shard."""
    recorded = (read_stats(image_shard) or {}).get("count")
    return recorded if isinstance(recorded, int) else sum(1 for _ in read_shard(image_shard))


def image_fingerprint(image_shard: Path) -> str:
    """The fingerprint ingest recorded in the image shard's marker; an unmarked shard is an error (unfinished)."""
    recorded = (read_stats(image_shard) or {}).get("fingerprint")
    if not isinstance(recorded, str):
        raise FileNotFoundError(f"{image_shard}: image shard has no finished marker ({image_shard.stem}.stats.json); "
                                "run `pipeline ingest`")
    return recorded


def shard_fingerprint(name: str, section, metadata: dict, image: str) -> str:
    """What makes an annotation shard: the annotator, its output-relevant params, its weights, the input shard
    (`image`: its fingerprint)."""
    params = section.model_dump(exclude=SPEED_ONLY_PARAMS)
    return fingerprint("annotate", CODE_VERSION, name, params, metadata, image)


def plan(layout: Layout, name: str, section, metadata: dict) -> tuple[list[ShardJob], dict[str, dict]]:
    """The shards still to annotate for `name`, and the stats of those done under the same fingerprint (by shard
    name)."""
    todo, done = [], {}
    for image_shard in image_shards(layout):
        out = layout.annotations(name) / image_shard.name
        image = image_fingerprint(image_shard)
        fp = shard_fingerprint(name, section, metadata, image)
        stats = read_stats(out) if is_done(out, fp) else None
        # a segmentation shard from before annotate recorded its class counts is redone: pack needs them
        if stats is not None and (name != "seg" or "seg_classes" in stats):
            done[out.name] = stats
        else:
            todo.append(ShardJob(image_shard, image, out, fp, sample_count(image_shard)))
    return todo, done


def decode_image(jpg: bytes, max_pixels: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a stored JPEG; refuses more than `max_pixels` before decoding."""
    width, height = Image.open(io.BytesIO(jpg)).size
    if width * height > max_pixels:
        raise ValueError(f"{width}x{height} exceeds max_pixels={max_pixels}")
    bgr = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("undecodable image data")
    return np.ascontiguousarray(bgr[..., ::-1])


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def _decode_batch(batch: list[tuple[str, dict]], max_pixels: int) -> list[tuple[str, Item | str]]:
    decoded = []
    for key, sample in batch:
        try:
            captions = [c for c in sample.get("txt", b"").decode().splitlines() if c.strip()]
            decoded.append((key, Item(decode_image(sample["jpg"], max_pixels), captions)))
        except Exception as e:  # one bad image is recorded, never fatal
            decoded.append((key, _error(e)))
    return decoded


def _annotate_batch(annotator: Annotator, batch: list[tuple[str, Item | str]]) -> list[tuple[str, dict | str]]:
    """Outputs per key; when the batch call fails, each item is retried alone so only the bad one fails."""
    items = [(key, item) for key, item in batch if isinstance(item, Item)]
    try:
        outputs = annotator([item for _, item in items]) if items else []
        if len(outputs) != len(items):
            raise RuntimeError(f"annotator returned {len(outputs)} outputs for {len(items)} images")
        by_key = {key: out for (key, _), out in zip(items, outputs)}
    except Exception:
        by_key = {}
        for key, item in items:
            try:
                by_key[key] = annotator([item])[0]
            except Exception as e:
                if is_device_failure(e):  # not this image's failure: the shard must not be marked done
                    raise
                by_key[key] = _error(e)
    return [(key, by_key[key] if isinstance(item, Item) else item) for key, item in batch]


def _encode_batch(batch: list[tuple[str, dict | str]]) -> list[tuple[str, dict | str, list | None]]:
    """(key, members or error, class counts of its seg.png output if it has one) per item."""
    encoded = []
    for key, outputs in batch:
        try:
            members = outputs if isinstance(outputs, str) else {ext: encode(ext, a) for ext, a in outputs.items()}
            classes = class_counts(outputs["seg.png"]) if isinstance(outputs, dict) and "seg.png" in outputs else None
            encoded.append((key, members, classes))
        except Exception as e:
            encoded.append((key, _error(e), None))
    return encoded


def _ahead(pool: ThreadPoolExecutor, fn: Callable, iterable: Iterable, depth: int) -> Iterator:
    """fn over iterable, in order, computed on `pool` up to `depth` elements ahead of the consumer."""
    window = deque()
    for element in iterable:
        window.append(pool.submit(fn, element))
        if len(window) > depth:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()


def _batches(samples: Iterable[tuple[str, dict]], size: int, name: str, skipped: list[str]) -> Iterator[list]:
    batch = []
    for key, sample in samples:
        if name in json.loads(sample["json"]).get("provided", []):
            skipped.append(key)
            continue
        batch.append((key, sample))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def annotate_shard(annotator: Annotator, job: ShardJob, batch_size: int, prefetch: int, max_pixels: int,
                   worker: dict | None = None) -> dict:
    """Write the annotation shard of `job`, then its stats marker (with `worker`: where it ran); returns the stats."""
    start = time.perf_counter()
    provided, failures, annotated, seg_classes = [], [], 0, {}
    with ThreadPoolExecutor(2, thread_name_prefix="annotate-io") as pool, shard_writer(job.out) as writer:
        batches = _batches(read_shard(job.image_shard), batch_size, annotator.name, provided)
        decoded = _ahead(pool, lambda b: _decode_batch(b, max_pixels), batches, prefetch)
        annotated_batches = (_annotate_batch(annotator, batch) for batch in decoded)
        for batch in _ahead(pool, _encode_batch, annotated_batches, prefetch):
            for key, members, classes in batch:
                if isinstance(members, str):
                    failures.append({"key": key, "error": members})
                else:
                    writer.write({"__key__": key, **members})
                    annotated += 1
                    if classes is not None:
                        seg_classes[key] = classes
    stats = {"fingerprint": job.fingerprint, "annotator": annotator.name, "metadata": annotator.metadata(),
             "image_shard": job.image_shard.name, "image_fingerprint": job.image_fingerprint,
             "annotated": annotated, "provided": len(provided), "failed": len(failures), "failures": failures,
             "seconds": round(time.perf_counter() - start, 3), "worker": worker or {},
             "seg_classes": seg_classes}  # pixels per class of each seg.png, for pack's card (it decodes none)
    write_stats(job.out, stats)
    return stats
