"""Tar shards as byte ranges: list a shard's members from their headers alone (in the memory-mapped file), and
write a shard whose members are other shards' byte ranges under deterministic headers. No member is decoded or
passed through tarfile, so joining shards costs little more than copying their bytes.

Headers are POSIX ustar (the format tarfile writes; a name over 100 bytes gets a pax `path` record, as tarfile
does), with mode 0444, owner `bigdata` (webdataset's TarWriter default) and mtime 0; the archive ends with two
zero blocks padded to a 10 KiB record. The reader follows the contract of `shards.read_shard`: plain
`<key>.<ext>` files only.

The writer hands the disk what it has written every few MiB (`sync_file_range`, where the OS has it), so that the
fsync which makes the finished file durable (`shards.atomic_path`) waits for the last few MiB, not the whole file.
"""
import ctypes
import mmap
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple


# A member is `<key>.<ext>`: the key has no dots, the extension may (`seg.png`); nothing else is followed.
MEMBER_RE = re.compile(r"^(?P<key>[A-Za-z0-9_-]{1,128})\.(?P<ext>[A-Za-z0-9_.-]{1,64})$")
BLOCK = 512
RECORD = 20 * BLOCK
DIRECT = 1 << 20  # members at least this large are written straight from the source; smaller ones via the buffer
FLUSH = 4 << 20  # bytes buffered before one write
WRITEBACK = 8 << 20  # bytes written between two requests that the disk start writing them
_BLANK_BLOCK = bytes(BLOCK)


class ShardError(ValueError):
    """A shard that does not follow the contract; the message names the file and the member."""


class Member(NamedTuple):
    """One file in a shard: `<key>.<ext>`, its data at `offset` (bytes from the start), `size` bytes long."""

    key: str
    ext: str
    offset: int
    size: int


def _byte_sum(data: bytes) -> int:
    """The sum of at most 256 bytes, in C: adler32's low half is 1 + that sum modulo 65521, which is exact up to
    256 bytes (255 * 256 < 65520); Python's `sum` over a header's bytes cost more than the rest of its parsing."""
    return (zlib.adler32(data) & 0xFFFF) - 1


def _start_writeback():
    """libc's `sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)`: start writing a range of dirty pages
    to disk without waiting (Linux; Python's os has no binding); None where the C library lacks it."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return lambda fd, offset, length: function(fd, offset, length, 2)  # 2: SYNC_FILE_RANGE_WRITE


START_WRITEBACK = _start_writeback()


def _octal(field: bytes, path: Path, offset: int) -> int:
    try:
        return int(field.rstrip(b"\0 ") or b"0", 8)  # int() skips leading spaces itself
    except ValueError:
        raise ShardError(f"{path}: bad tar header at byte {offset}") from None


def _pax_records(data: bytes, path: Path) -> dict[str, str]:
    records, at = {}, 0
    while at < len(data):
        length = int(data[at:data.index(b" ", at)])
        key, _, value = data[data.index(b" ", at) + 1:at + length - 1].partition(b"=")
        records[key.decode()] = value.decode("utf-8", "surrogateescape")
        at += length
    if at != len(data):
        raise ShardError(f"{path}: malformed pax header")
    return records


@contextmanager
def mapped(path: Path) -> Iterator[memoryview]:
    """The bytes of a shard, memory-mapped read-only (the page cache's copy, read as the walk reaches it)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield memoryview(b"")
            return
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)
        try:
            yield view
        finally:
            view.release()
            try:
                mm.close()
            except BufferError:  # a slice outlives the walk (an error's traceback holds one): unmapped when freed
                pass


