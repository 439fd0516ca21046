"""The per-shard job of `pipeline annotate`: one image shard in, one aligned annotation shard out.

Inside a worker the shard flows through three overlapping steps with bounded buffers: JPEG decoding and the
annotator's `prepare` (resizing, normalising, tokenizing) run image by image on a thread pool `prefetch` batches
ahead of the model, the annotator's `forward` (the model alone) runs in the calling thread, and its `finish` (NMS,
thresholding, the uint8 map) and the PNG/NPY encoding run on the pool `prefetch` batches behind it while the next
batch is in the model. OpenCV and torch release the GIL, so a GPU worker is not kept waiting on its CPU side, and
memory holds at most 2 x prefetch batches whatever the shard or dataset size. The pool has `threads` threads: on a
GPU worker its node's CPU share, on a CPU worker 2 (its cores run the model). An annotator whose params set
`reduced_decode` gets each JPEG decoded in libjpeg's DCT domain at 1/2, 1/4 or 1/8 scale, the smallest not below its
`input_size()`; its outputs still come at the stored image's size. (This "prefetching reader per actor" is chosen
over Ray Data streaming: output must keep the image shard's key order, one task per shard keeps resume and retry per
shard, and no separate read tasks exist that actors holding every CPU could starve, the ray-project/ray#44687 hang.)

A sample whose modality the dataset provides (its `json` lists it under `provided`) is skipped; an image that
fails to decode, to annotate or to encode is left out of the annotation shard and listed with its error in
the shard's stats, and the shard still completes. The output depends only on the image shard, the annotator's
params and its weights, never on the batch size or which worker ran it.
"""
import io
import itertools
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

from annotators.base import Annotator, InputSize, Item, encode, is_device_failure

from shardio.layout import Layout, image_shards
from shardio.shards import (class_counts, fingerprint, image_fingerprint, is_done, read_shard, read_stats,
                            shard_writer, write_stats)

# Bump when what annotate writes changes for the same annotator outputs (its shards or their markers): every shard
# is redone. 3: every marker records `seg_classes`.
CODE_VERSION = 3
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
        if is_done(out, fp):
            done[out.name] = read_stats(out)
        else:
            todo.append(ShardJob(image_shard, image, out, fp, read_stats(image_shard)["count"]))
    return todo, done


