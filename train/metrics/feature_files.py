"""Features on disk instead of in memory: what FID and KID keep of each batch (8 KB of Inception features an
image) is appended to a file of the process's own as the batch goes by, and the batch's part only names its rows
(`Rows`). The process that finishes the metrics copies every part, in batch order and a part at a time, into one
.npy file and maps it: memory does not grow with the number of images, and the rows are in the same order
however many processes computed them."""
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Rows:
    """`count` float32 rows of `dim` values from row `start` of the raw file `path`."""

    path: str
    start: int
    count: int
    dim: int


class Appender:
    """Appends float32 row blocks to a new raw file in `folder` (made if missing), one open per block (nothing is
    left buffered when another process reads it)."""

    def __init__(self, folder: Path):
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".f32", delete=False) as f:
            self.path = f.name
        self.rows = 0

    def append(self, block: np.ndarray) -> Rows:
        """Write `block` ([B, D], as float32) after the rows before it; returns where it is."""
        block = np.ascontiguousarray(block, np.float32)
        with open(self.path, "ab") as f:
            f.write(block.data)
        rows = Rows(self.path, self.rows, len(block), block.shape[1])
        self.rows += len(block)
        return rows


def read(part) -> np.ndarray:
    """The float32 rows of a part: a `Rows` read from its file, or an array as it is."""
    if isinstance(part, np.ndarray):
        return part
    return np.fromfile(part.path, np.float32, count=part.count * part.dim,
                       offset=part.start * part.dim * 4).reshape(part.count, part.dim)


def assemble(parts: list, path: Path) -> np.ndarray:
    """The rows of `parts` (each `Rows` or an array), in their order, written to the .npy file `path` one part at
    a time and mapped from it read-only ([N, D] float32)."""
    shapes = [(part.count, part.dim) if isinstance(part, Rows) else np.shape(part) for part in parts]
    if not parts or len({dim for _, dim in shapes}) != 1:
        raise ValueError(f"cannot assemble {len(parts)} feature parts of widths {sorted({d for _, d in shapes})}")
    out = np.lib.format.open_memmap(path, "w+", np.float32, (sum(n for n, _ in shapes), shapes[0][1]))
    start = 0
    for part in parts:
        rows = read(part)
        out[start:start + len(rows)] = rows
        start += len(rows)
    out.flush()
    del out
    return load(path)


def load(path: Path) -> np.ndarray:
    """The [N, D] float32 features of the .npy file `path`, mapped read-only (no pickles)."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
