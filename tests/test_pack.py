"""`pipeline pack` and the dataset card: training shards join image and annotation shards byte for byte."""
import io
import json
import random
import tarfile

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import webdataset as wds
import yaml
from PIL import Image, JpegImagePlugin, PngImagePlugin
from click.testing import CliRunner
from ray.cluster_utils import Cluster

from image_shards import DIM, META, write_annotations, write_image_shards
from ingest_fixtures import encode, picture, write
from pipeline.annotate import CODE_VERSION, plan as annotate_plan, shard_fingerprint
from pipeline.cli import main
from pipeline.pack import read_classes
from pipeline.params import load_params
from shardio.layout import Layout, shard_name
from shardio.shards import class_counts, read_shard, read_stats, shard_writer, write_stats
from shardio.tarcopy import ShardError
from train.data import make_example


@pytest.fixture
def dataset(tmp_path):
    """Data dir with 3 image shards (7 samples) annotated by seg, sketch (one key failed) and clip."""
    layout = Layout(tmp_path / "data", "sample")
    keys = write_image_shards(layout, [3, 3, 1])
    write_annotations(layout, "seg")
    write_annotations(layout, "sketch", skip={keys[4]})
    write_annotations(layout, "clip")
    params = yaml.safe_load(open("params.yaml"))
    params["pack"]["workers"] = 1  # one process: starting a pool costs more than these tiny shards
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    return layout, keys, params_file


