"""Tar shards as byte ranges (`shardio.tarcopy`): headers as tarfile writes them, members found from headers
alone in shards any writer made, and the contract's refusals."""
import io
import tarfile

import pytest

from shardio.shards import read_shard, shard_writer
from shardio import tarcopy
from shardio.tarcopy import ShardError, TarCopier, header, list_members, mapped, samples

KEY = "0123456789abcdef01234567"


def _tarfile_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uname, info.gname = size, 0o444, 0, "bigdata", "bigdata"
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize("name,size", [(f"{KEY}.jpg", 0), (f"{KEY}.seg.png", 12345), ("a.b", 8 ** 11 - 1),
                                       ("k" * 128 + ".clip_text.npy", 7)])
def test_headers_are_what_tarfile_writes(name, size):
    assert header(name, size) == _tarfile_header(name, size)


def test_members_are_found_in_shards_the_shard_writer_made(tmp_path):
    path = tmp_path / "train-000000.tar"
    written = [(KEY, {"jpg": b"\xff" * 1000, "json": b"{}"}), ("k" * 120, {"seg.png": b"png" * 300})]
    with shard_writer(path) as writer:  # the long name gets a pax header
        for key, sample in written:
            writer.write({"__key__": key, **sample})
    data = path.read_bytes()
    found = [(key, {ext: data[m.offset:m.offset + m.size] for ext, m in sample.items()})
             for key, sample in samples(list_members(path, data))]
    assert found == written == list(read_shard(path))


def test_a_copied_shard_reads_back_and_is_the_same_bytes_every_time(tmp_path):
    source = tmp_path / "source.tar"
    with shard_writer(source) as writer:
        writer.write({"__key__": KEY, "jpg": bytes(range(256)) * 5000, "txt": b"a caption"})  # one large member

    def copy(out):
        writer = TarCopier(out)
        with mapped(source) as data:
            for member in list_members(source, data):
                writer.add(f"{member.key}.{member.ext}", data[member.offset:member.offset + member.size])
        writer.add(f"{KEY}.json", b'{"key": 1}')
        writer.close()
        return out.read_bytes()

    first = copy(tmp_path / "a.tar")
    assert copy(tmp_path / "b.tar") == first and len(first) % (20 * 512) == 0
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert [(m.name, m.mtime, m.mode, m.uname) for m in tar] == [
            (f"{KEY}.{ext}", 0, 0o444, "bigdata") for ext in ("jpg", "txt", "json")]
        assert tar.extractfile(f"{KEY}.jpg").read() == bytes(range(256)) * 5000
        assert tar.extractfile(f"{KEY}.json").read() == b'{"key": 1}'


def _tar(path, *infos):
    with tarfile.open(path, "w") as tar:
        for info, data in infos:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def test_links_directories_odd_names_and_damage_are_refused(tmp_path):
    link = tarfile.TarInfo(f"{KEY}.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    folder = tarfile.TarInfo(KEY)
    folder.type = tarfile.DIRTYPE
    for index, (info, data) in enumerate([(link, None), (folder, None), (tarfile.TarInfo("../x.jpg"), b"")]):
        _tar(tmp_path / f"{index}.tar", (info, data))
        with pytest.raises(ShardError, match=f"{index}.tar: member .* is not a plain"):
            list_members(tmp_path / f"{index}.tar", (tmp_path / f"{index}.tar").read_bytes())
    good = tarfile.TarInfo(f"{KEY}.jpg")
    good.size = 2000
    _tar(tmp_path / "good.tar", (good, b"x" * 2000))
    data = (tmp_path / "good.tar").read_bytes()
    (tmp_path / "flipped.tar").write_bytes(data[:10] + b"Z" + data[11:])
    with pytest.raises(ShardError, match="flipped.tar: bad tar header checksum"):
        list_members(tmp_path / "flipped.tar", (tmp_path / "flipped.tar").read_bytes())
    (tmp_path / "cut.tar").write_bytes(data[:1500])
    with pytest.raises(ShardError, match="cut.tar: truncated"):
        with mapped(tmp_path / "cut.tar") as data:
            list_members(tmp_path / "cut.tar", data)


def _tarfile_shard(samples) -> bytes:
    """What tarfile (as webdataset's TarWriter, `encoder=False, mtime=0`) writes for these samples."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w|") as tar:
        for sample in samples:
            for ext in sorted(k for k in sample if not k.startswith("_")):
                info = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                info.size, info.mode, info.mtime = len(sample[ext]), 0o444, 0
                info.uname = info.gname = "bigdata"
                tar.addfile(info, io.BytesIO(sample[ext]))
    return stream.getvalue()


def test_the_shard_writer_writes_what_tarfile_writes(tmp_path, monkeypatch):
    # ingest and annotate write through it: their shards must keep their bytes (and so every fingerprint after)
    samples = [{"__key__": KEY, "jpg": bytes(range(256)) * 9000, "json": b"{}", "txt": b""},  # over 1 MiB
               {"__key__": "k" * 120, "seg.png": b"png" * 300, "_skipped": b"x"}]  # a pax header
    expected = _tarfile_shard(samples)
    for hint in (tarcopy.START_WRITEBACK, None):  # with the writeback hint and where the OS has none
        monkeypatch.setattr(tarcopy, "START_WRITEBACK", hint)
        monkeypatch.setattr(tarcopy, "WRITEBACK", 1 << 20)
        with shard_writer(tmp_path / "train-000000.tar") as writer:
            for sample in samples:
                writer.write(sample)
        assert (tmp_path / "train-000000.tar").read_bytes() == expected


def test_a_failed_shard_writer_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with shard_writer(tmp_path / "train-000000.tar") as writer:
            writer.write({"__key__": KEY, "jpg": b"x"})
            raise RuntimeError("the worker failed")
    assert list(tmp_path.iterdir()) == []
