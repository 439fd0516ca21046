"""`pipeline generate`: images from the newest snapshot of a trained model under any subset of the conditions a
person gives (a prompt, a segmentation map, a sketch, a style image), each encoded as training saw it. Every input
is read and checked (bounded decoding) before any network is built."""
import functools
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from annotators.labelmaps import load_label_map
from shardio.modalities import MODEL_MODALITIES
from shardio.shards import read_shard
from train.checkpoint import newest_snapshot
from train.data import shard_urls
from train.eval_plan import trained
from train.evaluate import latest_snapshot, load_generator
from train.generate import GenerateError, Given, class_ids_outside, condition_batch, sample, sha256, write_images
from train.models import family

from .imageio import (DECODE_ERRORS, Rejected, decode_labels, decode_sketch, orientation, resize_strokes,
                      store_jpeg, upright_size)

log = logging.getLogger(__name__)

# the image conditions; the first given sets the size the others are brought to
SPATIAL_OPTIONS = ("seg", "style", "sketch")


@dataclass(frozen=True)
class Request:
    """What a person asked for: the prompt and condition files (None: not given), seed, count, output folder."""

    text: str | None = None
    seg: Path | None = None
    sketch: Path | None = None
    style: Path | None = None
    seed: int = 0
    n: int = 1

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODEL_MODALITIES if getattr(self, m) is not None)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise GenerateError(f"--{what} {path}: cannot read it ({err.strerror or err})") from None


def _decode(path: Path, what: str, decode):
    """`decode(bytes)`, a rejection (bounded decoding, wrong format) reported as an error naming the file."""
    data = _read(path, what)
    try:
        return data, decode(data)
    except Rejected as err:
        raise GenerateError(f"--{what} {path}: {err}") from None


def _style(data: bytes, ingest) -> np.ndarray:
    """The style image as a training image: ingest's stored JPEG (upright, short side at most max_short_side,
    its jpeg_quality; no minimum size or aspect here), decoded to RGB as the trainer decodes it."""
    limits = ingest.model_copy(update={"min_size": 1, "max_aspect": 1e9})
    stored = store_jpeg(data, limits)
    try:
        return np.asarray(Image.open(io.BytesIO(stored.jpg)).convert("RGB"))
    except DECODE_ERRORS as err:
        raise Rejected("undecodable", str(err)) from None


def _strokes(data: bytes, max_pixels: int) -> np.ndarray:
    """Strokes (255) of a drawing of dark lines on a light ground, as ingest reads a provided sketch; a map
    already in the shards' convention (light strokes on black, like sketch.png) is taken as it is."""
    strokes = decode_sketch(data, max_pixels)
    if (strokes == 255).mean() > 0.5:  # mostly "stroke": the light lines are the strokes
        log.info("sketch has light lines on a dark ground: its light pixels are the strokes")
        return 255 - strokes
    return strokes


def read_conditions(request: Request, num_classes: int, ingest, label_map: str) -> tuple[dict, dict]:
    """({modality: decoded array}, {modality: record}) of the image conditions; a seg map with ids outside the
    label map is an error naming them; maps whose size differs from the first given one are resized to it (with a
    warning), as a sample's seg and sketch share its image's size."""
    arrays, record = {}, {}
    decoders = {"seg": lambda d: decode_labels(d, ingest.max_pixels), "style": lambda d: _style(d, ingest),
                "sketch": lambda d: _strokes(d, ingest.max_pixels)}
    for name, decode in decoders.items():
        path = getattr(request, name)
        if path is None:
            continue
        data, arrays[name] = _decode(path, name, decode)
        height, width = arrays[name].shape[:2]
        if name == "style":  # its size as given, not as stored (ingest may have scaled it down)
            image = Image.open(io.BytesIO(data))
            width, height = upright_size(image.size, orientation(image))
        record[name] = {"file": str(path), "sha256": sha256(data), "size": [width, height]}
    if "seg" in arrays:
        outside = class_ids_outside(arrays["seg"], num_classes)
        if outside:
            raise GenerateError(f"--seg {request.seg}: class ids {outside} are not in label map {label_map!r} "
                                f"(ids 0..{num_classes - 1}, 255 = ignore); draw the map with its ids")
        record["seg"]["label_map"] = label_map
    first = next((m for m in SPATIAL_OPTIONS if m in arrays), None)
    for name in SPATIAL_OPTIONS:
        if name not in arrays or name == first:
            continue
        if record[name]["size"] != record[first]["size"]:
            log.warning("--%s %s is %dx%d but --%s is %dx%d: %s resized to %dx%d", name, getattr(request, name),
                        *record[name]["size"], first, *record[first]["size"], name, *record[first]["size"])
        if arrays[name].shape[:2] != arrays[first].shape[:2]:
            arrays[name] = _resize_to(name, arrays[name], arrays[first].shape[:2])
    return arrays, record


