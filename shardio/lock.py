"""One writer per output folder: a stage run takes an OS file lock (`flock`) on `.<folder>.lock` beside the folder
it writes, so a second run of any stage on the same folder stops at once, naming the run that holds it. The kernel
releases the lock when its holder's process ends, however it ends (a SIGKILL included), so a killed run never
blocks the next one; the file itself stays (deleting it could let two runs lock two different files). Beside the
folder, not in it: the folder is a DVC output, whose hash must not see the lock.

flock locks are held by open file descriptions: two opens in one process exclude each other too. On a network
file system flock may be local to one machine (NFS emulates it with byte-range locks since Linux 2.6.12).
"""
import fcntl
import json
import os
import time
from pathlib import Path

HOLDER_WAIT = 0.5  # seconds to wait for the holder to record itself (it writes right after locking)


class Busy(RuntimeError):
    """Another run holds the folder's lock; the message names it and what to do."""


def lock_path(folder: Path) -> Path:
    """The lock file of an output folder: `.<name>.lock` beside it."""
    return folder.with_name(f".{folder.name}.lock")


class FolderLock:
    """The lock of one output folder, held from `acquire` until `release` (or the end of a `with` block)."""

    def __init__(self, fd: int):
        self._fd = fd

    def release(self) -> None:
        """Release the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(folder: Path, command: str) -> FolderLock:
    """Lock `folder` for `command` (e.g. `pipeline pack`) and record this process in the lock file; Busy at once
    if another run holds it."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise Busy(f"another `{holder.get('command', 'run')}` (pid {holder.get('pid', '?')}, started "
                   f"{holder.get('started', 'at an unknown time')}) is writing {folder}; wait for it or stop it") \
            from None
    except BaseException:
        os.close(fd)
        raise
    record = {"command": command, "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    return FolderLock(fd)


def _holder(fd: int) -> dict:
    """Who holds the lock, as it recorded itself ({} if it has not yet, within HOLDER_WAIT)."""
    deadline = time.monotonic() + HOLDER_WAIT
    while True:
        try:
            return json.loads(os.pread(fd, 4096, 0))
        except ValueError:
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.02)
