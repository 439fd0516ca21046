"""Ingest end to end on a folder of good and bad files: rejects with reasons, duplicates, split, shards,
manifest, byte-identical reruns that skip finished shards, and the CLI on the built-in sample."""
import hashlib
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from ingest_fixtures import (LIMITS, bomb_png, cmyk_jpeg, encode, exif_rotated_jpeg, folder_source, gray_jpeg,
                             jpeg, outputs, palette_png_with_transparency, params_file, picture, png16, read_table,
                             write)

from pipeline.cli import main
from pipeline.ingest import ingest
from shardio.layout import Layout
from shardio.shards import read_shard

GOOD = {
    "a.jpg": jpeg(80, 60, seed=1),
    "b.PNG": encode(picture(70, 50, seed=2), "PNG"),
    "nested/c.jpeg": jpeg(120, 90, seed=3),
    "cmyk.jpg": cmyk_jpeg(),
    "deep.png": png16(),
    "palette.png": palette_png_with_transparency(),
    "rotated.jpg": exif_rotated_jpeg(6),
    "gray.jpg": gray_jpeg(),
    "big.webp": encode(picture(300, 200, seed=4), "WEBP", quality=90),
    "e.tif": encode(picture(64, 64, seed=5), "TIFF"),
}
BAD = {
    "truncated.jpg": (jpeg(80, 60, seed=9)[:700], "undecodable"),
    "empty.jpg": (b"", "empty"),
    "text.jpg": (b"not a picture at all\n", "not_an_image"),
    "tiny.png": (encode(picture(16, 16), "PNG"), "too_small"),
    "bomb.png": (bomb_png(), "too_large"),
    "wide.jpg": (jpeg(400, 40), "aspect"),
    "copy of a.JPG": (GOOD["a.jpg"], "duplicate"),
    "nested/again/a.jpg": (GOOD["a.jpg"], "duplicate"),
}


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    for name, data in GOOD.items():
        write(root / name, data)
    for name, (data, _) in BAD.items():
        write(root / name, data)
    write(root / "notes.txt", b"not listed: not an image suffix")
    write(root / ".hidden" / "x.jpg", jpeg(seed=7))
    return root


def run(tmp_path, raw, limits=LIMITS, test_size=0.3, workers=2, data="data"):
    layout = Layout(tmp_path / data, "demo")
    summary = ingest(layout, limits, folder_source(raw), test_size, workers=workers, progress=False)
    return layout, summary


def test_every_bad_file_is_rejected_with_its_reason_and_the_rest_is_ingested(tmp_path, raw):
    layout, summary = run(tmp_path, raw)
    rejects = {row["source"]: row for row in read_table(layout.rejects)}
    assert {source: row["reason"] for source, row in rejects.items()} == {k: r for k, (_, r) in BAD.items()}
    # the first name (sorted) keeps the key; every duplicate names it
    assert rejects["nested/again/a.jpg"]["detail"] == rejects["copy of a.JPG"]["detail"] == "a.jpg"
    manifest = read_table(layout.manifest)
    assert sorted(row["source"] for row in manifest) == sorted(GOOD)
    assert sum(summary.accepted.values()) == len(GOOD) and summary.duplicates == 2
    assert summary.rejected == {"undecodable": 1, "empty": 1, "not_an_image": 1, "too_small": 1, "too_large": 1,
                                "aspect": 1}
    assert "10 accepted" in summary.line() and "2 duplicates" in summary.line()