def _pack(layout, params_file, *args):
    result = CliRunner().invoke(main, ["pack", "--dataset", "sample", "--params", str(params_file),
                                       "--data-dir", str(layout.data_dir), "--no-progress", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_training_shards_follow_the_contract(dataset):
    layout, keys, params_file = dataset
    output = _pack(layout, params_file)
    assert "sketch 1" in output  # the failed sketch is kept as a sample without sketch, and counted
    urls = [str(layout.shards / shard_name("train", i)) for i in range(3)]
    decoded = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert [s["__key__"] for s in decoded] == keys
    for sample in decoded:
        info = sample["json"]
        assert set(info) >= {"key", "source", "size", "split", "label_map", "annotators"}
        assert info["key"] == sample["__key__"] and info["size"] == [40, 32] and info["split"] == "train"
        assert info["label_map"] == "coco-stuff-182" and info["text"] == "captions"
        picture = {ext: Image.open(io.BytesIO(sample[ext]))
                   for ext in ("jpg", "seg.png", "sketch.png") if ext in sample}
        assert picture["jpg"].format == "JPEG" and picture["jpg"].mode == "RGB" and picture["jpg"].size == (40, 32)
        for ext in ("seg.png", "sketch.png"):  # uint8 single channel at the image's size, lossless
            if ext in picture:
                assert picture[ext].format == "PNG" and picture[ext].mode == "L" and picture[ext].size == (40, 32)
        assert sample["clip.npy"].dtype == np.float16 and sample["clip.npy"].shape == (DIM,)
        assert abs(np.linalg.norm(sample["clip.npy"].astype(np.float32)) - 1) < 1e-2
        for name in ("seg", "clip") if "seg" not in info["provided"] else ("clip",):
            assert info["annotators"][name] == META[name]
        if "txt" in sample:
            assert sample["clip_text.npy"].dtype == np.float16
            assert sample["clip_text.npy"].shape == (len(sample["txt"].splitlines()), DIM)
        has_sketch = sample["__key__"] != keys[4]
        assert ("sketch.png" in sample) == has_sketch and ("sketch" in info["annotators"]) == has_sketch


def test_member_bytes_are_copied_not_reencoded(dataset):
    layout, keys, params_file = dataset
    _pack(layout, params_file)
    sources = {}
    for folder in ("images", "seg", "sketch", "clip"):
        for path in sorted((layout.root / folder).glob("*.tar")):
            for key, sample in read_shard(path):
                sources.update({(key, ext): data for ext, data in sample.items() if ext != "json"})
    with tarfile.open(layout.shards / shard_name("train", 0)) as tar:
        names = tar.getnames()
        members = {tuple(n.split(".", 1)): tar.extractfile(n).read() for n in names}
        assert all(m.isfile() and m.mtime == 0 for m in tar.getmembers())
    assert len(names) == len(set(names))
    copied = {k: v for k, v in members.items() if k[1] != "json"}
    assert copied and all(sources[k] == v for k, v in copied.items())
    assert ("000000000000000000000000", "seg.png") in copied  # provided segmentation, from the image shard


def test_card_counts_and_rerun_skips_packed_shards(dataset):
    layout, keys, params_file = dataset
    rejects = [("a.jpg", "too_small", ""), ("b.jpg", "undecodable", "truncated"), ("c.jpg", "too_small", "")]
    columns = dict(zip(("source", "reason", "detail"), map(list, zip(*rejects))))
    pq.write_table(pa.table(columns), layout.rejects)
    _pack(layout, params_file)
    card = json.loads(layout.card_json.read_text())
    assert card["samples"] == 7 and card["splits"] == {"train": 7}
    assert card["coverage"]["sketch"] == {"samples": 6, "missing": 1, "fraction": 6 / 7}
    assert card["coverage"]["txt"]["samples"] == 3 and card["coverage"]["seg"]["missing"] == 0
    names = {c["name"]: c for c in card["classes"]}
    # class 0: a quarter of each provided map (samples 0, 3, 6) and all of pseudo-labelled sample 5
    assert names["person"]["images"] == 4 and names["person"]["pixels"] == 3 * 16 * 20 + 32 * 40
    assert card["ignored_pixels"] == 3 * 16 * 20
    assert sum(c["pixel_share"] for c in card["classes"]) == pytest.approx(1)  # of labelled pixels, as charted
    assert card["annotators"] == META
    assert card["rejects"] == {"too_small": 2, "undecodable": 1}
    assert "| sketch | 6 | 1 |" in layout.card_md.read_text()
    before = {p.name: p.read_bytes() for p in layout.shards.glob("*")}
    stats_before = read_stats(layout.shards / shard_name("train", 1))
    assert "3 already done" in _pack(layout, params_file)
    assert read_stats(layout.shards / shard_name("train", 1)) == stats_before
    (layout.shards / "train-000001.classes.json").unlink()  # packed before pack wrote class counts: packed again
    assert "1 shard(s) packed, 2 already done" in _pack(layout, params_file)
    assert {p.name: p.read_bytes() for p in layout.shards.glob("*")} == before
    write_annotations(layout, "clip", fp="fp2")  # annotations redone under other params: every shard repacked
    assert "3 shard(s) packed" in _pack(layout, params_file)
    assert {p.name: p.read_bytes() for p in layout.shards.glob("*.tar")} == {
        k: v for k, v in before.items() if k.endswith(".tar")}


def test_the_device_and_precision_of_each_annotation_shard_reach_its_samples_and_the_card(dataset):
    layout, keys, params_file = dataset
    gpu = {"device": "cuda", "gpu": "NVIDIA A100-SXM4-80GB", "precision": "fp16"}
    write_annotations(layout, "seg", worker={"node": "n1", "actor": "a1", **gpu})
    write_annotations(layout, "clip", worker={"node": "n2", "actor": "a2", "device": "cpu", "precision": "fp32"})
    _pack(layout, params_file)  # sketch: shards annotated before the device was recorded
    for key, sample in (item for p in sorted(layout.shards.glob("*.tar")) for item in read_shard(p)):
        annotators = json.loads(sample["json"])["annotators"]
        assert annotators["clip"] == {**META["clip"], "computed_on": {"device": "cpu", "precision": "fp32"}}
        assert "seg" not in annotators or annotators["seg"] == {**META["seg"], "computed_on": gpu}
        assert "sketch" not in annotators or annotators["sketch"] == META["sketch"]
    card = json.loads(layout.card_json.read_text())
    assert card["annotators"] == META  # what made the outputs, as before; where they were made, per shard:
    assert card["computed_on"] == {"clip": {"cpu fp32": 3}, "seg": {"cuda NVIDIA A100-SXM4-80GB fp16": 3}}
    assert "| seg | `" in layout.card_md.read_text() and "| cuda NVIDIA A100-SXM4-80GB fp16: 3 |" in (
        layout.card_md.read_text())


def test_a_profile_with_text_image_trains_on_the_image_embedding_even_where_captions_exist(dataset):
    layout, keys, params_file = dataset
    _pack(layout, params_file)
    params = yaml.safe_load(params_file.read_text())
    params["datasets"]["sample"]["text"] = "image"
    params_file.write_text(yaml.safe_dump(params))
    assert "3 shard(s) packed" in _pack(layout, params_file)
    captioned = [s for p in sorted(layout.shards.glob("*.tar")) for _, s in read_shard(p) if "clip_text.npy" in s]
    assert len(captioned) == 3
    for sample in captioned:
        image_embedding = np.load(io.BytesIO(sample["clip.npy"]))
        for seed in range(4):
            assert make_example(sample, 16, 182, random.Random(seed))["text"].tolist() == image_embedding.tolist()


def test_parallel_packing_writes_the_same_bytes(dataset):
    layout, keys, params_file = dataset
    _pack(layout, params_file)
    single = {p.name: p.read_bytes() for p in layout.shards.glob("*.tar")}
    for path in layout.shards.glob("*"):
        path.unlink()
    params = yaml.safe_load(params_file.read_text())
    params["pack"]["workers"] = 2
    params_file.write_text(yaml.safe_dump(params))
    assert "3 shard(s) packed" in _pack(layout, params_file)
    assert {p.name: p.read_bytes() for p in layout.shards.glob("*.tar")} == single


def test_misaligned_or_missing_annotations_fail_clearly(dataset):
    layout, keys, params_file = dataset
    bad = layout.annotations("sketch") / shard_name("train", 1)
    with shard_writer(bad) as writer:
        writer.write({"__key__": "ffffffffffffffffffffffff", "sketch.png": b"x"})
    with pytest.raises(ShardError, match="not in the image shard"):
        from pipeline.pack import run
        params = load_params(params_file).for_dataset("sample")
        run(layout, params, params.profile("sample"), progress=False)
    (layout.annotations("clip") / shard_name("train", 2)).with_suffix(".stats.json").unlink()
    result = CliRunner().invoke(main, ["pack", "--dataset", "sample", "--params", str(params_file),
                                       "--data-dir", str(layout.data_dir)])
    assert result.exit_code != 0 and "clip/train-000002.tar" in result.output and "pipeline annotate" in result.output


def test_pack_removes_what_killed_runs_and_earlier_plans_left(dataset):
    layout, keys, params_file = dataset
    _pack(layout, params_file)
    current = sorted(p.name for p in layout.shards.iterdir())
    (layout.shards / ".train-000001.tar.tmp-4242").write_bytes(b"half a shard")  # a killed pack's
    for suffix in (".tar", ".classes.json", ".stats.json"):  # a finished shard that an earlier, longer plan made
        (layout.shards / f"train-000007{suffix}").write_bytes((layout.shards / f"train-000000{suffix}").read_bytes())
    assert "3 already done" in _pack(layout, params_file)
    assert sorted(p.name for p in layout.shards.iterdir()) == current
    assert json.loads(layout.card_json.read_text())["samples"] == 7


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "--no-progress"])
    return result.exit_code, result.output


