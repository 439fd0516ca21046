"""`pipeline pack`: join each image shard with its aligned annotation shards into one training shard.

Pack is a byte copier: it lists every input shard's members from their tar headers and copies their byte ranges
into the training shard under deterministic headers (`shardio.tarcopy`); no image, label map or array is
decoded. Only the `json` member is new. The card's class counts come from the `seg_classes` that ingest (provided
segmentations) and annotate (pseudo labels) recorded in their shard stats; pack writes those of the seg.png each
training shard holds, by key, beside it (`<shard>.classes.json`, for `pipeline browse`). Provided modalities
(segmentation, sketch, captions) come from the image shard; the rest from the annotation shards, which hold the
image shard's keys in the same order (a key may be absent: provided by the dataset, or failed in the annotator).
A sample missing a modality is kept without it and counted.

One job per image shard (`executor.shard_map`), run on local threads, or as Ray tasks spread over a cluster when an
address is given (`--ray-address` / RAY_ADDRESS); both write the same bytes and the same per-shard markers.
"""
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from tqdm import tqdm

from shardio.layout import Layout, classes_path, image_shards
from shardio.modalities import ANNOTATOR_MEMBERS, MEMBER_OF, PROVIDED_MEMBERS
from shardio.shards import (atomic_path, checked_stats, fingerprint, image_fingerprint, is_done, keep_only, read_stats,
                            remove_temporaries, write_stats)
from shardio.space import reporting_full_disk
from shardio.tarcopy import Member, ShardError, TarCopier, list_members, mapped, samples as member_samples

from .executor import cluster_address, shard_map

CODE_VERSION = 3  # bump when the training-shard layout changes: every training shard is then redone


def annotation_stats(layout: Layout, annotator: str, image_shard: Path, image: str) -> dict:
    """The stats of the finished annotation shard made from `image_shard` as it is now (`image`: its fingerprint);
    a missing, unfinished, damaged (not the size its marker recorded), stale or (for seg) class-count-less one is an
    error saying what to run."""
    path = layout.annotations(annotator) / image_shard.name
    command = f"pipeline annotate --only {annotator} --dataset {layout.dataset}"
    stats = checked_stats(path, command)
    rerun = f"run `{command}`"
    if stats.get("image_fingerprint") != image:
        raise ValueError(f"{path}: annotation shard made from another version of image shard {image_shard} "
                         f"(it was ingested again since); {rerun}")
    if "seg.png" in ANNOTATOR_MEMBERS[annotator] and "seg_classes" not in stats:
        raise ValueError(f"{path}: annotation shard made before annotate recorded the class counts of its label "
                         f"maps (no `seg_classes` in its stats), which pack needs for the card; {rerun}")
    return stats


class _AlignedMembers:
    """Walks an annotation shard's samples alongside its image shard: its keys must be a subsequence of the
    image keys."""

    def __init__(self, path: Path, data: memoryview):
        self.path = path
        self._samples = member_samples(list_members(path, data))
        self._next = next(self._samples, None)

    def take(self, key: str) -> dict[str, Member]:
        """The annotation members of `key`, or {} when this shard has none for it."""
        if self._next is None or self._next[0] != key:
            return {}
        members = self._next[1]
        self._next = next(self._samples, None)
        return members

    def check_consumed(self) -> None:
        if self._next is not None:
            raise ShardError(f"{self.path}: key {self._next[0]!r} is not in the image shard, or out of its order")


