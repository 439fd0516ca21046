"""VGG-19 up to relu5_1, the feature of the image contrastive loss (supplement B)."""
from pathlib import Path

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

RELU5_1 = 30  # torchvision's vgg19().features: conv5_1 is index 28, its ReLU index 29
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


class VGGRelu51(nn.Module):
    """Frozen VGG-19 features[:30]; maps images in [-1, 1] to globally pooled relu5_1 features [B, 512].
    Without `weights` the network keeps a fixed random initialisation (tests and offline demos only)."""

    def __init__(self, weights: Path | None):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # 'random' weights are the same in every run (exact resume, comparable runs)
            self.features = make_layers(cfgs["E"])[:RELU5_1]  # "E" = VGG-19, as torchvision's vgg19()
        if weights is not None:
            self.load(weights)
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def load(self, path: Path) -> None:
        """Load torchvision's `vgg19` state dict (keys `features.N.weight`); other keys are ignored."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")
                  and int(k.split(".")[1]) < RELU5_1}
        missing, unexpected = self.features.load_state_dict(wanted, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: not a torchvision VGG-19 state dict (missing {missing})")

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen, always eval

    def forward(self, image):
        x = ((image + 1) / 2 - self.mean) / self.std
        return self.features(x).mean((2, 3))
