"""A full disk told in one line: which folder, about how much more the stage needs, and that a rerun continues.

A stage wraps its shard-writing loop in `reporting_full_disk(folder, shards, command)`: a write refused for want of
space (ENOSPC) or quota (EDQUOT), in this process or in a worker, becomes `DiskFull`, whose message estimates what
the stage still needs from what it finished (bytes per finished shard, its marker and other sidecars included, x
shards left); its command wraps the whole stage the same way without shards, for the files written outside the loop
(manifest, card), and prints the message as its one line. Nothing half-written is trusted: shards are renamed into
place only once complete and marked only after that (shardio.shards), so a rerun keeps every finished shard and
redoes the rest.
"""
import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .shards import SIDECARS, read_stats

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(RuntimeError):
    """A stage ran out of disk space (or quota); the message is the one line a user reads."""


def no_space(err: BaseException | None) -> bool:
    """True when `err`, or an error it wraps (a worker's, re-raised by Ray or a process pool), is a write refused
    for want of space or quota."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return True
        err = getattr(err, "cause", None) or err.__cause__ or err.__context__
    return False


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def full_disk_line(folder: Path, command: str, shards: list[Path] | None = None) -> str:
    """The one line for a full disk met while writing into `folder`: its free space, the estimate of what the
    planned `shards` still need (when any is finished), and that rerunning `command` continues."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    line = f"no space left on the disk holding {folder} ({_mb(free)} free)"
    if shards:
        finished = [s for s in shards if s.is_file() and read_stats(s) is not None]
        left = len(shards) - len(finished)
        if finished:
            per_shard = sum(_bytes_with_sidecars(s) for s in finished) / len(finished)
            line += (f"; about {_mb(per_shard * left)} more needed for the {left} shard(s) left "
                     f"({_mb(per_shard)} per finished shard x {left}; {len(finished)} of {len(shards)} finished)")
        else:
            line += f"; none of its {len(shards)} shard(s) finished, so more than {_mb(free)} per shard is needed"
    return (f"{line}. Free space (or use another --data-dir) and rerun `{command}`: it keeps every finished shard "
            "and continues where it stopped; nothing half-written was kept")


def _bytes_with_sidecars(shard: Path) -> int:
    sidecars = (shard.with_suffix(suffix) for suffix in SIDECARS)
    return shard.stat().st_size + sum(p.stat().st_size for p in sidecars if p.is_file())


@contextmanager
def reporting_full_disk(folder: Path, shards: list[Path], command: str) -> Iterator[None]:
    """Run the block; a full disk inside it raises `DiskFull` with `full_disk_line(folder, command, shards)` (no
    estimate without `shards`)."""
    try:
        yield
    except DiskFull:  # told already, by a block inside this one
        raise
    except Exception as err:
        if not no_space(err):
            raise
        raise DiskFull(full_disk_line(folder, command, shards)) from None
