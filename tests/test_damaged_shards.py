"""A shard damaged after its stage finished it (cut short, as a full disk or a bad copy leaves it) is noticed by
every stage's done-check and by every reader, which names the command that repairs it; that command writes it
again, byte for byte."""
import pytest
import yaml
from click.testing import CliRunner

from image_shards import META, write_annotations, write_image_shards
from ingest_fixtures import LIMITS, folder_source, jpeg, write
from pipeline.annotate import plan as annotate_plan, shard_fingerprint
from pipeline.cli import main
from pipeline.ingest import ingest
from pipeline.params import load_params
from shardio.layout import Layout, shard_name
from shardio.shards import read_stats, write_stats
from shardio.tarcopy import ShardError


def _params(tmp_path):
    params = yaml.safe_load(open("params.yaml"))
    params["pack"]["workers"] = 1  # one thread: a pool costs more than these tiny shards
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _cli(layout, params_file, *args):
    result = CliRunner().invoke(main, [*args, "--dataset", layout.dataset, "--params", str(params_file),
                                       "--data-dir", str(layout.data_dir)])
    return result.exit_code, result.output


def _cut(path):
    """Cut the file to half its size, as a full disk or an interrupted copy leaves it; its size before."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    return size


@pytest.fixture
def ingested(tmp_path):
    """The built-in profile's layout, ingested by the real stage from 6 images (3 train shards, 1 test shard),
    with annotation shards of all three annotators."""
    for i in range(6):
        write(tmp_path / "raw" / f"{i}.jpg", jpeg(80, 60, seed=i))
    layout = Layout(tmp_path / "data", "sample")
    limits = LIMITS.model_copy(update={"shard_size": 2})
    ingest(layout, limits, folder_source(tmp_path / "raw"), 0.2, workers=1, progress=False)
    for name in META:
        write_annotations(layout, name)
    return layout, lambda: ingest(layout, limits, folder_source(tmp_path / "raw"), 0.2, workers=1, progress=False)


def test_a_cut_image_shard_is_refused_by_annotate_and_pack_and_ingest_writes_it_again(ingested, tmp_path):
    layout, reingest = ingested
    params_file = _params(tmp_path)
    shard = layout.images / shard_name("train", 1)
    before = shard.read_bytes()
    size = _cut(shard)
    refusal = (rf"{shard}: is {size // 2} bytes but its marker \(train-000001.stats.json\) recorded {size}: cut "
               r"short or changed since it was written; run `pipeline ingest --dataset sample`")
    with pytest.raises(ShardError, match=refusal):
        annotate_plan(layout, "seg", load_params(params_file).annotate.seg, META["seg"])
    code, output = _cli(layout, params_file, "annotate", "--only", "clip", "--no-progress")
    assert code == 1 and "train-000001.tar: is" in output and "pipeline ingest --dataset sample" in output
    code, output = _cli(layout, params_file, "pack", "--no-progress")
    assert code == 1 and "train-000001.tar: is" in output and "pipeline ingest --dataset sample" in output
    assert not layout.shards.exists()

    summary = reingest()
    assert summary.written == 1 and shard.read_bytes() == before


def test_a_damaged_input_of_the_right_size_makes_pack_say_what_to_delete_and_rerun(ingested, tmp_path):
    layout, reingest = ingested
    params_file = _params(tmp_path)
    shard = layout.images / shard_name("train", 0)
    before = shard.read_bytes()
    shard.write_bytes(b"X" * 10 + before[10:])  # a spoilt first header, the size unchanged
    code, output = _cli(layout, params_file, "pack", "--no-progress")
    assert code == 1 and f"{shard}: bad tar header checksum at byte 0; it is damaged: delete {shard} and run " \
        "`pipeline ingest --dataset sample`, which writes it again" in output
    shard.unlink()
    assert reingest().written == 1 and shard.read_bytes() == before
    code, output = _cli(layout, params_file, "pack", "--no-progress")
    assert code == 0, output


def test_a_cut_annotation_shard_is_redone_by_annotate_and_refused_by_pack(ingested, tmp_path):
    layout, _ = ingested
    params_file = _params(tmp_path)
    section = load_params(params_file).annotate.sketch
    for image_shard in sorted(layout.images.glob("*.tar")):  # marked done under the current fingerprint
        out = layout.annotations("sketch") / image_shard.name
        fp = shard_fingerprint("sketch", section, META["sketch"], read_stats(image_shard)["fingerprint"])
        write_stats(out, {**read_stats(out), "fingerprint": fp, "annotated": 1, "failed": 0})
    assert len(annotate_plan(layout, "sketch", section, META["sketch"])[0]) == 0
    shard = layout.annotations("sketch") / shard_name("test", 0)
    _cut(shard)
    todo, done = annotate_plan(layout, "sketch", section, META["sketch"])
    assert [job.out for job in todo] == [shard] and len(done) == 3
    code, output = _cli(layout, params_file, "pack", "--no-progress")
    assert code == 1 and f"{shard}: is" in output and "`pipeline annotate --only sketch --dataset sample`" in output


def test_a_cut_training_shard_is_refused_by_train_and_pack_writes_it_again(tmp_path):
    layout = Layout(tmp_path / "data", "sample")
    write_image_shards(layout, [3, 3, 1])
    for name in META:
        write_annotations(layout, name)
    params_file = _params(tmp_path)
    assert _cli(layout, params_file, "pack", "--no-progress")[0] == 0
    shard = layout.shards / shard_name("train", 1)
    before = shard.read_bytes()
    size = _cut(shard)

    code, output = _cli(layout, params_file, "train", "--steps", "1")
    assert code == 1 and f"{shard}: is {size // 2} bytes but its marker" in output
    assert "run `pipeline pack --dataset sample`, which writes it again" in output
    assert not layout.training("poegan").exists()
    code, output = _cli(layout, params_file, "pack", "--no-progress")
    assert code == 0 and "1 shard(s) packed, 2 already done" in output
    assert shard.read_bytes() == before
