"""DeepLab-v2: dilated ResNet-101 (output stride 8) + ASPP, with the module names of the public COCO-Stuff checkpoint.

Key names and shapes follow kazuto1011/deeplab-pytorch (libs/models/deeplabv2.py, resnet.py, msc.py): the saved
model is MSC(base=DeepLabV2), so checkpoint keys read `base.layer1.conv1.conv.weight`,
`base.layer2.block1.reduce.bn.running_mean`, ..., `base.aspp.c3.bias`. Each bottleneck is reduce (1x1, carries
the stride) -> conv3x3 (dilated) -> increase (1x1) plus a projection shortcut in the first block of each layer.
"""
import torch.nn.functional as F
from torch import nn

from ..runtime import check_layout, strip_prefix

RESNET101_BLOCKS = (3, 4, 23, 3)
ASPP_RATES = (6, 12, 18, 24)
EXPANSION = 4


class ConvBN(nn.Sequential):
    """Conv (no bias) + BatchNorm, optionally followed by ReLU."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0, dilation=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)
        if relu:
            self.relu = nn.ReLU()


class Bottleneck(nn.Module):
    """ResNet bottleneck (MSRA style: the stride sits in the first 1x1)."""

    def __init__(self, cin, cout, stride, dilation, project):
        super().__init__()
        mid = cout // EXPANSION
        self.reduce = ConvBN(cin, mid, 1, stride)
        self.conv3x3 = ConvBN(mid, mid, 3, 1, dilation, dilation)
        self.increase = ConvBN(mid, cout, 1, relu=False)
        self.shortcut = ConvBN(cin, cout, 1, stride, relu=False) if project else nn.Identity()

    def forward(self, x):
        return F.relu(self.increase(self.conv3x3(self.reduce(x))) + self.shortcut(x))


def res_layer(n_blocks, cin, cout, stride, dilation) -> nn.Sequential:
    """`n_blocks` bottlenecks named block1..blockN; the first one changes width and stride."""
    layer = nn.Sequential()
    for i in range(n_blocks):
        layer.add_module(f"block{i + 1}", Bottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                                     dilation, project=i == 0))
    return layer


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab-v2: parallel dilated 3x3 classifiers, summed."""

    def __init__(self, cin, n_classes, rates):
        super().__init__()
        for i, rate in enumerate(rates):
            self.add_module(f"c{i}", nn.Conv2d(cin, n_classes, 3, 1, padding=rate, dilation=rate))

    def forward(self, x):
        return sum(branch(x) for branch in self.children())


class DeepLabV2(nn.Sequential):
    """DeepLab-v2 ResNet-101 ASPP: BGR mean-subtracted 0-255 input -> class logits at 1/8 resolution."""

    def __init__(self, n_classes: int = 182, blocks=RESNET101_BLOCKS, rates=ASPP_RATES):
        super().__init__()
        widths = [64 * 2**p for p in range(6)]
        stem = nn.Sequential()
        stem.conv1 = ConvBN(3, widths[0], 7, 2, 3)
        stem.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.layer1 = stem
        self.layer2 = res_layer(blocks[0], widths[0], widths[2], 1, 1)
        self.layer3 = res_layer(blocks[1], widths[2], widths[3], 2, 1)
        self.layer4 = res_layer(blocks[2], widths[3], widths[4], 1, 2)
        self.layer5 = res_layer(blocks[3], widths[4], widths[5], 1, 4)
        self.aspp = ASPP(widths[5], n_classes, rates)


def adapt_checkpoint(state: dict) -> dict:
    """Checkpoint keys of the public MSC-wrapped model (possibly saved from DataParallel) -> DeepLabV2 keys."""
    return strip_prefix(state, "module.", "base.")


# BatchNorm's counter, absent from the public checkpoint and unused in evaluation
OPTIONAL_KEYS = ("num_batches_tracked",)


def check_file(path, n_classes: int = 182) -> None:
    """Raise WeightsError unless `path` holds the public COCO-Stuff checkpoint's keys and shapes (`n_classes`)."""
    check_layout(lambda: DeepLabV2(n_classes), path, "DeepLab-v2", adapt_checkpoint, OPTIONAL_KEYS)
