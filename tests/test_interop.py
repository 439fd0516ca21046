"""The training shards read as the README says: each of its reader snippets (webdataset, Ray Data, Hugging Face
`datasets`, tarfile) is taken from README.md and run as it stands on a small packed dataset, from the folder
holding its `data/`, so the documentation cannot drift from what works."""
import io
import re
from pathlib import Path

import numpy as np
import pytest
import ray
import yaml
from click.testing import CliRunner
from PIL import Image

from image_shards import write_annotations, write_image_shards
from pipeline.cli import main
from shardio.layout import Layout
from shardio.shards import read_shard, read_stats, shard_writer, write_stats

README = Path(__file__).resolve().parents[1] / "README.md"
READERS = ["webdataset", "ray.data", "datasets", "tarfile"]


def snippet(reader: str) -> str:
    """The README's code block under `<!-- reader: NAME -->`."""
    found = re.findall(rf"<!-- reader: {re.escape(reader)} -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert len(found) == 1, f"README.md has {len(found)} snippets for {reader}"
    return found[0]


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> tuple[Path, dict]:
    """A packed `sample` dataset under <folder>/data (images of two sizes, 0 to 3 captions a sample);
    returns the folder and the training samples by key."""
    folder = tmp_path_factory.mktemp("interop")
    layout = Layout(folder / "data", "sample")
    write_image_shards(layout, [3, 3], size=(40, 32))
    write_image_shards(Layout(folder / "other", "sample"), [6, 2], size=(24, 48))  # keys 6 and 7 in its 2nd
    (folder / "other/sample/images/train-000001.tar").rename(layout.images / "train-000002.tar")
    (folder / "other/sample/images/train-000001.stats.json").rename(layout.images / "train-000002.stats.json")
    first = layout.images / "train-000000.tar"
    samples = list(read_shard(first))
    with shard_writer(first) as writer:  # one caption where the others have two
        for key, sample in samples:
            writer.write({"__key__": key, **sample, **({"txt": b"a single caption"} if "txt" in sample else {})})
    write_stats(first, read_stats(first))
    for name in ("seg", "sketch", "clip"):
        write_annotations(layout, name)
    params = yaml.safe_load(open("params.yaml"))
    params["pack"]["workers"] = 1
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(main, ["pack", "--dataset", "sample", "--params", str(folder / "params.yaml"),
                                       "--data-dir", str(layout.data_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    training = {key: sample for path in sorted(layout.shards.glob("train-*.tar")) for key, sample in read_shard(path)}
    return folder, training


@pytest.fixture
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def _check(namespace: dict, training: dict) -> None:
    key = namespace["key"]
    stored = training[key]
    expected = np.asarray(Image.open(io.BytesIO(stored["jpg"])).convert("RGB"))
    assert namespace["info"]["key"] == key and namespace["info"]["split"] == "train"
    assert np.asarray(namespace["image"]).dtype == np.uint8 and np.asarray(namespace["image"]).shape == expected.shape
    assert np.array_equal(namespace["labels"], np.asarray(Image.open(io.BytesIO(stored["seg.png"]))))


@pytest.mark.parametrize("reader", ["webdataset", "tarfile", "datasets"])
def test_the_readmes_snippet_reads_the_training_shards(reader, packed, monkeypatch, tmp_path):
    folder, training = packed
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))  # never the user's cache, never the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace = {}
    exec(snippet(reader), namespace)
    _check(namespace, training)
    if reader == "tarfile":
        assert namespace["clip"].dtype == np.float16


def test_the_readmes_ray_data_snippet_reads_every_shard(packed, monkeypatch, local_ray):
    folder, training = packed
    monkeypatch.chdir(folder)
    namespace = {}
    exec(snippet("ray.data"), namespace)
    _check(namespace, training)
    rows = namespace["dataset"].take_all()  # every shard: images of two sizes, one or two captions a sample
    assert sorted(row["__key__"] for row in rows) == sorted(training)
    captions = [row["clip_text.npy"] for row in rows if isinstance(row.get("clip_text.npy"), np.ndarray)]
    assert sorted(array.shape for array in captions) == [(1, 8), (2, 8), (2, 8)]  # absent elsewhere (NaN)
    member = namespace["member"]  # the snippet's reading of a member: None where the sample lacks it
    for row in rows:
        text = member(row, "clip_text.npy")
        stored = training[row["__key__"]].get("clip_text.npy")
        assert (text is None) == (stored is None) and (text is None or text.shape == np.load(io.BytesIO(stored)).shape)


def test_the_readme_has_a_snippet_for_every_reader():
    assert [reader for reader in READERS if snippet(reader)] == READERS
