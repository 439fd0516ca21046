"""`pipeline preview`: one PNG to look at before spending GPU-days: random training samples as rows of
image | colourised segmentation | its legend | sketch | caption (or, without one, the caption whose CLIP text
embedding is nearest to the image's CLIP embedding), and under them the class-frequency bar chart. A panel an
annotator with random weights made says so in red: such output only looks like an annotation."""
import io
import json
import textwrap

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from annotators.labelmaps import IGNORE, load_label_map  # noqa: E402
from annotators.weights import random_weight_annotators  # noqa: E402

from shardio.layout import SHARD_RE, Layout  # noqa: E402
from shardio.shards import atomic_path, read_shard, read_stats  # noqa: E402

# Captions gathered for "nearest caption", and samples read to find them: bounded so preview stays cheap on
# datasets of millions of images (and on those without captions at all).
CAPTION_BANK, CAPTION_SCAN = 20_000, 50_000
LEGEND_CLASSES = 8
CHART_CLASSES = 25


def _shards_with_counts(layout: Layout) -> list[tuple]:
    shards = [(p, read_stats(p)) for p in sorted(layout.shards.glob("*.tar")) if SHARD_RE.match(p.name)]
    shards = [(p, s["samples"]) for p, s in shards if s is not None]
    if not shards:
        raise FileNotFoundError(f"{layout.shards}: no finished training shards; run `pipeline pack`")
    return shards


def pick_samples(layout: Layout, count: int, seed: int) -> list[tuple[str, dict[str, bytes]]]:
    """`count` distinct samples drawn uniformly with `seed` (all of them when there are fewer), in shard order."""
    shards = _shards_with_counts(layout)
    total = sum(n for _, n in shards)
    chosen = set(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False).tolist())
    picked, offset = [], 0
    for path, n in shards:
        if chosen & set(range(offset, offset + n)):
            picked += [s for i, s in enumerate(read_shard(path), offset) if i in chosen]
        offset += n
    return picked


def caption_bank(layout: Layout) -> tuple[list[str], np.ndarray | None]:
    """Up to CAPTION_BANK captions (from at most CAPTION_SCAN samples) and their CLIP text embeddings [n, D]
    (None without any)."""
    captions, embeddings, scanned = [], [], 0
    for path, _ in _shards_with_counts(layout):
        for _, sample in read_shard(path):
            if "txt" in sample and "clip_text.npy" in sample:
                lines = sample["txt"].decode().splitlines()
                vectors = np.load(io.BytesIO(sample["clip_text.npy"]), allow_pickle=False).astype(np.float32)
                captions += lines[: len(vectors)]
                embeddings.append(vectors[: len(lines)])
            scanned += 1
            if len(captions) >= CAPTION_BANK or scanned >= CAPTION_SCAN:
                return captions, (np.concatenate(embeddings) if embeddings else None)
    return captions, (np.concatenate(embeddings) if embeddings else None)


def caption_for(sample: dict[str, bytes], bank: tuple[list[str], np.ndarray | None]) -> str:
    """The sample's first caption, else the nearest caption of the bank to its CLIP image embedding."""
    if "txt" in sample:
        return sample["txt"].decode().splitlines()[0]
    captions, embeddings = bank
    if "clip.npy" not in sample or embeddings is None:
        return "(no caption)"
    image = np.load(io.BytesIO(sample["clip.npy"]), allow_pickle=False).astype(np.float32)
    scores = embeddings @ image
    best = int(np.argmax(scores))
    return f"nearest caption (cos {scores[best]:.2f}): {captions[best]}"


def _decode(data: bytes | None, flags: int) -> np.ndarray | None:
    return None if data is None else cv2.imdecode(np.frombuffer(data, np.uint8), flags)


RANDOM_MARK = "RANDOM weights"
# The annotator behind each panel of a row (the caption panel's nearest caption comes through CLIP).
PANEL_ANNOTATORS = {"segmentation": "seg", "sketch": "sketch", "caption": "clip"}


