"""Each source kind on a tiny tree in its public layout: COCO (captions, COCO-Stuff maps, own split),
CelebAMask-HQ / MM-CelebA-HQ (merged part masks, text, 24,000 / 6,000 split), WebDataset tars (checked member
names), and image lists."""
import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_fixtures import LIMITS, celeba_tree, coco_tree, encode, jpeg, labels_png, picture, read_table, write
from PIL import Image

from annotators.labelmaps import load_label_map
from pipeline.ingest import INGEST_VERSION, ingest
from shardio.layout import Layout
from pipeline.params.datasets import SourceParams
from shardio.shards import class_counts, read_shard, read_stats, write_stats
from pipeline.sources import SourceError


def run(tmp_path, kind, path, test_size=0.5):
    layout = Layout(tmp_path / "data", kind)
    summary = ingest(layout, LIMITS, SourceParams(kind=kind, path=path), test_size, workers=1, progress=False)
    samples = {}
    for shard in sorted(layout.images.glob("*.tar")):
        samples.update(read_shard(shard))
    rows = {row["source"]: row for row in read_table(layout.manifest)}
    return layout, summary, rows, samples


def labels_of(sample) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample["seg.png"])))


def test_coco_keeps_its_split_captions_and_stuff_maps(tmp_path):
    coco_tree(tmp_path / "data/raw/coco")
    _, summary, rows, samples = run(tmp_path, "coco", "raw/coco", test_size=0.9)
    assert {source: row["split"] for source, row in rows.items()} == {
        "train2017/000000000009.jpg": "train", "train2017/000000000025.jpg": "train",
        "val2017/000000000139.jpg": "test"}
    row = rows["train2017/000000000009.jpg"]
    assert row["provided"] == ["seg", "txt"]
    sample = samples[row["key"]]
    # at most 5 captions, in annotation-id order, whitespace tidied
    assert sample["txt"].decode().splitlines() == [f"caption {c} of image 9" for c in (5, 4, 3, 2, 1)]
    labels = labels_of(sample)
    assert labels.shape == (80, 120) and set(np.unique(labels)) == {0, 156}
    assert load_label_map("coco-stuff-182").names[156] == "sky-other"


def test_a_manifest_longer_than_a_row_group_is_every_sample_in_key_order_across_splits(tmp_path, monkeypatch):
    # the manifest is written a row group at a time, merging the splits' key-ordered shards: here 3 row groups of
    # 1 row, and COCO's own val split among the train keys
    monkeypatch.setattr("pipeline.ingest.MANIFEST_ROWS", 1)
    coco_tree(tmp_path / "data/raw/coco")
    layout, summary, rows, samples = run(tmp_path, "coco", "raw/coco", test_size=0.9)
    keys = [row["key"] for row in read_table(layout.manifest)]
    assert keys == sorted(samples) and len(keys) == 3 == sum(summary.accepted.values())
    assert pq.ParquetFile(layout.manifest).num_row_groups == 3
    assert summary.accepted == {"train": 2, "test": 1}


def test_provided_label_maps_have_their_class_counts_in_the_shard_stats(tmp_path, monkeypatch):
    coco_tree(tmp_path / "data/raw/coco")
    layout, _, rows, samples = run(tmp_path, "coco", "raw/coco", test_size=0.9)
    shards = sorted(layout.images.glob("*.tar"))
    recorded = {key: counts for shard in shards for key, counts in read_stats(shard)["seg_classes"].items()}
    assert recorded == {key: class_counts(labels_of(sample)) for key, sample in samples.items()} != {}
    stats = {shard: read_stats(shard) for shard in shards}
    # shards of the ingest before this version, whose markers held no class counts, are written again on a rerun
    with monkeypatch.context() as older:
        older.setattr("pipeline.ingest.INGEST_VERSION", INGEST_VERSION - 1)
        assert run(tmp_path, "coco", "raw/coco", test_size=0.9)[1].written == len(shards)
    for shard in shards:
        write_stats(shard, {k: v for k, v in read_stats(shard).items() if k not in ("seg_classes", "bytes")})
    _, summary, _, _ = run(tmp_path, "coco", "raw/coco", test_size=0.9)
    assert summary.written == len(shards) and {shard: read_stats(shard) for shard in shards} == stats


def test_coco_without_its_captions_file_is_a_clear_error(tmp_path):
    coco_tree(tmp_path / "data/raw/coco")
    (tmp_path / "data/raw/coco/annotations/captions_val2017.json").unlink()
    with pytest.raises(SourceError, match="captions_val2017.json"):
        run(tmp_path, "coco", "raw/coco")


def test_a_coco_image_without_its_stuff_map_is_rejected_not_fatal(tmp_path):
    coco_tree(tmp_path / "data/raw/coco")
    (tmp_path / "data/raw/coco/stuffthingmaps_trainval2017/train2017/000000000025.png").unlink()
    layout, summary, rows, _ = run(tmp_path, "coco", "raw/coco")
    assert [(r["source"], r["reason"]) for r in read_table(layout.rejects)] == [
        ("train2017/000000000025.jpg", "bad_seg")]
    assert len(rows) == 2


