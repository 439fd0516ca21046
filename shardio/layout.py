"""Where every stage reads and writes under `--data-dir` (docs/architecture.md, "Where things land")."""
import re
from dataclasses import dataclass
from pathlib import Path

SHARD_RE = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{6})\.tar$")


def shard_name(split: str, index: int) -> str:
    """The contract's shard file name, `{split}-{index:06d}.tar`."""
    return f"{split}-{index:06d}.tar"


def stats_path(shard: Path) -> Path:
    """The per-shard stats file, written last: its presence marks the shard done."""
    return shard.with_suffix(".stats.json")


def image_shards(layout: "Layout") -> list[Path]:
    """The dataset's image shards in name order; none at all is an error naming the folder."""
    shards = sorted(p for p in layout.images.glob("*.tar") if SHARD_RE.match(p.name))
    if not shards:
        raise FileNotFoundError(f"{layout.images}: no image shards ({{split}}-{{index:06d}}.tar); "
                                "run `pipeline ingest`")
    return shards


def classes_path(shard: Path) -> Path:
    """A training shard's class counts per sample (`<shard>.classes.json`, written by pack before its stats)."""
    return shard.with_suffix(".classes.json")


@dataclass(frozen=True)
class Layout:
    """Paths of one dataset's files under a data directory."""

    data_dir: Path
    dataset: str

    @property
    def root(self) -> Path:
        return self.data_dir / self.dataset

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects.parquet"

    def annotations(self, annotator: str) -> Path:
        return self.root / annotator

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def card_json(self) -> Path:
        return self.root / "card.json"

    @property
    def card_md(self) -> Path:
        return self.root / "card.md"

    @property
    def preview(self) -> Path:
        return self.root / "preview.png"

    @property
    def weights(self) -> Path:
        return self.data_dir / "weights"

    def run(self, model: str) -> Path:
        return self.data_dir / "runs" / self.dataset / model

    def training(self, model: str) -> Path:
        """Snapshots, training states, sample grids and log.jsonl of a model's run (one DVC output)."""
        return self.run(model) / "train"

    def evaluation(self, model: str) -> Path:
        """metrics.json, report.md and plots of a model's evaluation (kept apart from the training output)."""
        return self.run(model) / "eval"

    def metrics(self, model: str) -> Path:
        """A model's evaluation numbers (as its metrics.json) in the dataset's folder of them: where `dvc metrics
        show` finds every model evaluated so far, and nothing for one that is not."""
        return self.data_dir / "runs" / self.dataset / "metrics" / f"{model}.json"

    @property
    def comparison(self) -> Path:
        """`pipeline compare`'s page of every model on the dataset (index.html, grids/, inputs/, cells/)."""
        return self.data_dir / "runs" / self.dataset / "compare"

    def source(self, path: str) -> Path:
        """A source path from params: relative paths are relative to the data directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.data_dir / p
