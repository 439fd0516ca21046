"""BiSeNet face parser (ResNet-18 context path + feature fusion + output heads), with the module names of the public
CelebAMask-HQ checkpoint `79999_iter.pth` of zllrunning/face-parsing.PyTorch.

Key names and shapes follow that repository's model.py and resnet.py: `cp.resnet.*` is a ResNet-18 trunk without
its classifier (torchvision's key names: conv1, bn1, layerN.M.conv1/bn1/conv2/bn2/downsample), `cp.arm16`,
`cp.arm32` attention refinement, `cp.conv_head32`, `cp.conv_head16`, `cp.conv_avg`, `ffm` feature fusion, and the
heads `conv_out`, `conv_out16`, `conv_out32` (the last two are auxiliary training losses: loaded, never run). The
spatial path of the BiSeNet paper is absent there: the ResNet's 1/8 feature stands in for it, and the checkpoint
holds no `sp.*` keys. Inference as its test.py: the logits of the main head, bilinearly upsampled to the input
size with align_corners=True.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import check_layout
from .deeplabv2 import OPTIONAL_KEYS, ConvBN

# The checkpoint's class ids: face-parsing.PyTorch prepropess_data.py paints the part `atts[i]` as id i + 1 over
# background 0. celebamask-hq-19.csv follows the order of the dataset's own g_mask.py instead; the annotator
# reorders the logits by these names.
CHECKPOINT_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                      "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")


def _attention(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    """Channel weights in (0, 1) from the global average of `x` passed through `layers`."""
    a = x.mean((2, 3), keepdim=True)
    for layer in layers:
        a = layer(a)
    return torch.sigmoid(a)


class AttentionRefinement(nn.Module):
    """3x3 conv, then its output scaled per channel by a 1x1 conv + BN of its global average."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBN(cin, cout, 3, 1, 1)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        return feat * _attention(feat, self.conv_atten, self.bn_atten)


class ContextPath(nn.Module):
    """ResNet-18 features at 1/8, and the 1/16 and 1/32 features refined, summed top-down and brought to 1/8."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.resnet = torchvision.models.resnet18(weights=None)
        del self.resnet.avgpool, self.resnet.fc
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBN(128, 128, 3, 1, 1)
        self.conv_head16 = ConvBN(128, 128, 3, 1, 1)
        self.conv_avg = ConvBN(512, 128, 1)

    def forward(self, x):
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        feat8 = r.layer2(r.layer1(x))
        feat16 = r.layer3(feat8)
        feat32 = r.layer4(feat16)
        context = self.conv_avg(feat32.mean((2, 3), keepdim=True))  # broadcast over 1/32 as its nearest upsample
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + context, feat16.shape[-2:], mode="nearest"))
        up16 = self.conv_head16(F.interpolate(self.arm16(feat16) + up32, feat8.shape[-2:], mode="nearest"))
        return feat8, up16


class FeatureFusion(nn.Module):
    """Concatenation, 1x1 conv, and a squeeze-excitation style channel attention added to its input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBN(cin, cout, 1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial, context):
        feat = self.convblk(torch.cat([spatial, context], 1))
        return feat * _attention(feat, self.conv1, F.relu, self.conv2) + feat


class OutputHead(nn.Sequential):
    """3x3 conv + BN + ReLU, then a 1x1 classifier without bias."""

    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBN(cin, mid, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)


class BiSeNet(nn.Module):
    """RGB/255 normalised with ImageNet statistics -> class logits (the checkpoint's order) at the input's size."""

    def __init__(self, n_classes: int = len(CHECKPOINT_CLASSES)):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, n_classes)
        self.conv_out16 = OutputHead(128, 64, n_classes)
        self.conv_out32 = OutputHead(128, 64, n_classes)

    def forward(self, x):
        feat8, context8 = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(logits, x.shape[-2:], mode="bilinear", align_corners=True)


def check_file(path) -> None:
    """Raise WeightsError unless `path` holds the public face-parsing checkpoint's keys and shapes."""
    check_layout(BiSeNet, path, "BiSeNet face parser", optional_suffixes=OPTIONAL_KEYS)
