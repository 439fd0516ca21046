"""A list of image paths: a .txt (one per line, `#` comments), or a .csv / .parquet with a `path` column.
Relative paths are relative to the list's own folder."""
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv
import pyarrow.parquet

from . import Blob, Skipped, SourceError, SourceItem

SUFFIXES = (".txt", ".csv", ".parquet")


def fits(root: Path) -> bool:
    """A .txt, .csv or .parquet file."""
    return root.is_file() and root.suffix.lower() in SUFFIXES


def items(root: Path) -> Iterator[SourceItem | Skipped]:
    """One item per listed path, in list order; listed files that do not exist are skipped as `missing`."""
    for entry in read_paths(root):
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else root.parent / path
        if path.is_file():
            yield SourceItem(source=entry, image=Blob(str(path)))
        else:
            yield Skipped(entry, "missing", f"{path} is not a file")


def read_paths(list_file: Path) -> list[str]:
    """The path strings a list file holds."""
    if not list_file.is_file():
        raise SourceError(f"{list_file}: image list not found")
    suffix = list_file.suffix.lower()
    if suffix in (".csv", ".parquet"):
        try:
            table = pyarrow.csv.read_csv(list_file) if suffix == ".csv" else pyarrow.parquet.read_table(list_file)
        except pyarrow.ArrowException as e:
            raise SourceError(f"{list_file}: not a readable {suffix[1:]} file: {e}") from None
        if "path" not in table.column_names:
            raise SourceError(f"{list_file}: needs a `path` column (has {', '.join(table.column_names)})")
        paths = [str(p) for p in table.column("path").to_pylist() if p is not None]
    else:
        paths = list_file.read_text(encoding="utf-8").splitlines()
    return [p.strip() for p in paths if p.strip() and not p.strip().startswith("#")]
