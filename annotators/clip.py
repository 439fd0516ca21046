"""CLIP annotator (open_clip): image embedding of every image, text embeddings of its captions when it has any.

Embeddings are L2-normalised in float32 and stored float16. `weights`: 'open_clip' downloads the `pretrained` tag
through open_clip into `<weights_dir>/open_clip`; a file path loads that checkpoint; 'random' builds the model
untrained (pretrained=None). The weights hash in the metadata is the sha256 of the loaded state dict's tensors, so it
identifies the weights however they were obtained.
"""
import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import Annotator, Item
from .runtime import autocast, check_items, in_fixed_batches, log, pick_device, require_setup, seeded
from .weights import RANDOM, WeightsError

OPEN_CLIP = "open_clip"
# Images (and captions) per forward pass, whatever the batch handed in: the embeddings' bytes stay independent of
# `batch_size` (a batch of 8 vs 1 moves float16 outputs by up to 3.8e-6 otherwise).
MICRO_BATCH = 8


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 over the names and bytes of a module's state dict, in key order."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _fp16(x: torch.Tensor) -> np.ndarray:
    return x.cpu().numpy().astype(np.float16)


def check_pretrained_pair(model: str, pretrained: str) -> None:
    """Raise WeightsError unless open_clip knows the tag `pretrained` for `model` and the model's activation (GELU
    or QuickGELU) is the one the checkpoint was trained with (open_clip itself only warns)."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    tag = get_pretrained_cfg(model, pretrained)
    if not tag:
        raise WeightsError(f"annotate.clip: open_clip has no pretrained {pretrained!r} for model {model!r}; its tags "
                           f"for that model: {list_pretrained_tags_by_model(model) or 'none'}")
    config = open_clip.get_model_config(model) or {}
    trained, built = bool(tag.get("quick_gelu")), bool(config.get("quick_gelu"))
    if trained != built:
        activation = {True: "QuickGELU", False: "GELU"}
        hint = (f"use model {model + '-quickgelu'!r}" if trained else
                f"use model {model.removesuffix('-quickgelu')!r}")
        raise WeightsError(f"annotate.clip: pretrained {pretrained!r} was trained with {activation[trained]} but "
                           f"model {model!r} uses {activation[built]}, so its embeddings would be wrong; {hint}")


class ClipAnnotator(Annotator):
    """`clip.npy` float16 [D] per image, and `clip_text.npy` float16 [n, D] for its n captions."""

    name = "clip"

    def __init__(self, params, weights_dir: Path):
        self.params = params
        self.weights_dir = Path(weights_dir)
        self.net = None
        if params.weights == OPEN_CLIP:
            check_pretrained_pair(params.model, params.pretrained)

    def _pretrained(self) -> str | None:
        w = self.params.weights
        if w == RANDOM:
            return None
        if w == OPEN_CLIP:
            return self.params.pretrained
        if not Path(w).is_file():
            raise WeightsError(f"annotate.clip.weights: {w!r} is neither 'open_clip', 'random' nor an existing file")
        return w

    def setup(self, device: str) -> None:
        import open_clip
        self.device = pick_device(device)
        pretrained = self._pretrained()
        if pretrained is None:
            log.warning("clip uses RANDOM weights (params say weights: random): its embeddings are not meaningful")
        try:
            net, _, self.preprocess = seeded(lambda: open_clip.create_model_and_transforms(
                self.params.model, pretrained=pretrained, cache_dir=str(self.weights_dir / OPEN_CLIP)))
        except Exception as err:  # open_clip raises RuntimeError/OSError/hub errors for unobtainable weights
            raise WeightsError(f"open_clip could not build {self.params.model!r} with pretrained={pretrained!r} "
                               f"({err}); with no network, download that checkpoint elsewhere and set "
                               f"annotate.clip.weights to its file path") from None
        self.tokenizer = open_clip.get_tokenizer(self.params.model)
        self.sha256 = RANDOM if pretrained is None else state_dict_sha256(net)
        self.net = net.eval().to(self.device)

    def metadata(self) -> dict:
        require_setup(self)
        return {"model": self.params.model, "pretrained": self.params.pretrained if self.params.weights == OPEN_CLIP
                else self.params.weights, "weights": self.params.weights, "sha256": self.sha256}

    def __call__(self, items: list[Item]) -> list[dict[str, np.ndarray]]:
        require_setup(self)
        check_items(items, "clip")
        if not items:
            return []
        images = torch.stack([self.preprocess(Image.fromarray(item.image)) for item in items]).to(self.device)
        captions = [c for item in items for c in item.captions]
        with torch.inference_mode(), autocast(self.device, self.params.precision):
            image_emb = _fp16(in_fixed_batches(lambda x: _unit_rows(self.net.encode_image(x)), images, MICRO_BATCH))
            text_emb = (_fp16(in_fixed_batches(lambda x: _unit_rows(self.net.encode_text(x)),
                                               self.tokenizer(captions).to(self.device), MICRO_BATCH))
                        if captions else None)
        outputs, start = [], 0
        for row, item in enumerate(items):
            out = {"clip.npy": image_emb[row]}
            if item.captions:
                out["clip_text.npy"] = text_emb[start:start + len(item.captions)]
                start += len(item.captions)
            outputs.append(out)
        return outputs