def test_pack_refuses_annotations_made_from_images_ingested_since(tmp_path):
    for i in range(4):
        write(tmp_path / "raw" / f"{i}.png", encode(picture(96, 80, seed=i), "PNG"))
    params = yaml.safe_load(open("params.yaml"))
    params["datasets"]["mine"] = {"source": {"kind": "folder", "path": str(tmp_path / "raw")}, "test_size": 0.01,
                                  "annotate": ["sketch", "clip"], "overrides": {"ingest.min_size": 16}}
    params["pack"]["workers"] = 1
    layout = Layout(tmp_path / "data", "mine")
    common = ["--dataset", "mine", "--params", str(tmp_path / "params.yaml"), "--data-dir", str(layout.data_dir)]

    def ingest(max_short_side: int) -> None:
        params["ingest"]["max_short_side"] = max_short_side
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        assert _cli("ingest", *common, "--workers", "1")[0] == 0

    ingest(64)
    for name in ("sketch", "clip"):
        write_annotations(layout, name)
    assert _cli("pack", *common)[0] == 0
    packed = {p.name: p.read_bytes() for p in layout.shards.iterdir()}
    ingest(48)  # new JPEGs of another size under the same shard names and keys; the annotations are the old ones
    code, output = _cli("pack", *common)
    assert code != 0
    assert "sketch/train-000000.tar" in output and "pipeline annotate --only sketch --dataset mine" in output
    assert {p.name: p.read_bytes() for p in layout.shards.iterdir()} == packed  # nothing lost


