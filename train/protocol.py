"""The protocol record of one evaluation: what its numbers were computed on, built by one function (`record`) for
`pipeline evaluate --dry-run` (before the run) and for the report (after it), and rendered as lines by another
(`lines`), so a number never travels without its protocol. metrics.json carries it under the key "protocol":

    {"version": 1,                       # of this layout
     "model": "<family>", "dataset": "coco", "resolution": 256,
     "snapshot": "network-snapshot-001000.pt",        # null in a dry run before training
     "images": 5000,                     # test images generated per row (each row: one image per test image)
     "reference": {"split": "test", "images": 5000},  # FID/KID's real images (evaluate.reference_split)
     "seed": 0,                          # evaluate.seed
     "rows": [{"name": "seg", "condition": "seg", "metrics": ["fid", "kid", "seg_consistency", ...]}, ...],
     "metrics": [{"name": "seg_consistency", "keys": ["seg_miou", "seg_f1", "seg_pixel_accuracy"],
                  "network": "seg annotator", "model": "deeplabv2-resnet101", "weights": "deeplabv2-cocostuff164k",
                  "label_map": "coco-stuff-182", "classes": 182}, ...],   # each metric some row uses
     "seeding": ["noise of test batch i: SeedSequence(seed, i)", ...],
     "notes": ["<family> evaluates at most 500 test images per condition ...", ...]}  # train/eval_plan.py

`dvc metrics show` lists the record's scalars beside the numbers (protocol.images, protocol.reference.split, ...)
and leaves out its lists (rows, metrics, seeding, notes)."""
from annotators.labelmaps import load_label_map

from .eval_plan import ANNOTATOR_OF, EvalPlan, scored_by
from .metrics import REGISTRY

VERSION = 1


def _metric(name: str, stage) -> dict:
    """One entry of the record's "metrics": the metric, its score keys, the network that scores and its
    settings."""
    p = stage.params.evaluate
    entry = {"name": name, "keys": list(REGISTRY[name].keys)}
    if name in ("fid", "kid"):
        entry.update(network="inception", weights=p.inception_weights)
    if name == "kid":
        entry.update(subsets=p.kid_subsets, subset_size=p.kid_subset_size)
    if name in ("lpips_diversity", "lpips_gt"):
        entry.update(network="lpips alexnet v0.1", weights=p.lpips_weights)
    if name == "lpips_diversity":
        entry.update(groups=p.diversity_groups, pairs=p.diversity_pairs, images=p.diversity_images)
    if name == "ssim":
        entry.update(window="gaussian 11x11, sigma 1.5", ground_truth="the test image of each condition")
    if name == "lpips_gt":
        entry.update(ground_truth="the test image of each condition")
    if name in ANNOTATOR_OF:
        annotator = ANNOTATOR_OF[name][0]
        section = getattr(stage.params.annotate, annotator)
        entry.update(network=f"{annotator} annotator", weights=section.weights)
        if hasattr(section, "model"):
            entry.update(model=section.model)
        if annotator == "seg":
            labels = load_label_map(stage.profile.label_map)
            entry.update(label_map=labels.name, classes=labels.num_classes)
        if name == "sketch_fscore":
            entry.update(tolerance=p.sketch_tolerance)
    return entry


def record(stage, evaluation: EvalPlan, images: int, reference_images: int, rows: list[tuple[str, str]] | None = None,
           snapshot: str | None = None) -> dict:
    """The protocol of evaluating `evaluation.model` on the stage's dataset: `images` test images per row,
    `reference_images` real images for FID/KID, `rows` (name, condition) as evaluated (default: one per planned
    condition) and the snapshot's file name. See the module docstring for the layout."""
    p = stage.params.evaluate
    rows = rows if rows is not None else [(c, c) for c in evaluation.conditions]
    scored = [{"name": name, "condition": condition, "metrics": scored_by(p.metrics, condition)}
              for name, condition in rows]
    used = [m for m in p.metrics if any(m in row["metrics"] for row in scored)]
    seeding = [f"noise of test batch i: SeedSequence(evaluate.seed {p.seed}, i)",
               "crops and captions: the seed and each sample's key"]
    if "lpips_diversity" in used:
        seeding.insert(1, f"diversity groups: seeds {p.seed + 1} ... {p.seed + p.diversity_groups - 1}")
    return {"version": VERSION, "model": evaluation.model, "dataset": stage.dataset,
            "resolution": evaluation.cfg.resolution, "snapshot": snapshot, "images": images,
            "reference": {"split": p.reference_split, "images": reference_images}, "seed": p.seed,
            "rows": scored, "metrics": [_metric(name, stage) for name in used], "seeding": seeding,
            "notes": list(evaluation.notes)}


def _row(row: dict) -> str:
    name = row["name"] if row["name"] == row["condition"] else f"{row['name']} ({row['condition']})"
    return f"{name}: {', '.join(row['metrics']) or 'nothing'}"


def _network(entry: dict) -> str:
    shown = ("name", "keys", "network", "model", "weights", "label_map", "classes")
    settings = [f"{k.replace('_', ' ')} {v}" for k, v in entry.items() if k not in shown]
    what = entry.get("network", "")
    if "model" in entry:
        what += f" ({entry['model']}, weights {entry['weights']})"
    elif "weights" in entry:
        what += f" (weights {entry['weights']})"
    if "label_map" in entry:
        what += f", label map {entry['label_map']} ({entry['classes']} classes)"
    keys = "" if entry["keys"] == [entry["name"]] else f" ({', '.join(entry['keys'])})"
    return f"{entry['name']}{keys}: " + "; ".join([what] * bool(what) + settings)


def lines(protocol: dict) -> list[str]:
    """The record as the lines the dry run prints and report.md lists."""
    reference = protocol["reference"]
    return [
        f"model: {protocol['model']} on {protocol['dataset']} at {protocol['resolution']} px, snapshot "
        f"{protocol['snapshot'] or 'none yet'}",
        "rows (condition: metrics): " + "; ".join(_row(row) for row in protocol["rows"]),
        f"images per condition: {protocol['images']}",
        f"reference set (FID/KID): {reference['images']} {reference['split']} images at {protocol['resolution']} px",
        *(_network(entry) for entry in protocol["metrics"]),
        f"seeds: {'; '.join(protocol['seeding'])}",
        *protocol["notes"],
    ]
