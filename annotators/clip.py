"""CLIP annotator (open_clip): image embedding of every image, text embeddings of its captions when it has any.

Embeddings are L2-normalised in float32 and stored float16. `weights`: 'open_clip' downloads the `pretrained` tag
through open_clip into `<weights_dir>/open_clip`; a file path loads that checkpoint; 'random' builds the model
untrained (pretrained=None). The weights hash in the metadata is the sha256 of the loaded state dict's tensors, so it
identifies the weights however they were obtained.
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .base import Annotator, InputSize, Item
from .runtime import autocast, in_fixed_batches, log, pick_device, require_setup, seeded
from .weights import RANDOM, WeightsError, unreachable

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


OPENAI_LICENCE = "MIT (openai/CLIP); OpenAI's model card scopes it to research use"


@dataclass(frozen=True)
class OpenClipCheckpoint:
    """One open_clip checkpoint: where it comes from, its licence, and its file in the cache (None: not cached)."""

    model: str
    pretrained: str
    source: str
    licence: str
    cache_dir: Path
    cached: Path | None


def _hub_file(tag: dict, cache_dir: Path) -> Path | None:
    """The checkpoint file in open_clip's cache, looked up offline the way open_clip's `download_pretrained` stores
    it: from the Hugging Face hub (safetensors preferred) if the tag names a hub repo, else from its URL."""
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if tag.get("hf_hub"):
        repo, filename = os.path.split(tag["hf_hub"])
        for name in ([HF_SAFE_WEIGHTS_NAME] if not filename else []) + [filename or HF_WEIGHTS_NAME]:
            found = try_to_load_from_cache(repo, name, cache_dir=str(cache_dir))
            if isinstance(found, str):
                return Path(found)
        return None
    path = cache_dir / os.path.basename(tag.get("url", ""))
    return path if tag.get("url") and path.is_file() else None


def open_clip_checkpoint(model: str, pretrained: str, weights_dir: Path) -> OpenClipCheckpoint:
    """The checkpoint open_clip loads for (`model`, `pretrained`) into `<weights_dir>/open_clip`; an unknown or
    mismatched pair raises WeightsError."""
    from open_clip.pretrained import get_pretrained_cfg

    check_pretrained_pair(model, pretrained)
    tag = get_pretrained_cfg(model, pretrained)
    source = f"Hugging Face hub {tag['hf_hub'].rstrip('/')}" if tag.get("hf_hub") else tag["url"]
    licence = OPENAI_LICENCE if pretrained == "openai" else f"as its publisher states (model card of {source})"
    cache_dir = Path(weights_dir) / OPEN_CLIP
    return OpenClipCheckpoint(model, pretrained, f"open_clip via {source}", licence, cache_dir,
                              _hub_file(tag, cache_dir))


def fetch_open_clip(model: str, pretrained: str, weights_dir: Path) -> Path:
    """The checkpoint of (`model`, `pretrained`) in open_clip's cache, downloaded through open_clip if missing."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    checkpoint = open_clip_checkpoint(model, pretrained, weights_dir)
    if checkpoint.cached:
        return checkpoint.cached
    tag = get_pretrained_cfg(model, pretrained)
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if tag.get("hf_hub") else tag.get("url", "")
    try:
        if reason := unreachable(host):  # fail at once, not after the hub client's retries
            raise WeightsError(reason)
        return Path(download_pretrained(tag, cache_dir=str(checkpoint.cache_dir)))
    except Exception as err:  # hub and URL downloads raise many types when offline
        raise WeightsError(f"could not download CLIP {model}/{pretrained} from {checkpoint.source} ({err}); "
                           f"fetch it on a machine with network into {checkpoint.cache_dir} (open_clip's cache) and "
                           f"copy that folder here, or set annotate.clip.weights to a checkpoint file") from None


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
        return self._metadata(require_setup(self).sha256)

    def expected_metadata(self) -> dict | None:
        """Known beforehand for random weights only: otherwise the hash is over the loaded model's tensors."""
        return self._metadata(RANDOM) if self.params.weights == RANDOM else None

    def _metadata(self, sha256: str) -> dict:
        return {"model": self.params.model, "pretrained": self.params.pretrained if self.params.weights == OPEN_CLIP
                else self.params.weights, "weights": self.params.weights, "sha256": sha256}

    def embed_texts(self, captions: list[str]) -> np.ndarray:
        """float16 [n, D] L2-normalised text embeddings of `captions`, the bytes `clip_text.npy` stores for them."""
        require_setup(self)
        with torch.inference_mode(), autocast(self.device, self.params.precision):
            return self._embed_tokens(self.tokenizer(captions))

    def _embed_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        return _fp16(in_fixed_batches(lambda x: _unit_rows(self.net.encode_text(x)), tokens.to(self.device),
                                      MICRO_BATCH))

    def check_weights(self) -> None:
        """Also brings open_clip's checkpoint into the cache if it is not there: one download here, not one per
        worker (offline, the error says where to put it)."""
        if self.params.weights == OPEN_CLIP:
            fetch_open_clip(self.params.model, self.params.pretrained, self.weights_dir)
        else:
            self._pretrained()

    def input_size(self) -> InputSize:
        """open_clip's eval transform resizes the short side to the model's image size, then centre-crops."""
        import open_clip
        size = open_clip.get_model_config(self.params.model)["vision_cfg"]["image_size"]
        return InputSize(max(size) if isinstance(size, (list, tuple)) else size, "short")

    def prepare(self, item: Item) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The preprocessed image [3, S, S] and the item's caption tokens [n, L] (None without captions)."""
        require_setup(self)
        return (self.preprocess(Image.fromarray(item.image)),
                self.tokenizer(item.captions) if item.captions else None)

    def forward(self, prepared: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[dict[str, np.ndarray]]:
        require_setup(self)
        if not prepared:
            return []
        images = torch.stack([image for image, _ in prepared]).to(self.device)
        tokens = [t for _, t in prepared if t is not None]
        with torch.inference_mode(), autocast(self.device, self.params.precision):
            image_emb = _fp16(in_fixed_batches(lambda x: _unit_rows(self.net.encode_image(x)), images, MICRO_BATCH))
            text_emb = self._embed_tokens(torch.cat(tokens)) if tokens else None
        outputs, start = [], 0
        for row, (_, item_tokens) in enumerate(prepared):
            out = {"clip.npy": image_emb[row]}
            if item_tokens is not None:
                out["clip_text.npy"] = text_emb[start:start + len(item_tokens)]
                start += len(item_tokens)
            outputs.append(out)
        return outputs
