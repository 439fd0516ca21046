"""FLOPs per image of the annotators' networks (and FID's Inception) at the landscape set's stored size, counted
by torch's FlopCounterMode on meta tensors (no compute, no weights): the GPU side of docs/scale.md's plan.
FLOPs are 2 x multiply-adds; ResNet-101 at 224 px is printed as a check (torchvision lists 7.8 G multiply-adds).
Usage: .venv/bin/python scripts/annotator_flops.py [--width 1365 --height 1024] [--seg-long-side 513]
"""
import argparse

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from annotators.seg.deeplabv2 import DeepLabV2
from annotators.sketch.hed import HED
from annotators.sketch.simplify import SketchSimplifier


def gflops(make, shape: tuple[int, ...]) -> float:
    """GFLOPs of one forward of the network `make()` builds on an input of `shape`."""
    with torch.device("meta"):
        net, x = make(), torch.zeros(shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x)
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1365, help="stored image width, px")
    parser.add_argument("--height", type=int, default=1024, help="stored image height, px")
    parser.add_argument("--seg-long-side", type=int, default=513)
    parser.add_argument("--seg-scales", type=float, nargs="+", default=[1.0, 0.5, 0.75])
    args = parser.parse_args()
    ratio = args.seg_long_side / max(args.width, args.height)
    for scale in args.seg_scales:
        w, h = round(args.width * ratio * scale), round(args.height * ratio * scale)
        print(f"seg deeplabv2-resnet101 {w}x{h}: {gflops(DeepLabV2, (1, 3, h, w)):.1f} GFLOPs")
    size = (args.height, args.width)
    print(f"sketch hed-vgg16 {args.width}x{args.height}: {gflops(lambda: HED(True), (1, 3, *size)):.1f} GFLOPs")
    print(f"sketch simplification {args.width}x{args.height}: {gflops(SketchSimplifier, (1, 1, *size)):.1f} GFLOPs")
    inception = gflops(lambda: torchvision.models.inception_v3(init_weights=False, aux_logits=False),
                       (1, 3, 299, 299))
    print(f"fid inception-v3 299x299: {inception:.1f} GFLOPs")
    print(f"check: resnet101 224x224: {gflops(torchvision.models.resnet101, (1, 3, 224, 224)):.1f} GFLOPs")


if __name__ == "__main__":
    main()