# cv2's reduced modes: JPEGs are scaled in libjpeg's DCT domain, as PIL's `draft` does (the same bytes, measured).
# Decoded straight to RGB: the same bytes as BGR reversed, without a copy of the image (a third of a full decode's
# CPU time at 1536x1024).
_REDUCED_FLAGS = {d: (flag & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB for d, flag in
                  {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                   8: cv2.IMREAD_REDUCED_COLOR_8}.items()}


def decode_item(jpg: bytes, max_pixels: int, size: InputSize | None = None, captions=()) -> Item:
    """The Item of a stored JPEG: uint8 RGB [H, W, 3], refusing more than `max_pixels` before decoding. With
    `size`, a JPEG is decoded at the smallest libjpeg scale (1/2, 1/4, 1/8) not below it (other formats at full
    size), and the item records the stored size its outputs come at."""
    header = Image.open(io.BytesIO(jpg))
    width, height = header.size
    if width * height > max_pixels:
        raise ValueError(f"{width}x{height} exceeds max_pixels={max_pixels}")
    reduction = size.reduction(width, height) if size is not None and header.format == "JPEG" else 1
    rgb = cv2.imdecode(np.frombuffer(jpg, np.uint8), _REDUCED_FLAGS[reduction])
    if rgb is None:
        raise ValueError("undecodable image data")
    return Item(rgb, list(captions), (height, width) if reduction > 1 else None)


def decode_image(jpg: bytes, max_pixels: int) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a stored JPEG at full size; refuses more than `max_pixels` before decoding."""
    return decode_item(jpg, max_pixels).image


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


@dataclass(frozen=True)
class _Failed:
    """An image's step failed: the error, recorded in the shard's stats."""

    error: str


def _prepare(annotator: Annotator, sample: dict, max_pixels: int, size: InputSize | None):
    """The annotator's prepared input of one stored sample, or the error that stopped it."""
    try:
        captions = [c for c in sample.get("txt", b"").decode().splitlines() if c.strip()]
        return annotator.prepare(decode_item(sample["jpg"], max_pixels, size, captions))
    except Exception as e:  # one bad image is recorded, never fatal
        return _Failed(_error(e))


def _forward_batch(annotator: Annotator, batch: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """Raw results per key; when the batch call fails, each input is retried alone so only the bad one fails."""
    inputs = [(key, x) for key, x in batch if not isinstance(x, _Failed)]
    try:
        raws = annotator.forward([x for _, x in inputs]) if inputs else []
        if len(raws) != len(inputs):
            raise RuntimeError(f"annotator returned {len(raws)} outputs for {len(inputs)} images")
        by_key = {key: raw for (key, _), raw in zip(inputs, raws)}
    except Exception:
        by_key = {}
        for key, x in inputs:
            try:
                by_key[key] = annotator.forward([x])[0]
            except Exception as e:
                if is_device_failure(e):  # not this image's failure: the shard must not be marked done
                    raise
                by_key[key] = _Failed(_error(e))
    return [(key, x if isinstance(x, _Failed) else by_key[key]) for key, x in batch]


def _finish(annotator: Annotator, raw) -> tuple[dict[str, bytes], list | None] | _Failed:
    """The shard members of one raw result and the class counts of its seg.png output (None without one), or
    the error that stopped it."""
    if isinstance(raw, _Failed):
        return raw
    try:
        outputs = annotator.finish(raw)
        members = {ext: encode(ext, array) for ext, array in outputs.items()}
        return members, class_counts(outputs["seg.png"]) if "seg.png" in outputs else None
    except Exception as e:
        return _Failed(_error(e))


def _on_pool(pool: ThreadPoolExecutor, fn: Callable, pairs: Iterable[tuple[str, object]], depth: int) -> Iterator:
    """(key, fn(value)) for (key, value) pairs, fn computed on `pool` up to `depth` pairs ahead."""
    keyed = ((key, pool.submit(fn, value)) for key, value in pairs)
    window = deque()
    for pair in keyed:
        window.append(pair)
        if len(window) > depth:
            key, future = window.popleft()
            yield key, future.result()
    for key, future in window:
        yield key, future.result()


def _wanted(samples: Iterable[tuple[str, dict]], name: str, skipped: list[str]) -> Iterator[tuple[str, dict]]:
    """The samples whose modality `name` is not provided by the dataset; the others' keys go to `skipped`."""
    for key, sample in samples:
        if name in json.loads(sample["json"]).get("provided", []):
            skipped.append(key)
        else:
            yield key, sample


def _batched(pairs: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive elements (the last one shorter)."""
    iterator = iter(pairs)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def annotate_shard(annotator: Annotator, job: ShardJob, batch_size: int, prefetch: int, max_pixels: int,
                   worker: dict | None = None, threads: int = 2) -> dict:
    """Write the annotation shard of `job`, then its stats marker (with `worker`: where it ran); returns the stats.
    Decoding, `prepare`, `finish` and encoding run on `threads` threads, `forward` in the calling thread."""
    start = time.perf_counter()
    provided, failures, annotated, seg_classes = [], [], 0, {}
    depth, size = prefetch * batch_size, annotator.decode_size()
    with ThreadPoolExecutor(threads, thread_name_prefix="annotate-cpu") as pool, shard_writer(job.out) as writer:
        samples = _wanted(read_shard(job.image_shard), annotator.name, provided)
        prepared = _on_pool(pool, lambda sample: _prepare(annotator, sample, max_pixels, size), samples, depth)
        raws = (pair for batch in _batched(prepared, batch_size) for pair in _forward_batch(annotator, batch))
        for key, finished in _on_pool(pool, lambda raw: _finish(annotator, raw), raws, depth):
            if isinstance(finished, _Failed):
                failures.append({"key": key, "error": finished.error})
            else:
                members, classes = finished
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
