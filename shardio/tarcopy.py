"""Tar shards as byte ranges: list a shard's members from their headers alone, and write a shard whose members
are copied from other shards' byte ranges, with deterministic headers. No member is decoded or buffered whole
through tarfile, so joining shards costs little more than copying their bytes.

Headers are POSIX ustar (the format tarfile writes; a name over 100 bytes gets a pax `path` record, as tarfile
does), with mode 0444, owner `bigdata` (webdataset's TarWriter default) and mtime 0; the archive ends with two
zero blocks padded to a 10 KiB record. The reader follows the contract of `shards.read_shard`: plain
`<key>.<ext>` files only.
"""
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .shards import MEMBER_RE, ShardError

BLOCK = 512
RECORD = 20 * BLOCK
COPY_CHUNK = 1 << 20  # members at least this large are copied in the kernel; smaller ones through the buffer
FLUSH = 4 << 20  # bytes buffered before one write


@dataclass(frozen=True)
class Member:
    """One file in a shard: `<key>.<ext>`, its data at `offset` (bytes from the start), `size` bytes long."""

    key: str
    ext: str
    offset: int
    size: int


def _octal(field: bytes, path: Path, offset: int) -> int:
    digits = field.rstrip(b"\0 ").lstrip(b" ")
    try:
        return int(digits or b"0", 8)
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


def list_members(path: Path) -> list[Member]:
    """The members of a shard in file order, from their headers; a link, directory, odd name, bad checksum or
    truncated shard is a ShardError naming the file."""
    members, offset, pax = [], 0, {}
    size_on_disk = path.stat().st_size
    with open(path, "rb") as f:
        while True:
            header = os.pread(f.fileno(), BLOCK, offset)
            if len(header) < BLOCK or header == bytes(BLOCK):  # end of archive (with or without its zero blocks)
                if header.strip(b"\0"):
                    raise ShardError(f"{path}: truncated tar header at byte {offset}")
                return members
            stored = _octal(header[148:156], path, offset)
            if stored != sum(header[:148]) + 256 + sum(header[156:]):  # the checksum field counts as 8 spaces
                raise ShardError(f"{path}: bad tar header checksum at byte {offset}")
            kind, size = header[156:157], _octal(header[124:136], path, offset)
            start = offset + BLOCK
            size = int(pax.get("size", size))
            if start + size > size_on_disk:
                raise ShardError(f"{path}: truncated: member at byte {offset} runs past the end of the file")
            offset = start + -(-size // BLOCK) * BLOCK
            if kind == b"x":  # pax extended header: applies to the next member
                pax = _pax_records(os.pread(f.fileno(), size, start), path)
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
    checksum = b"%06o\0 " % (_FIXED_SUM + sum(name_field) + sum(size_field))
    return name_field + _OWNER + size_field + _MTIME + checksum + _REST


class TarCopier:
    """Writes a tar file of members given as bytes or as byte ranges of open source files."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._buffer = bytearray()
        self._written = 0

    def add_bytes(self, name: str, data: bytes) -> None:
        """A member holding `data`."""
        self._buffer += header(name, len(data))
        self._buffer += data
        self._pad(len(data))

    def add_range(self, name: str, source_fd: int, offset: int, size: int) -> None:
        """A member holding `size` bytes of `source_fd` from `offset`."""
        self._buffer += header(name, size)
        if size < COPY_CHUNK:
            data = os.pread(source_fd, size, offset)
            if len(data) != size:
                raise ShardError(f"short read: {len(data)} of {size} bytes at {offset}")
            self._buffer += data
        else:
            self._flush()
            _copy_range(source_fd, self._fd, offset, size)
            self._written += size
        self._pad(size)

    def _pad(self, size: int) -> None:
        self._buffer += bytes(-size % BLOCK)
        if len(self._buffer) >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        view = memoryview(self._buffer)
        while view:
            view = view[os.write(self._fd, view):]
        self._written += len(self._buffer)
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


def _copy_range(source_fd: int, target_fd: int, offset: int, size: int) -> None:
    """Copy `size` bytes of `source_fd` from `offset` to the current end of `target_fd`, in the kernel where the
    platform can (sendfile between files: Linux), else through memory."""
    while size:
        try:
            sent = os.sendfile(target_fd, source_fd, offset, min(size, 1 << 30))
        except OSError:
            sent = os.write(target_fd, os.pread(source_fd, min(size, COPY_CHUNK), offset))
        if sent == 0:
            raise ShardError(f"short read at {offset}: the source ends early")
        offset, size = offset + sent, size - sent
