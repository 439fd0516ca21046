"""The test split as evaluation reads it: batches of samples in shard order, decoded one batch at a time and
dropped after use, so memory does not grow with `evaluate.num_images`. Batch i holds the samples at positions
[i * batch_size, (i + 1) * batch_size) of the split, less the unusable ones; under several processes batch i is
process i % world's, and what a batch holds does not depend on which process reads it."""
import hashlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from .data import BadData, DataError, Preprocess, make_example, shard_urls

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """An evaluation that cannot start; the message names the missing file or the wrong param."""


@dataclass
class EvalBatch:
    """One batch of the test split: conditions as the generator takes them and as the metrics take them."""

    index: int  # the batch's number in the split
    positions: np.ndarray  # int [B]: each sample's position in the split (unusable samples leave gaps)
    cond: dict  # as the training loader's batch (`data.to_device` takes it to the device and one-hots seg there)
    images: np.ndarray  # uint8 [B, H, W, 3] real images (the FID reference)
    seg: np.ndarray  # uint8 [B, H, W] class ids, 255 = ignore
    sketch: np.ndarray  # uint8 [B, H, W], 255 = stroke
    embeddings: np.ndarray  # float32 [B, D] the text (or CLIP image) embedding the generator is given
    keys: list[str]  # the samples' content-derived keys

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class EvalSet:
    """At most `limit` samples of the `split` (test) in shard order, brought to `resolution` as training brings
    them (resized, or short side scaled and cropped at random); iterating yields this process's `EvalBatch`es. Each sample's crop
    and caption are drawn from `seed` and its key alone, so they are the same whichever process reads it."""

    shards_dir: Path
    resolution: int
    num_classes: int
    limit: int
    seed: int
    batch_size: int
    preprocess: Preprocess = Preprocess()
    rank: int = 0
    world: int = 1
    split: str = "test"  # "train": the training images (the FID reference of evaluate.reference_split: train)

    def __post_init__(self):
        self.urls()  # no shards of the split: an EvaluationError before any work

    def urls(self) -> list[str]:
        try:
            return shard_urls(self.shards_dir, self.split)
        except DataError as err:
            raise EvaluationError(str(err)) from None

    def whole(self) -> "EvalSet":
        """The same split as one process reads it (every batch)."""
        return replace(self, rank=0, world=1)

    def __iter__(self) -> Iterator[EvalBatch]:
        samples = wds.DataPipeline(wds.SimpleShardList(self.urls()),  # a shard that reads badly: an error
                                   wds.tarfile_to_samples(handler=BadData().read_error))
        examples, keys, positions, index = [], [], [], 0
        for position, sample in enumerate(samples):
            if position == self.limit:
                break
            if position // self.batch_size != index:
                if examples:
                    yield self._batch(index, examples, keys, positions)
                examples, keys, positions, index = [], [], [], position // self.batch_size
            if index % self.world != self.rank:
                continue
            key = sample["__key__"]
            try:
                rng = random.Random(f"{self.seed}/{key}")
                examples.append(make_example(sample, self.resolution, self.num_classes, rng, self.preprocess))
                keys.append(key)
                positions.append(position)
            except (OSError, ValueError, KeyError) as err:  # a bad sample is skipped, as in training
                log.warning("skipping test sample %s: %s", key, err)
        if examples:
            yield self._batch(index, examples, keys, positions)

    def _batch(self, index: int, examples: list[dict], keys: list[str], positions: list[int]) -> EvalBatch:
        cond = torch.utils.data.default_collate(examples)
        return EvalBatch(index, np.array(positions), cond, to_uint8(cond["image"]), cond["seg"].numpy(),
                         (cond["sketch"][:, 0] * 255).round().byte().numpy(), cond["text"].numpy(), keys)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images [N,3,H,W] in [-1, 1] as uint8 [N, H, W, 3]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def pixel_digests(images: np.ndarray) -> list[bytes]:
    """The sha256 of each image's pixels: together, in the split's order, they name the reference set."""
    return [hashlib.sha256(np.ascontiguousarray(image).data).digest() for image in images]