def test_manifest_split_and_shards_follow_the_contract(tmp_path, raw):
    layout, _ = run(tmp_path, raw)
    manifest = read_table(layout.manifest)
    assert [row["key"] for row in manifest] == sorted(row["key"] for row in manifest)
    by_source = {row["source"]: row for row in manifest}
    for name, data in GOOD.items():
        row = by_source[name]
        assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["key"] == row["sha256"][:24]
        assert row["provided"] == []
    assert sum(row["split"] == "test" for row in manifest) == 3          # test_size 0.3 of 10
    assert by_source["big.webp"]["width"] == 144 and by_source["big.webp"]["height"] == 96
    assert (by_source["rotated.jpg"]["width"], by_source["rotated.jpg"]["height"]) == (40, 80)
    shards = sorted(p.name for p in layout.images.glob("*.tar"))
    assert shards == ["test-000000.tar", "train-000000.tar", "train-000001.tar"]
    for shard in shards:
        samples = list(read_shard(layout.images / shard))
        rows = [row for row in manifest if row["shard"] == shard]
        assert [key for key, _ in samples] == [row["key"] for row in rows]  # shard order = key order
        for (key, sample), row in zip(samples, rows):
            assert set(sample) == {"jpg", "json"}
            meta = json.loads(sample["json"])
            assert meta == {"key": key, "source": row["source"], "width": row["width"], "height": row["height"],
                            "split": row["split"], "provided": []}
        stats = json.loads((layout.images / shard).with_suffix(".stats.json").read_text())
        assert stats["count"] == len(rows) and len(stats["fingerprint"]) == 16
    original = next(s for k, s in read_shard(layout.images / by_source["a.jpg"]["shard"])
                    if k == by_source["a.jpg"]["key"])
    assert original["jpg"] == GOOD["a.jpg"]                            # RGB JPEG within limits: kept as is


@pytest.mark.parametrize("test_size, expected", [(0.3, 3), (0.5, 5), (2, 2), (9, 9)])
def test_test_size_is_a_fraction_or_a_count_of_the_smallest_keys(tmp_path, test_size, expected):
    for name, data in GOOD.items():
        write(tmp_path / "good" / name, data)
    layout, summary = run(tmp_path, tmp_path / "good", test_size=test_size, workers=1)
    assert summary.accepted["test"] == expected and sum(summary.accepted.values()) == 10
    keys = sorted(row["key"] for row in read_table(layout.manifest))
    assert sorted(row["key"] for row in read_table(layout.manifest) if row["split"] == "test") == keys[:expected]


def test_split_and_shards_depend_on_content_not_on_names_or_worker_count(tmp_path, raw):
    first, _ = run(tmp_path, raw, workers=2, data="one")
    renamed = tmp_path / "renamed"
    for name, data in reversed(GOOD.items()):
        write(renamed / f"other-{name.replace('/', '-')}", data)
    second, _ = run(tmp_path, renamed, workers=1, data="two")

    def keys_by_shard(layout):
        return {p.name: [key for key, _ in read_shard(p)] for p in sorted(layout.images.glob("*.tar"))}
    assert keys_by_shard(first) == keys_by_shard(second)
    assert {row["key"]: row["split"] for row in read_table(first.manifest)} == {
        row["key"]: row["split"] for row in read_table(second.manifest)}


def test_a_rerun_is_byte_identical_and_redoes_only_shards_without_a_marker(tmp_path, raw):
    layout, first = run(tmp_path, raw)
    before = outputs(layout)
    stamps = {p.name: p.stat().st_mtime_ns for p in layout.images.iterdir()}
    _, again = run(tmp_path, raw, workers=1)
    assert again.written == 0 and outputs(layout) == before
    assert {p.name: p.stat().st_mtime_ns for p in layout.images.iterdir()} == stamps
    (layout.images / "train-000001.stats.json").unlink()
    (layout.images / "train-000001.tar").write_bytes(b"half a shard")
    _, redo = run(tmp_path, raw)
    assert redo.written == 1 and outputs(layout) == before
    assert (layout.images / "train-000000.tar").stat().st_mtime_ns == stamps["train-000000.tar"]


def test_other_params_redo_the_shards_and_drop_shards_the_plan_no_longer_has(tmp_path, raw):
    layout, _ = run(tmp_path, raw)
    write(layout.images / ".train-000000.tar.tmp-99999", b"left by a killed run")
    write(layout.root / ".manifest.parquet.tmp-99999", b"left by a killed run")
    _, summary = run(tmp_path, raw, limits=LIMITS.model_copy(update={"jpeg_quality": 70, "shard_size": 100}))
    assert summary.written == summary.shards == 2
    assert sorted(p.name for p in layout.images.iterdir()) == [
        "test-000000.stats.json", "test-000000.tar", "train-000000.stats.json", "train-000000.tar"]
    assert sorted(p.name for p in layout.root.iterdir()) == ["images", "manifest.parquet", "rejects.parquet"]


