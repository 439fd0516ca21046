"""Does a generated image follow its segmentation? Pixel agreement of a simple colour-to-class mapping."""
import torch


def class_colours(images: torch.Tensor, seg: torch.Tensor) -> dict[int, torch.Tensor]:
    """Mean RGB of each class over real images [B,3,H,W] and their one-hot segmentations [B,C,H,W]."""
    labels, valid = seg.argmax(1), seg.sum(1) > 0
    pixels = images.permute(0, 2, 3, 1)
    return {int(c): pixels[(labels == c) & valid].mean(0) for c in labels[valid].unique()}


def layout_agreement(generated: torch.Tensor, seg: torch.Tensor, colours: dict[int, torch.Tensor]) -> float:
    """Fraction of labelled pixels whose nearest class colour (among `colours`) is the pixel's class in `seg`."""
    ids = torch.tensor(list(colours))
    palette = torch.stack(list(colours.values()))
    dist = ((generated.permute(0, 2, 3, 1)[..., None, :] - palette) ** 2).sum(-1)
    predicted = ids[dist.argmin(-1)]
    labels, valid = seg.argmax(1), seg.sum(1) > 0
    return ((predicted == labels) & valid).sum().item() / max(valid.sum().item(), 1)
