"""`pipeline ingest` as a new user meets it: `--source` without `--kind` reads the path as what it is when the
profile's kind does not fit (and says so), an ingest that accepts nothing fails saying why, and a test_size that
would take every image for test is refused before anything is read."""
import pytest
from click.testing import CliRunner
from ingest_fixtures import jpeg, params_file, read_table, write

from pipeline.cli import main
from shardio.layout import Layout


@pytest.fixture
def photos(tmp_path):
    for i in range(5):
        write(tmp_path / "photos" / f"IMG_{i}.jpg", jpeg(80, 64, seed=i))
    return tmp_path / "photos"


def ingest(tmp_path, *args, datasets=None):
    params = params_file(tmp_path, {"min_size": 32}, datasets=datasets)
    return CliRunner().invoke(main, ["ingest", "--params", str(params), "--data-dir", str(tmp_path / "d"),
                                     "--no-progress", "--workers", "1", *args])


def test_a_folder_of_photos_under_the_sample_profile_is_read_as_a_folder(tmp_path, photos):
    result = ingest(tmp_path, "--source", str(photos))
    assert result.exit_code == 0, result.output
    assert "as kind 'folder'" in result.output and "5 accepted" in result.output


def test_an_image_list_is_read_as_a_list(tmp_path, photos):
    write(tmp_path / "list.txt", "".join(f"photos/IMG_{i}.jpg\n" for i in range(3)).encode())
    result = ingest(tmp_path, "--source", str(tmp_path / "list.txt"))
    assert result.exit_code == 0, result.output
    assert "as kind 'list'" in result.output and "3 accepted" in result.output


def test_a_source_that_fits_the_profile_is_read_as_its_kind_silently(tmp_path):
    write(tmp_path / "mine/images/a.jpg", jpeg(80, 64, seed=1))    # the sample kind's layout
    write(tmp_path / "mine/captions/a.txt", b"a caption\n")
    result = ingest(tmp_path, "--source", str(tmp_path / "mine"))
    assert result.exit_code == 0 and "inferred" not in result.output, result.output
    assert read_table(Layout(tmp_path / "d", "sample").manifest)[0]["provided"] == ["txt"]


def test_an_ingest_that_accepts_nothing_fails_and_says_why(tmp_path):
    result = ingest(tmp_path, "--kind", "webdataset", "--source", str(tmp_path / "missing-{000..009}.tar"))
    assert result.exit_code == 1, result.output
    assert "0 accepted" in result.output and "no image accepted" in result.output and "10 missing" in result.output


def test_a_count_test_size_above_the_collection_is_refused_before_reading(tmp_path, photos):
    big = {"landscape": {"source": {"kind": "folder", "path": str(photos)}, "test_size": 50000}}
    result = ingest(tmp_path, "--dataset", "landscape", datasets=big)
    assert result.exit_code == 1, result.output
    assert "datasets.landscape.test_size" in result.output and "a count below 5" in result.output
    assert not list(Layout(tmp_path / "d", "landscape").images.glob("*.tar"))
    fits = {"landscape": {**big["landscape"], "test_size": 4}}
    result = ingest(tmp_path, "--dataset", "landscape", datasets=fits)
    assert result.exit_code == 0, result.output
    assert [r["split"] for r in read_table(Layout(tmp_path / "d", "landscape").manifest)].count("train") == 1
