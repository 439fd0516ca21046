"""The learning tests' measure (PoE-GAN and the baselines): does a generated image follow its segmentation or its
sketch? Pixel agreement of a simple colour-to-class mapping, and the class boundaries of that mapping as the
image's sketch."""
import numpy as np
import torch


def class_colours(images: torch.Tensor, seg: torch.Tensor) -> dict[int, torch.Tensor]:
    """Mean RGB of each class over real images [B,3,H,W] and their one-hot segmentations [B,C,H,W]."""
    labels, valid = seg.argmax(1), seg.sum(1) > 0
    pixels = images.permute(0, 2, 3, 1)
    return {int(c): pixels[(labels == c) & valid].mean(0) for c in labels[valid].unique()}


def nearest_class(generated: torch.Tensor, colours: dict[int, torch.Tensor]) -> torch.Tensor:
    """[B, H, W] class of each pixel of images [B,3,H,W]: the one whose colour (among `colours`) is nearest."""
    ids = torch.tensor(list(colours))
    palette = torch.stack(list(colours.values()))
    dist = ((generated.permute(0, 2, 3, 1)[..., None, :] - palette) ** 2).sum(-1)
    return ids[dist.argmin(-1)]


def layout_agreement(generated: torch.Tensor, seg: torch.Tensor, colours: dict[int, torch.Tensor]) -> float:
    """Fraction of labelled pixels whose nearest class colour (among `colours`) is the pixel's class in `seg`."""
    labels, valid = seg.argmax(1), seg.sum(1) > 0
    return ((nearest_class(generated, colours) == labels) & valid).sum().item() / max(valid.sum().item(), 1)


def layout_sketch(generated: torch.Tensor, colours: dict[int, torch.Tensor]) -> np.ndarray:
    """uint8 [B, H, W] sketches of images [B,3,H,W] (255 = stroke): the boundaries of their nearest-class map (a
    pixel whose right or lower neighbour has another class), to compare with sketches drawn as label boundaries."""
    labels = nearest_class(generated, colours).numpy()
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:, :, :-1] |= labels[:, :, :-1] != labels[:, :, 1:]
    return edges.astype(np.uint8) * 255