def panel_titles(sample: dict[str, bytes]) -> dict[str, tuple[str, str]]:
    """(title, colour) of the annotated panels of a sample's row: red and saying so where random weights made it."""
    info = json.loads(sample["json"]) if "json" in sample else {}
    random = set(random_weight_annotators(info.get("annotators", {})))
    return {panel: (f"{panel} ({RANDOM_MARK}: {name})", "red") if name in random else (panel, "black")
            for panel, name in PANEL_ANNOTATORS.items()}


def _show(ax, picture, title: str, colour: str = "black", **kwargs) -> None:
    ax.axis("off")
    ax.set_title(title, fontsize=8, color=colour)
    if picture is None:
        ax.text(0.5, 0.5, "absent", ha="center", va="center", fontsize=8, color="grey")
    else:
        ax.imshow(picture, **kwargs)


def _draw_row(axes, key: str, sample: dict[str, bytes], labels, caption: str) -> None:
    titles = panel_titles(sample)
    image = _decode(sample["jpg"], cv2.IMREAD_COLOR)
    _show(axes[0], None if image is None else image[..., ::-1], f"image {key[:10]}")
    seg = _decode(sample.get("seg.png"), cv2.IMREAD_UNCHANGED)
    _show(axes[1], None if seg is None else labels.colourise(seg), *titles["segmentation"],
          interpolation="nearest")
    axes[2].axis("off")
    if seg is not None:
        ids, area = np.unique(seg[seg != IGNORE], return_counts=True)
        top = ids[np.argsort(-area)][:LEGEND_CLASSES]
        handles = [Patch(color=labels.colours[i] / 255, label=labels.names[i]) for i in top if i < labels.num_classes]
        axes[2].legend(handles=handles, loc="center left", fontsize=6, frameon=False)
    _show(axes[3], _decode(sample.get("sketch.png"), cv2.IMREAD_UNCHANGED), *titles["sketch"], cmap="gray_r",
          vmin=0, vmax=255)
    axes[4].axis("off")
    if caption.startswith("nearest caption") and titles["caption"][1] == "red":  # chosen by a random CLIP
        axes[4].set_title(titles["caption"][0], fontsize=8, color="red")
    axes[4].text(0, 0.5, textwrap.fill(caption, 40), fontsize=7, va="center", wrap=True)


def _draw_chart(ax, card: dict) -> None:
    classes = card["classes"][:CHART_CLASSES]
    ax.bar(range(len(classes)), [c["pixel_share"] * 100 for c in classes], color="tab:blue")
    ax.set_xticks(range(len(classes)), [c["name"] for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("% of labelled pixels", fontsize=8)
    ax.set_title(f"class frequency, top {len(classes)} of {len(card['classes'])} ({card['samples']} samples)",
                 fontsize=9)


def write_preview(layout: Layout, count: int, seed: int) -> int:
    """Draw the preview PNG of `count` random samples and the class chart (needs card.json); returns rows drawn."""
    if not layout.card_json.exists():
        raise FileNotFoundError(f"{layout.card_json}: missing; run `pipeline pack` first")
    card = json.loads(layout.card_json.read_text())
    labels = load_label_map(card["label_map"])
    samples = pick_samples(layout, count, seed)
    bank = caption_bank(layout)
    figure = plt.figure(figsize=(13, 2.2 * len(samples) + 3.5))
    grid = figure.add_gridspec(len(samples) + 1, 5, width_ratios=[1, 1, 0.6, 1, 1.4],
                               height_ratios=[1] * len(samples) + [1.4])
    for row, (key, sample) in enumerate(samples):
        axes = [figure.add_subplot(grid[row, col]) for col in range(5)]
        _draw_row(axes, key, sample, labels, caption_for(sample, bank))
    _draw_chart(figure.add_subplot(grid[len(samples), :]), card)
    figure.tight_layout()
    with atomic_path(layout.preview) as tmp:
        figure.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
    plt.close(figure)
    return len(samples)