def _decoded_class_counts(shards) -> tuple[np.ndarray, np.ndarray]:
    """Class pixel and image counts the way pack made them before ingest and annotate recorded them: by decoding
    every seg.png of the training shards."""
    pixels, images = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for path in shards:
        for _, sample in read_shard(path):
            if "seg.png" in sample:
                labels = cv2.imdecode(np.frombuffer(sample["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED)
                hist = np.bincount(labels.ravel(), minlength=256)
                pixels += hist
                images += hist > 0
    return pixels, images


def test_pack_decodes_no_image_and_its_card_counts_what_decoding_would(dataset, monkeypatch):
    layout, keys, params_file = dataset

    def refuse(*args, **kwargs):
        raise AssertionError("pack decoded an image")

    with monkeypatch.context() as patch:  # every decoder pack could reach: PIL's PNG and JPEG plugins, OpenCV
        patch.setattr(PngImagePlugin.PngImageFile, "_open", refuse)
        patch.setattr(JpegImagePlugin.JpegImageFile, "_open", refuse)
        patch.setattr(cv2, "imdecode", refuse)
        _pack(layout, params_file)
    shards = sorted(layout.shards.glob("*.tar"))
    pixels, images = _decoded_class_counts(shards)
    assert pixels.sum() == 7 * 32 * 40  # every sample has a label map: 4 annotated, 3 provided
    recorded = [read_stats(path) for path in shards]
    assert sum(np.asarray(s["class_pixels"]) for s in recorded).tolist() == pixels.tolist()
    assert sum(np.asarray(s["class_images"]) for s in recorded).tolist() == images.tolist()
    for path, stats in zip(shards, recorded):  # each seg.png's own counts, by key, beside the shard for browse
        assert read_classes(path, stats["fingerprint"]) == {
            key: class_counts(cv2.imdecode(np.frombuffer(s["seg.png"], np.uint8), cv2.IMREAD_UNCHANGED))
            for key, s in read_shard(path) if "seg.png" in s}
        assert read_classes(path, "another packing") == {}
    card = json.loads(layout.card_json.read_text())
    assert {c["id"]: (c["pixels"], c["images"]) for c in card["classes"]} == {
        i: (pixels[i], images[i]) for i in np.flatnonzero(pixels) if i != 255}


def test_shards_from_before_class_counts_were_recorded_are_refused_with_what_to_rerun(dataset):
    layout, keys, params_file = dataset
    seg = layout.annotations("seg") / shard_name("train", 1)
    stats = read_stats(seg)
    write_stats(seg, {k: v for k, v in stats.items() if k != "seg_classes"})  # annotated before this change
    code, output = _cli("pack", "--dataset", "sample", "--params", str(params_file), "--data-dir",
                        str(layout.data_dir))
    assert code != 0 and "seg/train-000001.tar" in output and "seg_classes" in output
    assert "pipeline annotate --only seg --dataset sample" in output and not layout.shards.exists()
    write_stats(seg, stats)
    image = layout.images / shard_name("train", 2)  # provides the seg of its only sample
    write_stats(image, {k: v for k, v in read_stats(image).items() if k != "seg_classes"})
    code, output = _cli("pack", "--dataset", "sample", "--params", str(params_file), "--data-dir",
                        str(layout.data_dir))
    assert code != 0 and "images/train-000002.tar" in output and "pipeline ingest" in output


def test_annotate_redoes_the_shards_an_older_annotate_marked_and_keeps_the_others(dataset, monkeypatch):
    layout, keys, params_file = dataset
    section = load_params(params_file).for_dataset("sample").annotate.seg
    image_shards = sorted(layout.images.glob("*.tar"))
    for index, image_shard in enumerate(image_shards):  # the first one by the annotate before this version
        with monkeypatch.context() as version:
            version.setattr("pipeline.annotate.CODE_VERSION", CODE_VERSION - (index == 0))
            fp = shard_fingerprint("seg", section, META["seg"], read_stats(image_shard)["fingerprint"])
        out = layout.annotations("seg") / image_shard.name
        write_stats(out, {**read_stats(out), "fingerprint": fp})
    todo, done = annotate_plan(layout, "seg", section, META["seg"])
    assert [job.out.name for job in todo] == [image_shards[0].name]
    assert sorted(done) == [shard.name for shard in image_shards[1:]]


@pytest.mark.slow  # starts a two-node Ray cluster (~20 s on the loaded 2-core machine)
def test_pack_on_a_ray_cluster_writes_what_the_local_path_writes(dataset):
    layout, keys, params_file = dataset
    _pack(layout, params_file)
    local = {p.name: p.read_bytes() for p in layout.shards.iterdir()}
    for path in layout.shards.iterdir():
        path.unlink()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        output = _pack(layout, params_file, "--ray-address", cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert "3 shard(s) packed" in output
    assert {p.name: p.read_bytes() for p in layout.shards.iterdir()} == local  # shards and their markers


def test_a_crash_between_a_shard_and_its_marker_redoes_only_that_shard(dataset, monkeypatch):
    layout, keys, params_file = dataset
    _pack(layout, params_file)
    clean = {p.name: p.read_bytes() for p in layout.shards.glob("*.tar")}
    for path in layout.shards.glob("*"):
        path.unlink()
    import pipeline.pack
    markers = []

    def crash_on_the_second_marker(shard, stats):
        markers.append(shard)
        if len(markers) == 2:
            raise KeyboardInterrupt  # the process dies after the shard was renamed into place, before its marker
        write_stats(shard, stats)

    monkeypatch.setattr(pipeline.pack, "write_stats", crash_on_the_second_marker)
    params = load_params(params_file).for_dataset("sample")
    with pytest.raises(KeyboardInterrupt):
        pipeline.pack.run(layout, params, params.profile("sample"), progress=False)
    monkeypatch.undo()
    assert len(list(layout.shards.glob("*.tar"))) == 2 and len(list(layout.shards.glob("*.stats.json"))) == 1
    assert "1 already done" in _pack(layout, params_file)
    assert {p.name: p.read_bytes() for p in layout.shards.glob("*.tar")} == clean


def test_a_marker_a_power_loss_left_empty_or_cut_reads_as_not_done(dataset):
    layout, keys, params_file = dataset
    _pack(layout, params_file)
    clean = {p.name: p.read_bytes() for p in layout.shards.glob("*.tar")}
    marker = layout.shards / shard_name("train", 1)
    marker.with_suffix(".stats.json").write_bytes(b"")  # markers are not fsynced: a power loss can leave this
    cut = layout.shards / shard_name("train", 2)
    cut.with_suffix(".stats.json").write_bytes(cut.with_suffix(".stats.json").read_bytes()[:40])
    assert read_stats(marker) is None and read_stats(cut) is None
    assert "1 already done" in _pack(layout, params_file)
    assert {p.name: p.read_bytes() for p in layout.shards.glob("*.tar")} == clean


def test_every_training_shard_is_on_disk_before_its_marker_exists(dataset, monkeypatch):
    layout, keys, params_file = dataset
    import os

    import pipeline.pack
    synced, unsynced_at_marker = set(), []
    fsync = os.fsync

    def recording_fsync(fd):
        fsync(fd)
        synced.add(os.fstat(fd).st_ino)

    def checking_write_stats(shard, stats):
        if shard.stat().st_ino not in synced:
            unsynced_at_marker.append(shard.name)
        write_stats(shard, stats)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(pipeline.pack, "write_stats", checking_write_stats)
    params = load_params(params_file).for_dataset("sample")
    assert pipeline.pack.run(layout, params, params.profile("sample"), progress=False)["packed"] == 3
    assert unsynced_at_marker == [] and len(list(layout.shards.glob("*.stats.json"))) == 3