def test_celebamask_parts_merge_into_the_19_class_map_with_the_standard_split(tmp_path):
    celeba_tree(tmp_path / "data/raw/celeba", indices=(0, 1, 23999, 24000))
    _, _, rows, samples = run(tmp_path, "mm-celeba-hq", "raw/celeba")
    assert {source: row["split"] for source, row in rows.items()} == {
        "CelebA-HQ-img/0.jpg": "train", "CelebA-HQ-img/1.jpg": "train", "CelebA-HQ-img/23999.jpg": "train",
        "CelebA-HQ-img/24000.jpg": "test"}
    sample = samples[rows["CelebA-HQ-img/24000.jpg"]["key"]]
    labels = labels_of(sample)
    assert labels.shape == (96, 96)                       # the 128-px image stored at 96; masks follow (nearest)
    names = load_label_map("celebamask-hq-19").names
    hair, skin = names.index("hair"), names.index("skin")
    assert (hair, skin) == (13, 1)
    assert set(np.unique(labels)) == {0, skin, hair}
    assert (labels[:28] == hair).all()                    # hair is painted after skin and wins where they overlap
    assert labels[60, 48] == skin and labels[90, 48] == 0
    assert sample["txt"].decode().splitlines() == ["face 24000 smiles.", "face 24000 has hair."]
    assert json.loads(sample["json"])["provided"] == ["seg", "txt"]


def tar_with(path, members):
    """A tar whose members are (name, bytes) files, or (name, None) symbolic links / ('dir/', None) folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name.rstrip("/"))
            if data is None:
                info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_webdataset_tars_are_read_with_checked_member_names(tmp_path):
    labels = np.zeros((60, 80), np.uint8)
    labels[30:] = 3
    first, second = jpeg(80, 60, seed=1), encode(picture(64, 64, seed=2), "PNG")
    tar_with(tmp_path / "data/raw/wds/part-0.tar", [
        ("000.jpg", first), ("000.seg.png", labels_png(labels)), ("000.txt", b"a caption\n"),
        ("../evil.jpg", jpeg(seed=3)), ("link.jpg", None), ("folder/", None),
        ("001.png", second), ("001.json", b"{}"), ("/etc/abs.jpg", jpeg(seed=4)), ("a/../b.jpg", jpeg(seed=5)),
    ])
    tar_with(tmp_path / "data/raw/wds/part-1.tar", [("002.jpg", first), ("003.json", b"{}"),
                                                    ("./004.jpg", jpeg(seed=6)), ("sub/005.jpg", jpeg(seed=7))])
    layout, summary, rows, samples = run(tmp_path, "webdataset", "raw/wds/part-{0..2}.tar")
    assert sorted(rows) == ["part-0.tar:000", "part-0.tar:001", "part-1.tar:004", "part-1.tar:sub/005"]
    sample = samples[rows["part-0.tar:000"]["key"]]
    assert sample["jpg"] == first and sample["txt"] == b"a caption"
    assert (labels_of(sample) == labels).all()
    assert rows["part-0.tar:001"]["provided"] == []
    assert {(r["source"], r["reason"]) for r in read_table(layout.rejects)} == {
        ("part-0.tar:../evil.jpg", "bad_member"), ("part-0.tar:link.jpg", "bad_member"),
        ("part-0.tar:folder", "bad_member"), ("part-0.tar:/etc/abs.jpg", "bad_member"),
        ("part-0.tar:a/../b.jpg", "bad_member"), ("part-1.tar:002", "duplicate"), ("part-1.tar:003", "no_image"),
        ("part-2.tar", "missing")}


def test_a_truncated_tar_keeps_the_samples_before_the_damage(tmp_path):
    good = [(f"{i:03d}.jpg", jpeg(80, 60, seed=i)) for i in range(3)]
    whole = tmp_path / "whole.tar"
    tar_with(whole, good)
    cut = whole.read_bytes()[: 512 * 2 + len(good[0][1]) + 600]
    write(tmp_path / "data/raw/cut.tar", cut)
    layout, _, rows, _ = run(tmp_path, "webdataset", "raw/cut.tar")
    assert list(rows) == ["cut.tar:000"]
    assert [(r["source"], r["reason"]) for r in read_table(layout.rejects)] == [
        ("cut.tar", "unreadable"), ("cut.tar:001", "unreadable")]  # the tar's end, and the member cut short


@pytest.mark.parametrize("fmt", ["txt", "csv", "parquet"])
def test_an_image_list_names_files_relative_to_itself_or_absolute(tmp_path, fmt):
    write(tmp_path / "data/raw/imgs/a.jpg", jpeg(seed=1))
    elsewhere = write(tmp_path / "elsewhere/b.png", encode(picture(64, 64, seed=2), "PNG"))
    paths = ["imgs/a.jpg", str(elsewhere), "imgs/missing.jpg"]
    listing = tmp_path / f"data/raw/list.{fmt}"
    if fmt == "txt":
        listing.write_text("# images to use\n" + "\n".join(paths) + "\n\n")
    elif fmt == "csv":
        listing.write_text("path,label\n" + "".join(f"{p},x\n" for p in paths))
    else:
        pq.write_table(pa.table({"path": paths}), listing)
    layout, _, rows, _ = run(tmp_path, "list", f"raw/list.{fmt}")
    assert sorted(rows) == sorted(paths[:2])
    assert [(r["source"], r["reason"]) for r in read_table(layout.rejects)] == [("imgs/missing.jpg", "missing")]


def test_a_list_without_a_path_column_is_a_clear_error(tmp_path):
    write(tmp_path / "data/raw/list.csv", b"file\na.jpg\n")
    with pytest.raises(SourceError, match="`path` column"):
        run(tmp_path, "list", "raw/list.csv")
