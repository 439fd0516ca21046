"""Segmentation annotator: DeepLab-v2 COCO-Stuff by default, a BiSeNet face parser for CelebAMask-HQ's 19 classes,
segmentation-models-pytorch models as alternatives.

DeepLab-v2 follows the public checkpoint's recipe (kazuto1011/deeplab-pytorch demo.py + configs/cocostuff164k.yaml):
resize so the long side is `long_side` (513), BGR minus the mean (B 104.008, G 116.669, R 122.675) without /255,
logits bilinearly upsampled to the image's own size, argmax. Multi-scale as its MSC wrapper (libs/models/msc.py),
with which the checkpoint was evaluated: the logits at scale 1.0 are the base; every other scale in `scales` runs
on the input resized to int(side x scale) and its logits, resized to the base's size, join a pixel-wise max.
smp models (`smp:<Architecture>` + `encoder`, or `smp-hub` = a directory saved by smp) take RGB/255 normalised
with their encoder's ImageNet statistics, padded to a multiple of 32. The face parser follows its checkpoint's
test.py (zllrunning/face-parsing.PyTorch): the image resized (PIL bilinear) to a `long_side` square, 512, RGB/255
normalised with ImageNet statistics; its logits come out at that size and are reordered to celebamask-hq-19's ids.

Each image runs through the network alone: kernels pick their algorithm (and summation order) by input shape, so
batching images together would make an image's bytes depend on its batch-mates (up to 1.7e-6 in the logits on CPU).
"""
from pathlib import Path

import numpy as np
from PIL import Image
import torch
import torch.nn.functional as F

from ..base import Annotator, InputSize, Item
from .labelmap_mapping import label_mapping
from ..labelmaps import load_label_map
from ..resize import resize_long_side, upsampled_argmax
from ..runtime import autocast, check_layout, load_weights, pick_device, require_setup, seeded
from ..weights import RANDOM, WeightsError, describe, resolve, sha256_of

DEEPLAB = "deeplabv2-resnet101"
BISENET = "bisenet-resnet18"
FACE_LABEL_MAP = "celebamask-hq-19"
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SMP_MULTIPLE = 32


