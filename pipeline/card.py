"""The dataset card: what the training shards hold, in `card.json` (for programs) and `card.md` (for people).

Built from the training shards' stats files (counts, modality coverage, class pixel/image counts, annotator
metadata) and `rejects.parquet` (reasons), so it never re-reads an image.
"""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from annotators.labelmaps import IGNORE, load_label_map

from shardio.layout import Layout, image_shards
from shardio.shards import atomic_path, read_stats

MAX_CARD_CLASSES = 30  # classes listed in card.md; card.json lists them all


def reject_reasons(rejects: Path) -> dict[str, int]:
    """Count of rejected images per reason ({} when ingest rejected nothing or wrote no file)."""
    if not rejects.exists():
        return {}
    names = pq.read_schema(rejects).names
    if "reason" not in names:
        raise ValueError(f"{rejects}: no `reason` column (columns: {', '.join(names)})")
    counts = pc.value_counts(pq.read_table(rejects, columns=["reason"])["reason"])  # one column: memory of reasons
    return dict(sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))


def build_card(layout: Layout, label_map: str) -> dict:
    """The card of a packed dataset: its training shards, one per image shard now on disk (never a shard an
    earlier plan left); an unpacked one is an error saying to run `pipeline pack`. One shard's stats are read at a
    time."""
    missing = FileNotFoundError(f"{layout.shards}: training shards missing or unfinished; run `pipeline pack`")
    splits, present, annotators, computed_on, shards = Counter(), Counter(), {}, {}, 0
    pixels, images = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for image_shard in image_shards(layout):
        s = read_stats(layout.shards / image_shard.name)
        if s is None:
            raise missing
        shards += 1
        splits.update(s["splits"])
        present.update(s["present"])
        pixels += np.asarray(s["class_pixels"], np.int64)
        images += np.asarray(s["class_images"], np.int64)
        annotators.update({name: meta for name, meta in s["annotators"].items() if meta})
        for name, record in s.get("computed_on", {}).items():
            if record:
                where = " ".join(record[key] for key in ("device", "gpu", "precision") if key in record)
                computed_on.setdefault(name, Counter())[where] += 1
    if not shards:
        raise missing
    total = sum(splits.values())
    labels = load_label_map(label_map)
    labelled = max(1, int(pixels.sum() - pixels[IGNORE]))
    classes = [{"id": int(i), "name": labels.names[i] if i < labels.num_classes else f"unknown-{i}",
                "pixels": int(pixels[i]), "pixel_share": float(pixels[i] / labelled),
                "images": int(images[i])}
               for i in np.flatnonzero(pixels) if i != IGNORE]
    return {
        "dataset": layout.dataset,
        "samples": total,
        "shards": shards,
        "splits": dict(sorted(splits.items())),
        "coverage": {name: {"samples": present[name], "missing": total - present[name],
                            "fraction": present[name] / total if total else 0.0} for name in sorted(present)},
        "label_map": label_map,
        "ignored_pixels": int(pixels[IGNORE]),
        "classes": sorted(classes, key=lambda c: (-c["pixels"], c["id"])),
        "rejects": reject_reasons(layout.rejects),
        "annotators": dict(sorted(annotators.items())),
        # annotation shards per device and precision (shards annotated before these were recorded: not counted)
        "computed_on": {name: dict(sorted(c.items())) for name, c in sorted(computed_on.items())},
    }


def card_markdown(card: dict) -> str:
    """The card as a Markdown page."""
    lines = [f"# Dataset card: {card['dataset']}", "",
             f"{card['samples']} samples in {card['shards']} training shards; label map `{card['label_map']}`.", "",
             "## Splits", "", "| split | samples |", "| --- | ---: |"]
    lines += [f"| {split} | {n} |" for split, n in card["splits"].items()]
    lines += ["", "## Modality coverage", "", "| modality | samples | missing | coverage |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {c['samples']} | {c['missing']} | {c['fraction']:.1%} |"
              for name, c in card["coverage"].items()]
    lines += ["", f"## Classes (top {MAX_CARD_CLASSES} by pixels)", "",
              "| id | class | share of labelled pixels | images |", "| ---: | --- | ---: | ---: |"]
    lines += [f"| {c['id']} | {c['name']} | {c['pixel_share']:.2%} | {c['images']} |"
              for c in card["classes"][:MAX_CARD_CLASSES]]
    lines += ["", "## Rejected at ingest", ""]
    lines += [f"- {reason}: {n}" for reason, n in card["rejects"].items()] or ["- none"]
    lines += ["", "## Annotators", "", "| annotator | metadata | computed on: shards |", "| --- | --- | --- |"]
    lines += [f"| {name} | `{json.dumps(meta, sort_keys=True)}` | "
              f"{', '.join(f'{where}: {n}' for where, n in card['computed_on'].get(name, {}).items()) or '-'} |"
              for name, meta in card["annotators"].items()]
    return "\n".join(lines) + "\n"


def write_card(layout: Layout, label_map: str) -> dict:
    """Build the card and write card.json and card.md atomically; returns the card."""
    card = build_card(layout, label_map)
    with atomic_path(layout.card_json) as tmp:
        tmp.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
    with atomic_path(layout.card_md) as tmp:
        tmp.write_text(card_markdown(card))
    return card