def pack_shard(image_shard: Path, annotations: dict[str, tuple[Path, dict]], out: Path, label_map: str,
               text: str) -> dict:
    """Write the training shard `out` from an image shard and {annotator: (annotation shard, its stats)};
    `text` is the dataset profile's pseudo-text (`captions` or `image`), recorded in every sample."""
    metadata = {name: stats.get("metadata", {}) for name, (_, stats) in annotations.items()}
    computed = {name: _computed_on(stats) for name, (_, stats) in annotations.items()}
    used_as = {name: {**metadata[name], "computed_on": computed[name]} if computed[name] else metadata[name]
               for name in annotations}
    classes = {image_shard: (read_stats(image_shard) or {}).get("seg_classes")}
    classes.update({path: stats.get("seg_classes") for path, stats in annotations.values()})
    counts = {name: 0 for name in MEMBER_OF}  # coverage: the samples holding each modality's member
    pixels, images, seg_classes = [0] * 256, [0] * 256, {}
    n, splits = 0, {}
    with ExitStack() as stack:
        sources = (image_shard, *(path for path, _ in annotations.values()))
        data = {path: stack.enter_context(mapped(path)) for path in sources}
        readers = {name: _AlignedMembers(path, data[path]) for name, (path, _) in annotations.items()}
        tmp = stack.enter_context(atomic_path(out))
        writer = TarCopier(tmp)
        try:
            for key, image in member_samples(list_members(image_shard, data[image_shard])):
                if "json" not in image or "jpg" not in image:
                    raise ShardError(f"{image_shard}: sample {key!r} has no jpg or json member")
                info = json.loads(bytes(_bytes_of(data[image_shard], image["json"])))
                sample = {"jpg": (image_shard, image["jpg"])}
                sample.update({ext: (image_shard, image[ext]) for ext in PROVIDED_MEMBERS if ext in image})
                used = {}
                for name, reader in readers.items():
                    fresh = {ext: (reader.path, member) for ext, member in reader.take(key).items()
                             if ext in ANNOTATOR_MEMBERS[name] and ext not in sample}
                    if fresh:
                        used[name] = used_as[name]
                    sample.update(fresh)
                record = _sample_json(key, info, label_map, text, used)
                for ext in sorted([*sample, "json"]):  # webdataset's TarWriter order: extensions sorted
                    if ext == "json":
                        writer.add(f"{key}.json", record)
                    else:
                        source, member = sample[ext]
                        writer.add(f"{key}.{ext}", _bytes_of(data[source], member))
                n += 1
                splits[info["split"]] = splits.get(info["split"], 0) + 1
                for name, ext in MEMBER_OF.items():
                    counts[name] += ext in sample
                if "seg.png" in sample:
                    seg_classes[key] = _seg_classes(classes, sample["seg.png"][0], key, annotations)
                    for class_id, count in seg_classes[key]:
                        pixels[class_id] += count
                        images[class_id] += 1
        except BaseException:
            writer.abort()
            raise
        writer.close()
        for reader in readers.values():
            reader.check_consumed()
    return {"samples": n, "splits": splits, "present": counts, "annotators": metadata, "computed_on": computed,
            "class_pixels": pixels, "class_images": images, "seg_classes": seg_classes}


def _bytes_of(data: memoryview, member: Member) -> memoryview:
    return data[member.offset:member.offset + member.size]


def _seg_classes(classes: dict[Path, dict | None], source: Path, key: str, annotations: dict) -> list:
    """The class counts the stats of `source` recorded for `key`'s seg.png; none is an error saying what to
    rerun (a shard written before its stage recorded them)."""
    counts = (classes[source] or {}).get(key)
    if counts is None:
        rerun = next((f"pipeline annotate --only {name}" for name, (path, _) in annotations.items() if path == source),
                     "pipeline ingest")
        raise ValueError(f"{source}: its stats hold no class counts (`seg_classes`) for the seg.png of {key}: it was "
                         f"written before they were recorded, and pack decodes no label map; run `{rerun}` again "
                         "for this dataset")
    return counts


def _computed_on(stats: dict) -> dict:
    """The device, GPU model and precision annotate recorded for a shard ({} for one made before it did)."""
    worker = stats.get("worker", {})
    return {key: worker[key] for key in ("device", "gpu", "precision") if key in worker}


def _sample_json(key: str, info: dict, label_map: str, text: str, annotators: dict[str, dict]) -> bytes:
    record = {"key": key, "source": info.get("source"), "size": [info["width"], info["height"]],
              "split": info["split"], "label_map": label_map, "text": text, "provided": info.get("provided", []),
              "annotators": annotators}
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def plan(layout: Layout, params, profile) -> Iterator[tuple[Path, dict[str, tuple[Path, dict]], Path, str]]:
    """Per image shard: (image shard, its annotation shards with stats, training shard, fingerprint)."""
    names = [name for name in params.pack.modalities if name in profile.annotate]
    for image_shard in image_shards(layout):
        image = image_fingerprint(image_shard)
        annotations = {name: (layout.annotations(name) / image_shard.name,
                              annotation_stats(layout, name, image_shard, image)) for name in names}
        fp = fingerprint("pack", CODE_VERSION, params.pack.model_dump(exclude={"workers"}), profile.label_map,
                         profile.text, image, {name: stats["fingerprint"] for name, (_, stats) in annotations.items()})
        yield image_shard, annotations, layout.shards / image_shard.name, fp


