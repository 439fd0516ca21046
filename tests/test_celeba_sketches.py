"""MM-CelebA-HQ's own sketches (its `sketch/` folder) flow as a provided modality: ingest stores them as
`sketch.png` at the image's size, the sketch annotator skips those faces, pack carries them; without the folder
the faces are pseudo-labelled, and a face missing its file in a present folder is rejected."""
import io
import json

import numpy as np
import pytest
from ingest_fixtures import LIMITS, celeba_tree, encode, face_sketch, read_table
from PIL import Image

from annotators.base import Annotator
from pipeline.annotate import ShardJob, annotate_shard
from pipeline.ingest import ingest
from shardio.layout import Layout
from pipeline.pack import pack_shard
from pipeline.params.datasets import SourceParams
from shardio.shards import image_fingerprint, read_shard

RAW = "raw/mm-celeba-hq"


class _Bright(Annotator):
    """A tiny real sketch annotator: strokes where the image is brighter than its mean."""

    name = "sketch"

    def setup(self, device):
        pass

    def forward(self, items):
        return [{"sketch.png": np.where(i.image.mean(-1) > i.image.mean(), 255, 0).astype(np.uint8)} for i in items]

    def metadata(self):
        return {"model": "bright"}


def ingested(tmp_path, sketches: bool, indices=(0, 24000)) -> Layout:
    celeba_tree(tmp_path / "data" / RAW, indices=indices, sketches=sketches)
    return Layout(tmp_path / "data", "mm-celeba-hq")


def run_ingest(layout: Layout) -> dict[str, dict]:
    ingest(layout, LIMITS, SourceParams(kind="mm-celeba-hq", path=RAW), 0.5, workers=1, progress=False)
    return {row["source"]: row for row in read_table(layout.manifest)}


def annotate_and_pack(layout: Layout) -> list[tuple[dict, list[str], dict]]:
    """Per image shard: (sketch annotation stats, annotated keys, training samples by key)."""
    results = []
    for shard in sorted(layout.images.glob("*.tar")):
        out = layout.annotations("sketch") / shard.name
        job = ShardJob(shard, image_fingerprint(shard), out, "fp", 0)
        stats = annotate_shard(_Bright(), job, batch_size=4, prefetch=1, max_pixels=10**6)
        packed = layout.shards / shard.name
        pack_shard(shard, {"sketch": (out, stats)}, packed, "celebamask-hq-19", "captions")
        results.append((stats, [key for key, _ in read_shard(out)], dict(read_shard(packed))))
    return results


@pytest.mark.parametrize("name,fmt", [("{}.png", "PNG"), ("{}_edges.jpg", "JPEG")])
def test_provided_sketches_are_strokes_at_the_image_size(tmp_path, name, fmt):
    layout = ingested(tmp_path, sketches=True)
    folder = tmp_path / "data" / RAW / "sketch"
    for i in (0, 24000):  # the release's PNG, or create_sketch.py's JPEG name
        (folder / f"{i}.png").unlink()
        (folder / name.format(i)).write_bytes(encode(face_sketch(), fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    rows = run_ingest(layout)
    assert len(rows) == 2 and not read_table(layout.rejects)
    samples = {key: s for shard in layout.images.glob("*.tar") for key, s in read_shard(shard)}
    for row in rows.values():
        sample = samples[row["key"]]
        assert row["provided"] == json.loads(sample["json"])["provided"] == ["seg", "sketch", "txt"]
        sketch = Image.open(io.BytesIO(sample["sketch.png"]))
        assert sketch.format == "PNG" and sketch.mode == "L" and sketch.size == (96, 96)  # the stored image's size
        strokes = np.asarray(sketch)
        assert set(np.unique(strokes)) == {0, 255}
        # white paper is 0, the dark lines 255 (inverted), the grey fringe no stroke; 64 -> 96 px nearest: the
        # 48-px line becomes rows 15-16, x 12..83, the 40-px one columns 60-61, y 30..89, and nothing else
        assert strokes[15:17, 12:84].all() and strokes[30:90, 60:62].all()
        assert (strokes == 255).sum() == 2 * 72 + 2 * 60


def test_annotate_skips_provided_sketches_and_pack_carries_their_bytes(tmp_path):
    layout = ingested(tmp_path, sketches=True)
    run_ingest(layout)
    images = {key: s for shard in layout.images.glob("*.tar") for key, s in read_shard(shard)}
    results = annotate_and_pack(layout)
    assert all(keys == [] for _, keys, _ in results)  # the sketch shards hold none of these faces
    assert sum(stats["provided"] for stats, _, _ in results) == 2
    assert sum(stats["annotated"] for stats, _, _ in results) == 0
    packed = {key: s for _, _, samples in results for key, s in samples.items()}
    for key, sample in packed.items():
        assert sample["sketch.png"] == images[key]["sketch.png"]
        info = json.loads(sample["json"])
        assert "sketch" in info["provided"] and "sketch" not in info["annotators"]


def test_without_the_sketch_folder_the_faces_are_pseudo_labelled(tmp_path):
    layout = ingested(tmp_path, sketches=False)
    rows = run_ingest(layout)
    assert all(row["provided"] == ["seg", "txt"] for row in rows.values())
    results = annotate_and_pack(layout)
    assert sum(stats["annotated"] for stats, _, _ in results) == 2
    assert sum(stats["provided"] for stats, _, _ in results) == 0
    for _, keys, samples in results:
        assert keys == list(samples)
        assert all(json.loads(s["json"])["annotators"]["sketch"] == {"model": "bright"} for s in samples.values())


def test_a_face_missing_its_sketch_in_the_sketch_folder_is_rejected_naming_the_file(tmp_path):
    layout = ingested(tmp_path, sketches=True, indices=(0, 1, 24000))
    (tmp_path / "data" / RAW / "sketch" / "1.png").unlink()
    rows = run_ingest(layout)
    assert set(rows) == {"CelebA-HQ-img/0.jpg", "CelebA-HQ-img/24000.jpg"}
    [reject] = read_table(layout.rejects)
    assert reject["source"] == "CelebA-HQ-img/1.jpg" and reject["reason"] == "bad_sketch"
    assert "sketch/1.png" in reject["detail"]
