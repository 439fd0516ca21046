"""`pipeline browse` without a browser: the shard byte-offset index, and the API's records, filters and pages."""
import json
import os
import shutil
import urllib.error
import urllib.request
import threading

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from annotators.labelmaps import load_label_map
from annotators.weights import made_with_random_weights
from browse_fixtures import NO_CAPTION, NO_SKETCH, packed_landscapes
from pipeline.browse import Dataset, Filters
from pipeline.browse_web import make_server
from pipeline.pack import read_classes, write_classes
from pipeline.cli import main
from shardio.index import index_path, load_index, read_member
from shardio.layout import Layout, classes_path, shard_name
from shardio.shards import keep_only, read_shard, read_stats, shard_writer
from shardio.tarcopy import ShardError

SKY = 156


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return packed_landscapes(tmp_path_factory.mktemp("browse"), short_side=48)


def _write(path, samples):
    with shard_writer(path) as writer:
        for key, members in samples:
            writer.write({"__key__": key, **members})


def test_the_index_reads_every_member_at_its_offset_and_is_cached_beside_the_shard(tmp_path):
    shard = tmp_path / shard_name("train", 0)
    _write(shard, [(f"k{i}", {"jpg": bytes([i]) * (100 + i), "seg.png": b"s" * i, "json": b"{}"}) for i in range(5)])
    entries = load_index(shard, lambda key, read: len(read("jpg")), tag="t1")
    assert [e.key for e in entries] == [key for key, _ in read_shard(shard)]
    for entry, (_, members) in zip(entries, read_shard(shard)):
        assert {ext: read_member(shard, span) for ext, span in entry.members.items()} == members
        assert entry.info == len(members["jpg"])
    cache = index_path(shard)
    assert cache.parent == shard.parent and json.loads(cache.read_text())["shard"] == shard.name
    built = cache.stat().st_mtime_ns
    calls = []
    assert load_index(shard, lambda key, read: calls.append(key), tag="t1") == entries and not calls  # cached
    assert cache.stat().st_mtime_ns == built
    assert [e.info for e in load_index(shard, lambda key, read: key, tag="t2")] == [e.key for e in entries]


def test_the_index_is_rebuilt_when_the_shard_changes_and_goes_with_it(tmp_path):
    shard = tmp_path / shard_name("train", 0)
    _write(shard, [("a", {"jpg": b"1" * 10}), ("b", {"jpg": b"2" * 10})])
    load_index(shard)
    _write(shard, [("b", {"jpg": b"2" * 30}), ("c", {"jpg": b"3" * 7})])
    entries = load_index(shard)
    assert [(e.key, read_member(shard, e.members["jpg"])) for e in entries] == [("b", b"2" * 30), ("c", b"3" * 7)]
    os.utime(shard, ns=(0, 0))  # same size, other mtime: rebuilt too
    assert json.loads(index_path(shard).read_text())["mtime_ns"] != 0
    load_index(shard)
    assert json.loads(index_path(shard).read_text())["mtime_ns"] == 0
    keep_only(tmp_path, set())  # a shard an earlier plan left goes with its index
    assert not index_path(shard).exists() and not shard.exists()


def test_the_index_refuses_members_outside_the_contract(tmp_path):
    import tarfile

    shard = tmp_path / shard_name("train", 0)
    with tarfile.open(shard, "w") as tar:
        tar.addfile(tarfile.TarInfo("../evil.jpg"))
    with pytest.raises(ShardError, match="evil"):
        load_index(shard)


def test_a_page_reads_only_the_shards_it_shows(packed):
    layout, keys, _ = packed
    for index in layout.shards.glob("*.index.json"):  # as if no page had been shown yet
        index.unlink()
    dataset = Dataset(layout)
    page = dataset.page(Filters(), offset=0, limit=2)
    assert page["total"] == 8 and [s["key"] for s in page["samples"]] == keys[:2]
    assert [p.name for p in layout.shards.glob("*.index.json")] == ["train-000000.index.json"]
    page = dataset.page(Filters(), offset=6, limit=50)
    assert [s["key"] for s in page["samples"]] == keys[6:]
    assert sorted(p.name for p in layout.shards.glob("*.index.json")) == ["train-000000.index.json",
                                                                         "train-000002.index.json"]
    pages = [dataset.page(Filters(), offset=o, limit=3)["samples"] for o in range(0, 8, 3)]
    assert [s["key"] for p in pages for s in p] == keys