def write_classes(shard: Path, fp: str, seg_classes: dict[str, list]) -> None:
    """Write the class counts of the training shard's seg.png by key, with the fingerprint of the shard they
    belong to. Not in its stats: the card, the trainer's run identity and the browser read every shard's stats.
    Not synced, like the marker: a file a power loss leaves empty or cut reads as none (`read_classes`), which
    costs the browser a decode of that shard's label maps, not a wrong count."""
    with atomic_path(classes_path(shard), durable=False) as tmp:
        tmp.write_text(json.dumps({"fingerprint": fp, "seg_classes": seg_classes}, sort_keys=True,
                                  separators=(",", ":")) + "\n")


def read_classes(shard: Path, fp: str | None) -> dict[str, list]:
    """The class counts `write_classes` wrote for the shard packed under fingerprint `fp` (its stats'), by key;
    {} when there are none (a shard packed before pack wrote them, or a file a power loss spoilt) or they belong to
    another packing."""
    try:
        recorded = json.loads(classes_path(shard).read_bytes())
    except (FileNotFoundError, ValueError):  # none, or empty or cut by a power loss
        return {}
    return recorded["seg_classes"] if recorded.get("fingerprint") == fp else {}


def _pack_job(job: tuple[Path, dict, Path, str, str, str]) -> int:
    """Pack one training shard, its class counts and its marker; returns its samples. `job`: (image shard, its
    annotation shards with stats, training shard, fingerprint, label map, text)."""
    image_shard, annotations, out, fp, label_map, text = job
    try:
        stats = pack_shard(image_shard, annotations, out, label_map, text)
    except ShardError as e:
        raise ShardError(f"{e}; {_repair(str(e), image_shard, annotations)}") from None
    write_classes(out, fp, stats.pop("seg_classes"))
    write_stats(out, {"fingerprint": fp, "image_shard": image_shard.name, **stats})
    return stats["samples"]


def _repair(error: str, image_shard: Path, annotations: dict) -> str:
    """How to repair the input shard a ShardError (`error`, which starts with its path) names: it is the size its
    marker recorded (plan checked that), so its stage counts it done until it is deleted."""
    dataset = image_shard.parent.parent.name  # <data-dir>/<dataset>/images/<shard> (shardio.layout)
    commands = {image_shard: "pipeline ingest", **{path: f"pipeline annotate --only {name}"
                                                   for name, (path, _) in annotations.items()}}
    path, command = next(((path, c) for path, c in commands.items() if error.startswith(f"{path}:")),
                         (image_shard, "pipeline ingest"))
    return f"it is damaged: delete {path} and run `{command} --dataset {dataset}`, which writes it again"


def run(layout: Layout, params, profile, progress: bool = True, address: str | None = None) -> dict:
    """Pack every image shard not already packed under the same fingerprint (with its class counts beside it)
    and delete training shards no image shard makes any more; returns a summary. The shards are packed as Ray tasks
    on the cluster at `address` (else RAY_ADDRESS) when one is given, else on `pack.workers` local threads."""
    address = cluster_address(address)
    layout = Layout(layout.data_dir.resolve(), layout.dataset)  # Ray workers have their own working directory
    jobs = list(plan(layout, params, profile))
    keep_only(layout.shards, {out.name for _, _, out, _ in jobs})
    todo = [(image, annotations, out, fp, profile.label_map, profile.text) for image, annotations, out, fp in jobs
            if not is_done(out, fp, requires=[classes_path(out)])]
    with (reporting_full_disk(layout.shards, [out for _, _, out, _ in jobs],
                              f"pipeline pack --dataset {layout.dataset}"),
          shard_map("ray" if address else "threads", 0 if address else params.pack.workers, address=address,
                    reserve_cpus=params.annotate.runtime.reserve_cpus) as run_all):
        samples = sum(tqdm(run_all(_pack_job, todo), total=len(todo), desc="pack", unit="shard",
                           disable=not progress))
    remove_temporaries(layout.shards)  # half-written by a task lost with its node, which Ray ran again
    return {"shards": len(jobs), "packed": len(todo), "already_done": len(jobs) - len(todo), "samples_packed": samples}

