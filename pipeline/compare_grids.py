"""`pipeline compare`, the figures: one PNG per condition, rows = samples, columns = the sample's photo, what the
condition gives the models, then each model's draws side by side (or, where it has none, why), ready for a paper."""
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from shardio.shards import atomic_path  # noqa: E402
from train.report import image_grid  # noqa: E402

CELL_INCHES = 1.9


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def condition_input(sample, condition: str) -> tuple[np.ndarray | None, str]:
    """(picture, text) of what `condition` gives a model of `sample`: its coloured segmentation, sketch or both,
    and its caption where the condition gives text."""
    caption = sample.caption or "(no caption)"
    if condition == "seg":
        return (_rgb(sample.seg_colour) if sample.seg_colour else None), "segmentation"
    if condition == "all":  # the segmentation with the sketch's strokes drawn over it in white, and the caption
        picture = _rgb(sample.seg_colour).copy() if sample.seg_colour else None
        if picture is not None and sample.sketch:
            strokes = np.asarray(Image.open(sample.sketch).convert("L").resize(picture.shape[1::-1])) > 127
            picture[strokes] = 255
        return picture, caption
    if condition == "sketch":
        return (_rgb(sample.sketch) if sample.sketch else None), "sketch"
    return None, caption if condition == "text" else "no condition"


def _text(ax, text: str, colour: str = "black") -> None:
    ax.text(0.5, 0.5, textwrap.fill(text, 26), ha="center", va="center", fontsize=6.5, color=colour,
            transform=ax.transAxes)


def write_grid(path: Path, condition: str, title: str, samples, models: list[str], cells: dict) -> Path:
    """Draw the grid of `condition` (cells by (condition, model, key)) as a PNG at `path`."""
    columns = ["photo", "input", *models]
    widths = [1, 1] + [max(1, *(len(cells[condition, m, s.key].images) for s in samples)) for m in models]
    figure, axes = plt.subplots(len(samples), len(columns), squeeze=False,
                                figsize=(CELL_INCHES * sum(widths), CELL_INCHES * len(samples) + 0.6),
                                gridspec_kw={"width_ratios": widths})
    for row, sample in enumerate(samples):
        picture, text = condition_input(sample, condition)
        panels = [(_rgb(sample.photo), sample.key[:10]), (picture, text)]
        for model in models:
            cell = cells[condition, model, sample.key]
            panels.append((image_grid(np.stack([_rgb(p) for p in cell.images]), len(cell.images))
                           if cell.images else None, cell.why or ""))
        for column, (ax, (image, label)) in enumerate(zip(axes[row], panels)):
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[column], fontsize=9)
            if image is not None:
                ax.imshow(image, interpolation="nearest")
                ax.set_xlabel(textwrap.shorten(label, 60), fontsize=6.5)
            else:
                ax.set_facecolor("#eeeeee")
                _text(ax, label, "dimgray" if column >= 2 else "black")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        figure.savefig(f, format="png", dpi=80, metadata={"Software": None})
    plt.close(figure)
    return Path(path)