def list_members(path: Path, data: memoryview | bytes) -> list[Member]:
    """The members of the shard at `path` (whose bytes are `data`) in file order, from their headers; a link,
    directory, odd name, bad checksum or truncated shard is a ShardError naming the file."""
    members, offset, pax = [], 0, {}
    while True:
        header = bytes(data[offset:offset + BLOCK])
        if len(header) < BLOCK or header == _BLANK_BLOCK:  # end of archive (with or without its zero blocks)
            if header.strip(b"\0"):
                raise ShardError(f"{path}: truncated tar header at byte {offset}")
            return members
        stored = _octal(header[148:156], path, offset)
        # the checksum field counts as 8 spaces
        if stored != _byte_sum(header[:148]) + 256 + _byte_sum(header[156:412]) + _byte_sum(header[412:]):
            raise ShardError(f"{path}: bad tar header checksum at byte {offset}")
        kind, start = header[156:157], offset + BLOCK
        size = int(pax["size"]) if "size" in pax else _octal(header[124:136], path, offset)
        if start + size > len(data):
            raise ShardError(f"{path}: truncated: member at byte {offset} runs past the end of the file")
        offset = start + -(-size // BLOCK) * BLOCK
        if kind == b"x":  # pax extended header: applies to the next member
            pax = _pax_records(bytes(data[start:start + size]), path)
            continue
        name = pax.get("path") or header[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if header[257:263] == b"ustar\0" and header[345:500].strip(b"\0") and "path" not in pax:
            name = header[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape") + "/" + name
        pax = {}
        match = MEMBER_RE.match(name)
        if kind not in (b"0", b"\0") or match is None:
            raise ShardError(f"{path}: member {name!r} is not a plain `<key>.<ext>` file")
        members.append(Member(match["key"], match["ext"], start, size))


def samples(members: list[Member]) -> Iterator[tuple[str, dict[str, Member]]]:
    """(key, {ext: member}) per sample: consecutive members sharing a key, in file order."""
    key, sample = None, {}
    for member in members:
        if member.key != key:
            if key is not None:
                yield key, sample
            key, sample = member.key, {}
        sample[member.ext] = member
    if key is not None:
        yield key, sample


# The fixed fields of every header this module writes (mode, uid, gid | mtime | type ... devminor, prefix).
_TEMPLATE = tarfile.TarInfo("x")
_TEMPLATE.mode, _TEMPLATE.mtime, _TEMPLATE.uname, _TEMPLATE.gname = 0o444, 0, "bigdata", "bigdata"
_BLANK = _TEMPLATE.tobuf(tarfile.USTAR_FORMAT)
_OWNER, _MTIME, _REST = _BLANK[100:124], _BLANK[136:148], _BLANK[156:]
_FIXED_SUM = sum(_OWNER) + sum(_MTIME) + 256 + sum(_REST)


def header(name: str, size: int) -> bytes:
    """The tar header(s) of a member `name` of `size` bytes: what tarfile writes for it (as `_TEMPLATE`)."""
    encoded = name.encode()
    if len(encoded) > 100 or size >= 8 ** 11:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime, info.uname, info.gname = size, 0o444, 0, "bigdata", "bigdata"
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    name_field, size_field = encoded.ljust(100, b"\0"), b"%011o\0" % size
    checksum = b"%06o\0 " % (_FIXED_SUM + _byte_sum(name_field + size_field))
    return name_field + _OWNER + size_field + _MTIME + checksum + _REST


class TarCopier:
    """Writes a tar file of members given as bytes or as byte ranges of other shards' (mapped) bytes."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._buffer = bytearray()
        self._written = 0
        self._handed = 0  # bytes the disk was asked to start writing

    def add(self, name: str, data: memoryview | bytes) -> None:
        """A member holding `data` (a slice of a mapped shard is copied once, into the buffer or the file)."""
        self._buffer += header(name, len(data))
        if len(data) >= DIRECT:
            self._flush()
            self._write(data)
        else:
            self._buffer += data
        self._buffer += _BLANK_BLOCK[:-len(data) % BLOCK]
        if len(self._buffer) >= FLUSH:
            self._flush()

    def _write(self, data: memoryview | bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._written += len(data)
        self._hand_to_disk()

    def _hand_to_disk(self) -> None:
        """Ask the disk to start writing what was written since the last ask, every WRITEBACK bytes: a hint (its
        result is not checked), durability is the fsync's job."""
        if START_WRITEBACK is not None and self._written - self._handed >= WRITEBACK:
            START_WRITEBACK(self._fd, self._handed, self._written - self._handed)
            self._handed = self._written

    def _flush(self) -> None:
        if self._buffer:
            self._write(self._buffer)
            self._buffer = bytearray()

    def close(self) -> None:
        """End the archive (two zero blocks, padded to a whole record) and close the file."""
        end = self._written + len(self._buffer) + 2 * BLOCK
        self._buffer += bytes(2 * BLOCK + -end % RECORD)
        self._flush()
        os.close(self._fd)

    def abort(self) -> None:
        """Close the file without ending the archive (its caller discards it)."""
        os.close(self._fd)