def _resize_to(name: str, array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    size = (shape[1], shape[0])
    if name == "sketch":
        return resize_strokes(array, size)
    resample = Image.NEAREST if name == "seg" else Image.BILINEAR
    return np.asarray(Image.fromarray(array).resize(size, resample))


def clip_metadata(shards: Path) -> dict:
    """The record of the CLIP model that made the training shards' embeddings (a sample json's annotators.clip)."""
    for url in shard_urls(shards, "train"):
        for _, sample in read_shard(Path(url)):
            meta = json.loads(sample.get("json", b"{}")).get("annotators", {}).get("clip")
            if meta:
                return meta
    raise GenerateError(f"the training shards in {shards} record no CLIP model (annotators.clip in a sample's json), "
                        "so a prompt cannot be encoded as training saw its text; pack them again with "
                        "`pipeline annotate --only clip` and `pipeline pack`")


def encode_text(prompt: str, meta: dict, clip_params, weights_dir: Path, device: str) -> np.ndarray:
    """float32 [D]: the prompt through the CLIP text encoder the shards record, with the weights they were made
    with (a different checkpoint is an error), float16 and L2-normalised as stored in clip_text.npy."""
    from annotators.clip import OPEN_CLIP
    from annotators.weights import RANDOM

    update = {"model": meta["model"], "weights": meta["weights"]}
    if meta["weights"] == OPEN_CLIP:
        update["pretrained"] = meta["pretrained"]
    clip = _text_encoder(clip_params.model_copy(update=update).model_dump_json(), type(clip_params), str(weights_dir),
                         device)
    if meta.get("sha256") not in (None, RANDOM) and clip.sha256 != meta["sha256"]:
        raise GenerateError(f"CLIP {meta['model']} weights {meta['weights']!r} here have sha256 {clip.sha256[:12]}…, "
                            f"but the shards' embeddings were made with {meta['sha256'][:12]}…: put that checkpoint "
                            f"in {weights_dir} (see `pipeline weights`)")
    if meta["weights"] == RANDOM:
        log.warning("the shards' CLIP model had random weights (annotate.clip.weights: random): the prompt is encoded "
                    "by the same untrained network, so its embedding does not mean the prompt")
    return clip.embed_texts([prompt])[0].astype(np.float32)


@functools.lru_cache(maxsize=1)
def _text_encoder(params_json: str, params_class, weights_dir: str, device: str):
    """The CLIP annotator of these params, set up on `device`; kept for the next prompt (`pipeline compare` encodes
    one per sample, and building the model costs seconds)."""
    from annotators.base import build

    clip = build("clip", params_class.model_validate_json(params_json), Path(weights_dir))
    clip.setup(device)
    return clip


_LOADED: dict = {}  # the last generator loaded, by what made it


def _generator(model: str, cfg, num_classes: int, snapshot: Path, device: str):
    """The snapshot's G_ema, kept for the next call with the same model, configuration and snapshot file (same
    mtime and size): `pipeline compare` draws many cells from one snapshot."""
    stat = snapshot.stat()
    key = (model, repr(cfg), num_classes, str(snapshot), stat.st_mtime_ns, stat.st_size, device)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_generator(model, cfg, num_classes, snapshot, device)
    return _LOADED[key]


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def generate(stage, model: str, request: Request, out: Path) -> list[Path]:
    """Write request.n images of `model`'s newest snapshot under the request's conditions into `out`, with
    generate.json saying what made them; returns the paths written."""
    import torch

    if request.text is not None and not request.text.strip():
        raise GenerateError("--text is empty: give a prompt, or leave --text out for no text condition")
    fam = family(model)
    snapshot = newest_snapshot(stage.layout.training(model))
    run = trained(stage, model, snapshot)  # built as trained, whatever the params say now
    cfg = run.cfg
    refusal = fam.refusal(cfg, request.modalities)
    if refusal:
        raise GenerateError(f"model {model!r} {refusal}")
    snapshot = snapshot or latest_snapshot(stage.layout, model)  # none: the error saying to train first
    labels = load_label_map(stage.profile.label_map)
    arrays, inputs = read_conditions(request, labels.num_classes, stage.params.ingest, labels.name)
    meta = clip_metadata(stage.layout.shards) if request.text is not None else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    text_dim = getattr(cfg, "clip_dim", 0)
    if meta is not None:
        arrays["text"] = encode_text(request.text, meta, stage.params.annotate.clip, stage.layout.weights, device)
        inputs["text"] = {"prompt": request.text, "sha256": sha256(request.text.encode()), "clip": meta}
        if len(arrays["text"]) != text_dim:
            raise GenerateError(f"CLIP {meta['model']} gives {len(arrays['text'])}-d text embeddings but the model "
                                f"was trained on {text_dim}-d ones")
    given = Given(**arrays)
    batch, masks = condition_batch(given, cfg.resolution, labels.num_classes, text_dim, run.fit)
    G = _generator(model, cfg, labels.num_classes, snapshot, device)
    images = sample(G, batch, masks, request.seed, request.n, device, labels.num_classes)
    record = {"dataset": stage.dataset, "model": model, "config": run.config_name, "resolution": cfg.resolution,
              "seed": request.seed, "n": request.n, "modalities": list(given.modalities), "inputs": inputs,
              "snapshot": {"file": snapshot.name, "sha256": _file_sha256(snapshot)}}
    return write_images(out, images, record)