class SegAnnotator(Annotator):
    """uint8 class-id map at the image's own size (`seg.png`), 255 = ignore."""

    name = "seg"

    def __init__(self, params, weights_dir: Path):
        self.params = params
        self.weights_dir = Path(weights_dir)
        self.label_map = load_label_map(params.label_map)
        self.output_label_map = params.output_label_map or params.label_map
        self.lookup = label_mapping(params.label_map, self.output_label_map)
        if not (params.model in (DEEPLAB, BISENET) or params.model.startswith("smp:") or params.model == "smp-hub"):
            raise ValueError(f"annotate.seg.model: unknown model {params.model!r} "
                             f"(expected {DEEPLAB!r}, {BISENET!r}, 'smp:<Architecture>' or 'smp-hub')")
        if params.model == BISENET:
            if params.label_map != FACE_LABEL_MAP:
                raise ValueError(f"annotate.seg.label_map: model {BISENET!r} predicts the {FACE_LABEL_MAP!r} "
                                 f"classes, not {params.label_map!r}; set label_map: {FACE_LABEL_MAP}")
            from .bisenet import CHECKPOINT_CLASSES
            # the checkpoint's logit channel of each class of the label map, by name
            self.channels = [CHECKPOINT_CLASSES.index(name) for name in self.label_map.names]
        self.net = None

    def setup(self, device: str) -> None:
        self.device = pick_device(device)
        net, self.weights_meta = self._build()
        self.net = net.eval().to(self.device)

    def _build(self):
        if self.params.model == "smp-hub":
            import segmentation_models_pytorch as smp
            return self._smp_hub(smp)
        factory, what, adapt, optional = self._network()
        net = seeded(factory)
        return net, load_weights(net, self.params.weights, self.weights_dir, what, adapt=adapt,
                                 optional_suffixes=optional)

    def _network(self):
        """(the untrained network's factory, its name in errors, the checkpoint's key adapter, keys it may lack)."""
        p, n = self.params, self.label_map.num_classes
        if p.model == DEEPLAB:
            from .deeplabv2 import OPTIONAL_KEYS, DeepLabV2, adapt_checkpoint
            return lambda: DeepLabV2(n), "seg DeepLab-v2", adapt_checkpoint, OPTIONAL_KEYS
        if p.model == BISENET:
            from .bisenet import BiSeNet
            from .deeplabv2 import OPTIONAL_KEYS
            return BiSeNet, "seg BiSeNet face parser", lambda state: state, OPTIONAL_KEYS
        import segmentation_models_pytorch as smp
        return (lambda: smp.create_model(p.model.removeprefix("smp:"), encoder_name=p.encoder, encoder_weights=None,
                                         classes=n), f"seg {p.model}/{p.encoder}", lambda state: state, ())

    def check_weights(self) -> None:
        """Also checks that the file holds the network's keys and shapes (read, not loaded into a model)."""
        if self.params.model == "smp-hub":
            self._smp_hub_files()
        elif self.params.weights != RANDOM:
            factory, what, adapt, optional = self._network()
            check_layout(factory, resolve(self.params.weights, self.weights_dir), what, adapt, optional)

    def _smp_hub_files(self) -> list[Path]:
        folder = Path(self.params.weights)
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if self.params.weights == RANDOM or not files:
            raise WeightsError(f"annotate.seg.weights: model 'smp-hub' needs a directory saved by smp "
                               f"(config.json + model.safetensors), got {self.params.weights!r}")
        return files

    def _smp_hub(self, smp):
        folder = Path(self.params.weights)
        net = smp.from_pretrained(str(folder))
        if net.segmentation_head[0].out_channels != self.label_map.num_classes:
            raise WeightsError(f"{folder}: the model predicts {net.segmentation_head[0].out_channels} classes, "
                               f"label map {self.label_map.name!r} has {self.label_map.num_classes}")
        return net, self._smp_hub_meta()

    def _smp_hub_meta(self) -> dict:
        return {"weights": str(Path(self.params.weights)), "sha256": sha256_of(self._smp_hub_files()[0])}

    def metadata(self) -> dict:
        return self._metadata(require_setup(self).weights_meta)

    def expected_metadata(self) -> dict:
        return self._metadata(self._smp_hub_meta() if self.params.model == "smp-hub"
                              else describe(self.params.weights, self.weights_dir))

    def _metadata(self, weights_meta: dict) -> dict:
        return {"model": self.params.model if self.params.model != "smp-hub" else f"smp-hub:{self.params.weights}",
                "encoder": self.params.encoder if self.params.model.startswith("smp:") else None,
                "label_map": self.output_label_map, "long_side": self.params.long_side,
                "scales": list(self.params.scales), **weights_meta}

    def network_input(self, images: list[np.ndarray]) -> torch.Tensor:
        """The model's input [B, 3, h, w] for equally sized uint8 RGB images (DeepLab-v2: BGR minus the mean at
        0-255; smp and the face parser: RGB/255 normalised with ImageNet statistics)."""
        x = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float()
        if self.params.model == DEEPLAB:
            return x.flip(1) - torch.tensor(CAFFE_MEAN_BGR, device=self.device).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        return (x / 255 - mean) / std

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.params.model == DEEPLAB:
            return self.net(x)
        if self.params.model == BISENET:
            return self.net(x)[:, self.channels]
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % SMP_MULTIPLE, 0, -h % SMP_MULTIPLE), mode="reflect")
        return self.net(padded)[..., :h, :w]

    def logits(self, images: list[np.ndarray]) -> torch.Tensor:
        """Class logits [B, C, h, w] of equally sized (already resized) images, max over `scales`; each image is
        computed alone, so its logits never depend on the others."""
        return torch.cat([self._image_logits(image) for image in images])

    def _image_logits(self, image: np.ndarray) -> torch.Tensor:
        x = self.network_input([image])
        with torch.inference_mode(), autocast(self.device, self.params.precision):
            out = self._forward(x).float()
            for scale in self.params.scales:
                if scale == 1.0:
                    continue
                size = [int(side * scale) for side in x.shape[-2:]]
                xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                logits = F.interpolate(self._forward(xs).float(), size=out.shape[-2:], mode="bilinear",
                                       align_corners=False)
                out = torch.maximum(out, logits)
        return out

    def input_size(self) -> InputSize:
        return InputSize(self.params.long_side, "short" if self.params.model == BISENET else "long")

    def prepare(self, item: Item) -> tuple[np.ndarray, tuple[int, int]]:
        """The network-size image and the size the map comes out at."""
        side = self.params.long_side
        if self.params.model == BISENET:
            square = Image.fromarray(item.image).resize((side, side), Image.BILINEAR)
            return np.asarray(square), item.stored_size
        return resize_long_side(item.image, side), item.stored_size

    def forward(self, prepared: list[tuple[np.ndarray, tuple[int, int]]]) -> list[np.ndarray]:
        """Class ids (the model's label map) at each image's size: the argmax of the upsampled logits, on the
        device."""
        require_setup(self)
        return [upsampled_argmax(self._image_logits(image)[0], size) for image, size in prepared]

    def finish(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        return {"seg.png": self.lookup[ids]}