def test_cli_ingests_the_built_in_sample(tmp_path):
    common = ["--params", str(params_file(tmp_path, {"max_short_side": 128})), "--data-dir", str(tmp_path / "d")]
    runner = CliRunner()
    assert runner.invoke(main, ["sample", *common]).exit_code == 0
    result = runner.invoke(main, ["ingest", "--dataset", "sample", "--no-progress", "--workers", "2", *common])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ingest sample: 11 accepted (") and "0 rejected (none)" in result.output
    manifest = read_table(tmp_path / "d/sample/manifest.parquet")
    provided = {row["source"]: row["provided"] for row in manifest}
    assert provided["images/landscape-000.jpg"] == ["seg", "txt"] and provided["images/photo-china.jpg"] == []
    row = next(r for r in manifest if r["source"] == "images/landscape-000.jpg")
    key, sample = next((k, s) for k, s in read_shard(tmp_path / "d/sample/images" / row["shard"]) if k == row["key"])
    seg = np.asarray(Image.open(io.BytesIO(sample["seg.png"])))
    assert seg.shape == (row["height"], row["width"]) and min(seg.shape) == 128 and seg.dtype == np.uint8
    assert sample["txt"].decode() == (tmp_path / "d/raw/sample/captions/landscape-000.txt").read_text().strip()


def test_cli_source_override_and_a_missing_source(tmp_path, raw):
    runner = CliRunner()
    common = ["--dataset", "sample", "--data-dir", str(tmp_path / "d"), "--params",
              str(params_file(tmp_path, {"min_size": 32})), "--no-progress", "--workers", "1"]
    result = runner.invoke(main, ["ingest", *common, "--source", str(raw), "--kind", "folder"])
    assert result.exit_code == 0, result.output
    assert "10 accepted" in result.output and "2 duplicates" in result.output
    result = runner.invoke(main, ["ingest", *common, "--source", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "nowhere" in result.output and "images/" in result.output


def test_a_file_larger_than_any_allowed_image_is_rejected_unread(tmp_path):
    write(tmp_path / "huge" / "huge.jpg", b"\xff" * (8 * 2000 + 2**20 + 1))
    write(tmp_path / "huge" / "ok.jpg", jpeg(40, 36))
    layout, _ = run(tmp_path, tmp_path / "huge", limits=LIMITS.model_copy(update={"max_pixels": 2000}))
    assert [(r["source"], r["reason"]) for r in read_table(layout.rejects)] == [("huge.jpg", "too_large")]
    assert [row["source"] for row in read_table(layout.manifest)] == ["ok.jpg"]


def test_a_test_size_above_one_must_be_a_whole_count():
    from pydantic import ValidationError

    from pipeline.params.datasets import DatasetProfile
    source = {"kind": "folder", "path": "raw/x"}
    assert DatasetProfile(source=source, test_size=50000).test_size == 50000
    with pytest.raises(ValidationError, match="neither a fraction"):
        DatasetProfile(source=source, test_size=2.5)


def test_changed_captions_or_labels_redo_only_their_shard(tmp_path):
    params = params_file(tmp_path, {"shard_size": 4, "min_size": 32}, landscapes=6)
    common = ["--params", str(params), "--data-dir", str(tmp_path / "d")]
    runner = CliRunner()
    assert runner.invoke(main, ["sample", *common]).exit_code == 0
    ingest_command = ["ingest", "--no-progress", "--workers", "1", *common]
    assert runner.invoke(main, ingest_command).exit_code == 0
    layout = Layout(tmp_path / "d", "sample")
    row = next(r for r in read_table(layout.manifest) if r["source"] == "images/landscape-002.jpg")
    (tmp_path / "d/raw/sample/captions/landscape-002.txt").write_text("a new caption\n")
    result = runner.invoke(main, ingest_command)
    assert "(1 written" in result.output, result.output
    assert dict(read_shard(layout.images / row["shard"]))[row["key"]]["txt"] == b"a new caption"