def _truth(layout):
    """Per key: (classes present with their share of labelled pixels, member extensions), read the slow way."""
    out = {}
    for shard in sorted(layout.shards.glob("*.tar")):
        for key, sample in read_shard(shard):
            labels = cv2.imdecode(np.frombuffer(sample["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
            ids, counts = np.unique(labels[labels != 255], return_counts=True)
            out[key] = (dict(zip(ids.tolist(), (counts / counts.sum()).tolist())), set(sample))
    return out


def test_filters_select_what_the_shards_hold(packed):
    layout, keys, _ = packed
    dataset, truth = Dataset(layout), _truth(layout)

    def keys_of(**kw):
        page = dataset.page(Filters(**kw), 0, 50)
        assert page["total"] == len(page["samples"])
        return [s["key"] for s in page["samples"]]

    with_sky = [k for k in keys if SKY in truth[k][0]]
    assert keys_of(cls=SKY) == with_sky and 0 < len(with_sky) < 8
    big_sky = [k for k in keys if truth[k][0].get(SKY, 0) >= 0.3]
    assert keys_of(cls=SKY, min_share=0.3) == big_sky and len(big_sky) < len(with_sky)
    assert keys_of(missing="sketch") == [keys[NO_SKETCH]]
    assert keys_of(missing="txt") == [keys[NO_CAPTION]]
    assert keys_of(cls=SKY, missing="sketch") == [k for k in with_sky if k == keys[NO_SKETCH]]
    assert keys_of(shard="train-000001.tar") == keys[3:6]
    assert keys_of(split="train", shard="train-000002.tar", cls=SKY) == [k for k in keys[6:] if k in with_sky]
    record = dataset.page(Filters(cls=SKY), 0, 1)["samples"][0]
    assert dict(map(tuple, record["classes"])) == pytest.approx(truth[record["key"]][0], abs=1e-5)
    for bad, what in [(Filters(shard="train-000009.tar"), "train-000009"), (Filters(cls=999), "class 999"),
                      (Filters(missing="depth"), "depth"), (Filters(split="val"), "val"),
                      (Filters(cls=SKY, min_share=2), "min_share")]:
        with pytest.raises(ValueError, match=what):
            dataset.page(bad)


def test_the_index_takes_the_classes_pack_recorded_and_decodes_without_them_or_with_spoilt_ones(packed, tmp_path):
    layout, _, _ = packed
    older = Layout(tmp_path / "data", layout.dataset)
    shutil.copytree(layout.data_dir, older.data_dir)
    shards = sorted(older.shards.glob("*.tar"))
    classes_path(shards[0]).unlink()  # packed before pack recorded them
    stale = {key: [[0, 1]] for key in read_classes(shards[1], read_stats(shards[1])["fingerprint"])}
    write_classes(shards[1], "another packing", stale)  # left by a packing of other inputs: not this shard's
    whole = classes_path(shards[2]).read_bytes()
    classes_path(shards[2]).write_bytes(whole[:len(whole) // 2])  # pack does not sync it: a power loss cut it
    for index in [*layout.shards.glob("*.index.json"), *older.shards.glob("*.index.json")]:
        index.unlink()
    recorded, decoded = Dataset(layout), Dataset(older)
    assert recorded.stats.keys() == decoded.stats.keys()
    for shard in recorded.stats:
        assert recorded.index(shard)[0] == decoded.index(shard)[0]


def test_records_carry_the_json_captions_pictures_and_random_weight_marks(packed):
    layout, keys, _ = packed
    dataset = Dataset(layout)
    records = {s["key"]: s for s in dataset.page(Filters(), 0, 50)["samples"]}
    samples = {key: sample for shard in sorted(layout.shards.glob("*.tar")) for key, sample in read_shard(shard)}
    labels = load_label_map("coco-stuff-182")
    for i, key in enumerate(keys):
        record, sample = records[key], samples[key]
        assert record["json"] == json.loads(sample["json"]) and record["json"]["source"] == f"raw/{i}.jpg"
        assert record["captions"] == (sample["txt"].decode().splitlines() if "txt" in sample else [])
        # the annotator's random segmentation (odd samples) is marked; the provided one (even) is not
        assert record["random_weights"] == (["clip", "seg"] if i % 2 else ["clip"])
        stem = record["media"]["jpg"].split("/")[1]
        assert dataset.media(stem, key, "jpg") == sample["jpg"]
        assert ("sketch.png" in record["media"]) == (i != NO_SKETCH)
        overlay = cv2.imdecode(np.frombuffer(dataset.media(stem, key, "seg-overlay.png"), np.uint8),
                               cv2.IMREAD_UNCHANGED)
        seg = cv2.imdecode(np.frombuffer(sample["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == (*seg.shape, 4)
        assert np.array_equal(overlay[..., 2::-1], labels.colourise(seg)) and (overlay[..., 3] == 255).all()
    meta = dataset.meta()
    assert {n: a["random_weights"] for n, a in meta["annotators"].items()} == {"clip": True, "seg": True,
                                                                               "sketch": False}
    assert meta["rejects"] == {"duplicate": 1, "too_small": 1, "undecodable": 1}
    assert dataset.rejects("too_small")["rows"] == [{"source": "raw/tiny.png", "reason": "too_small", "detail": "12x9"}]
    with pytest.raises(KeyError):
        dataset.media(stem, key, "json")  # only pictures are served


def test_random_weights_are_found_wherever_the_metadata_records_them():
    assert made_with_random_weights({"weights": "random", "sha256": "random"})
    assert made_with_random_weights({"model": "hed", "sha256": "a" * 64, "simplify": {"weights": "random"}})
    assert not made_with_random_weights({"model": "hed", "weights": "hed-bsds500", "sha256": "a" * 64, "simplify": None})
    assert not made_with_random_weights(None)


def test_the_server_answers_the_api_and_says_what_is_wrong(packed):
    layout, keys, _ = packed
    server = make_server(Dataset(layout), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = json.load(urllib.request.urlopen(f"{base}/api/samples?class={SKY}&limit=2"))
        assert len(page["samples"]) == 2 and all(SKY in dict(map(tuple, s["classes"])) for s in page["samples"])
        jpg = urllib.request.urlopen(f"{base}/{page['samples'][0]['media']['jpg']}")
        assert jpg.headers["Content-Type"] == "image/jpeg" and jpg.read()[:2] == b"\xff\xd8"
        assert b"<html" in urllib.request.urlopen(f"{base}/").read()
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(f"{base}/api/samples?class=sky")
        assert bad.value.code == 400 and "class='sky'" in json.load(bad.value)["error"]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/media/train-000000/nokey.jpg")
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_browse_out_writes_a_static_site_that_needs_no_server(packed, tmp_path):
    layout, keys, args = packed
    result = CliRunner().invoke(main, ["browse", *args, "--out", str(tmp_path / "site"), "--no-progress"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "site" / "data.js").read_text().removeprefix("window.BROWSE_DATA = ")[:-2])
    assert [s["key"] for s in data["samples"]] == keys and len(data["rejects"]) == 3
    for sample in data["samples"]:
        for url in sample["media"].values():
            assert (tmp_path / "site" / url).stat().st_size > 0
    assert b"://" not in (tmp_path / "site" / "index.html").read_bytes()  # nothing fetched from elsewhere


def test_browse_before_pack_says_what_to_run(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(open("params.yaml").read())
    result = CliRunner().invoke(main, ["browse", "--dataset", "sample", "--params", str(params),
                                       "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "site")])
    assert result.exit_code != 0 and "pipeline pack" in result.output
