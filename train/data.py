"""Training batches from the training shards (webdataset): resampled shards, shard shuffle then a sample
buffer, several workers, `with_epoch`; deterministic for a seed, with a position for exact resume."""
import dataclasses
import io
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from webdataset.utils import pytorch_worker_seed

from annotators.labelmaps import IGNORE
from shardio.shards import checked_stats
from shardio.tarcopy import ShardError

MAX_PIXELS = 64_000_000  # bounded decoding: larger members are refused
log = logging.getLogger(__name__)


class DataError(ValueError):
    """Training data that cannot be used; the message names the path."""

    def __str__(self) -> str:
        # raised again by a DataLoader worker, the message is the worker's traceback: the line that says it is last
        text = super().__str__()
        if not text.startswith("Caught "):
            return text
        return text.rstrip().splitlines()[-1].removeprefix(f"{__name__}.{type(self).__name__}: ")


def repack(shards_dir: Path) -> str:
    """The command that writes the training shards in `shards_dir` (<data-dir>/<dataset>/shards) again."""
    return f"pipeline pack --dataset {Path(shards_dir).absolute().parent.name}"


def shard_urls(shards_dir: Path, split: str = "train") -> list[str]:
    """The split's training shards, sorted; none found, or one pack did not finish or that is not the size its
    marker recorded (damaged), is an error naming it and the command that repairs it."""
    urls = sorted(str(p) for p in Path(shards_dir).glob(f"{split}-[0-9]*.tar"))
    if not urls:
        raise DataError(f"no training shards {split}-NNNNNN.tar in {shards_dir}: run `pipeline pack` first")
    for url in urls:
        try:
            checked_stats(Path(url), repack(shards_dir))
        except ShardError as e:
            raise DataError(str(e)) from None
    return urls


class BadData:
    """What a reader does with a shard it cannot read on, or a sample it cannot use: by default a DataError naming
    it and the repair; with `skip`, skip it, count it and log a warning."""

    def __init__(self, skip: bool = False):
        self.skip, self.skipped = skip, 0

    def read_error(self, exn: Exception) -> bool:
        """A webdataset handler: a read error ends its shard (True: go on with the next one, when skipping)."""
        url = next((a for a in reversed(exn.args) if isinstance(a, str) and a.endswith(".tar")), None)
        if url is None:  # raised inside one member's read: the shard's own handler, which knows its url, decides
            raise exn
        self._bad(url, f"unreadable past some point ({type(exn).__name__}: {str(exn.args[0]).split(' @ ')[0]})",
                  "the rest of the shard")
        return True

    def sample_error(self, sample: dict, exn: Exception) -> None:
        """A sample that did not become an example."""
        self._bad(sample.get("__url__", "a shard"), f"sample {sample.get('__key__')} is unusable "
                  f"({type(exn).__name__}: {exn})", "the sample")

    def _bad(self, url: str, what: str, unit: str) -> None:
        if not self.skip:
            raise DataError(f"{url}: {what}; if the shard is damaged, delete it and run "
                            f"`{repack(Path(url).parent)}`, which writes it again (set the train section's "
                            "skip_bad_samples: true to skip what cannot be read instead)")
        self.skipped += 1
        log.warning("skipped %s (%d skipped by this reader so far): %s: %s", unit, self.skipped, url, what)


def fit_to_shards(cfg, urls: list[str]):
    """The configuration with the text encoder's input width set to the shards' CLIP width (any CLIP model)."""
    return dataclasses.replace(cfg, clip_dim=embedding_dim(urls)) if hasattr(cfg, "clip_dim") else cfg


def embedding_dim(urls: list[str]) -> int:
    """The width of the CLIP embeddings in the shards (512 for ViT-B-32, 768 for ViT-L-14, ...)."""
    from shardio.shards import read_shard

    for url in urls:
        for _, sample in read_shard(Path(url)):
            if "clip.npy" in sample:
                return int(_npy(sample["clip.npy"]).shape[-1])
    raise DataError(f"no clip.npy in the training shards ({urls[0]} ...): run `pipeline annotate --only clip`")


def _image(data: bytes, mode: str) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    if img.width * img.height > MAX_PIXELS:
        raise DataError(f"image of {img.width}x{img.height} pixels is larger than {MAX_PIXELS}")
    return img.convert(mode)


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _resize_short(img: Image.Image, short: int, resample) -> Image.Image:
    scale = short / min(img.size)
    return img.resize((max(short, round(img.width * scale)), max(short, round(img.height * scale))), resample)


def _resize_square(img: Image.Image, side: int, resample) -> Image.Image:
    return img.resize((side, side), resample)


def resizer(fit: str):
    """`Preprocess.fit`'s resize, (image, side, resample) -> image: short side `side` for `random-crop`, else
    side x side (R at test time; `resize-crop` trains on a larger side, `load_size`); the crop to R x R follows."""
    return _resize_short if fit == "random-crop" else _resize_square


# NVlabs/SPADE data/coco_dataset.py (and tzt101/INADE, fnzhan/MoNCE celeba/ade20k datasets): --preprocess_mode
# resize_and_crop, --load_size 286 when training, --crop_size 256; the same ratio at other resolutions
LOAD_SIZE, CROP_SIZE = 286, 256
FITS = {  # fit -> (what it does, for the dry run; the image's resample)
    "random-crop": ("short side to {R}, a random {R}x{R} crop", Image.BILINEAR),
    "resize": ("whole image to {R}x{R}", Image.BILINEAR),
    "resize-crop": ("whole image to {L}x{L}, a random {R}x{R} crop", Image.BICUBIC),
}


def load_size(fit: str, resolution: int) -> int:
    """The side the image is resized to before the crop: LOAD_SIZE/CROP_SIZE of R for `resize-crop`, else R."""
    return round(resolution * LOAD_SIZE / CROP_SIZE) if fit == "resize-crop" else resolution


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a training sample reaches the resolution R: `resize` scales the whole image to R x R (PoE-GAN on
    MS-COCO and MM-CelebA-HQ, supplement A), `random-crop` scales its short side to R and crops a random R x R
    square (Landscape), `resize-crop` scales the whole image to 286/256 R square with bicubic resampling and crops
    a random R x R square (the SPADE family's official loaders); `flip`: random horizontal flips. The image is
    resampled bilinearly except under `resize-crop`; the segmentation always nearest, the sketch bilinearly."""

    fit: str = "random-crop"
    flip: bool = False

    def for_test(self) -> "Preprocess":
        """The preprocessing of test images: never flipped; `resize-crop` resizes to R (the official test loaders'
        --load_size 256 for --crop_size 256 leaves nothing to crop)."""
        return Preprocess("resize" if self.fit == "resize-crop" else self.fit)

    def describe(self, resolution: int) -> str:
        """One line for `pipeline train --dry-run`."""
        what, resample = FITS[self.fit]
        size = what.format(R=resolution, L=load_size(self.fit, resolution))
        flips = "random horizontal flips" if self.flip else "no flips"
        return (f"preprocessing: {self.fit}: {size} (image {Image.Resampling(resample).name.lower()}, seg nearest, "
                f"sketch bilinear; the same crop and flip for every modality), {flips}")


def make_example(sample: dict, resolution: int, num_classes: int, rng: random.Random,
                 preprocess: Preprocess = Preprocess()) -> dict:
    """One training example: brought to `resolution` as `preprocess` says, the same crop and flip applied to
    image, segmentation and sketch; segmentation as uint8 class ids (255 = ignore; made one-hot on the training
    device by `to_device`); text = one caption's CLIP text embedding chosen at random, else the CLIP image
    embedding, which is always the pseudo-text of a dataset whose profile says `text: image` (its `json` records
    it)."""
    fit, size = resizer(preprocess.fit), load_size(preprocess.fit, resolution)
    image = fit(_image(sample["jpg"], "RGB"), size, FITS[preprocess.fit][1])
    seg = fit(_image(sample["seg.png"], "L"), size, Image.NEAREST)
    sketch = fit(_image(sample["sketch.png"], "L"), size, Image.BILINEAR)
    if not image.size == seg.size == sketch.size:
        raise DataError(f"sample {sample.get('__key__')}: image, seg and sketch sizes differ")
    x = rng.randint(0, image.width - resolution)
    y = rng.randint(0, image.height - resolution)
    flip = rng.random() < 0.5 and preprocess.flip  # drawn either way: the caption choice below keeps its stream
    arrays = []
    for img in (image, seg, sketch):
        a = np.asarray(img.crop((x, y, x + resolution, y + resolution)))
        arrays.append(a[:, ::-1] if flip else a)
    image_a, seg_a, sketch_a = arrays
    if seg_a[seg_a != IGNORE].max(initial=0) >= num_classes:
        raise DataError(f"sample {sample.get('__key__')}: class id >= {num_classes} in seg.png")
    captions = "clip_text.npy" in sample and json.loads(sample.get("json", b"{}")).get("text") != "image"
    texts = _npy(sample["clip_text.npy"]) if captions else np.zeros((0,))
    text = texts[rng.randrange(len(texts))] if texts.ndim == 2 and len(texts) else _npy(sample["clip.npy"])
    return {
        "image": torch.from_numpy(image_a.copy()).permute(2, 0, 1).float() / 127.5 - 1,
        "seg": torch.from_numpy(seg_a.copy()),
        "sketch": torch.from_numpy(sketch_a.copy()).float()[None] / 255,
        "text": torch.from_numpy(text.astype(np.float32)),
        "clip_image": torch.from_numpy(_npy(sample["clip.npy"]).astype(np.float32)),  # Unite-and-Conquer's text
    }


def seg_one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float one-hot maps [B, C, H, W] of uint8 class ids [B, H, W], on their device; 255 (ignore) is all zero."""
    ids = labels.long()
    onehot = torch.zeros(len(ids), num_classes + 1, *ids.shape[1:], device=ids.device)
    onehot.scatter_(1, torch.where(ids == IGNORE, num_classes, ids)[:, None], 1.0)
    return onehot[:, :num_classes]


def to_device(batch: dict, device, num_classes: int) -> dict:
    """A loader batch as the networks take it, on `device`: copied without waiting (from pinned memory, the copy
    overlaps compute), the segmentation made one-hot there, and the style reference = the image itself (main
    paper Sec. 3)."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    batch["seg"] = seg_one_hot(batch["seg"], num_classes)
    batch["style"] = batch["image"]
    return batch


class ShardLoader:
    """Endless batches; epoch e reads resampled shards seeded by (seed, e, rank, worker). `position` =
    (epoch, batches taken in it) restores the exact stream. Each epoch starts new worker processes (its seeds
    are theirs), and a position inside an epoch is reached by decoding that epoch's earlier batches again: resume
    points at multiples of `epoch_batches` replay nothing."""

    def __init__(self, urls: list[str], resolution: int, num_classes: int, batch_size: int, *, seed: int = 0,
                 workers: int = 0, shuffle_buffer: int = 1000, epoch_batches: int = 1000,
                 preprocess: Preprocess = Preprocess(), pin_memory: bool = False, skip_bad: bool = False):
        self.urls, self.resolution, self.num_classes, self.preprocess = urls, resolution, num_classes, preprocess
        self.skip_bad = skip_bad  # unreadable shards and unusable samples: skipped and counted, else an error
        self.pin_memory = pin_memory  # page-locked batches: the copy to a GPU can then run asynchronously
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.shuffle_buffer, self.epoch_batches = shuffle_buffer, epoch_batches
        self.position = (0, 0)

    def _epoch(self, epoch: int):
        seed = self.seed * 1_000_003 + epoch
        bad = BadData(self.skip_bad)  # one per epoch and worker process: its count is logged with each skip

        def examples(src):
            rng = random.Random(f"{seed}-{pytorch_worker_seed()}")
            for sample in src:
                try:
                    yield make_example(sample, self.resolution, self.num_classes, rng, self.preprocess)
                except (OSError, ValueError, KeyError) as e:
                    bad.sample_error(sample, e)

        pipeline = wds.DataPipeline(
            wds.ResampledShards(self.urls, seed=seed, deterministic=True),
            wds.tarfile_to_samples(handler=bad.read_error),
            wds.shuffle(self.shuffle_buffer, initial=min(100, self.shuffle_buffer), rng=random.Random(seed)),
            examples,
            wds.batched(self.batch_size, collation_fn=torch.utils.data.default_collate, partial=False),
        )
        # its own generator: a DataLoader otherwise draws its worker seed from the global torch RNG
        loader = wds.WebLoader(pipeline, batch_size=None, num_workers=self.workers, pin_memory=self.pin_memory,
                               generator=torch.Generator().manual_seed(seed))
        return loader.with_epoch(self.epoch_batches)

    def __iter__(self):
        epoch, skip = self.position
        if skip >= self.epoch_batches:  # saved after an epoch's last batch: the next one starts, nothing replayed
            epoch, skip = epoch + 1, 0
        while True:
            for index, batch in enumerate(self._epoch(epoch)):
                if index < skip:  # resuming inside an epoch: replay up to the saved position
                    continue
                self.position = (epoch, index + 1)
                yield batch
            epoch, skip = epoch + 1, 0
            self.position = (epoch, 0)

    def state_dict(self) -> dict:
        return {"epoch": self.position[0], "batch": self.position[1]}

    def load_state_dict(self, state: dict) -> None:
        self.position = (int(state["epoch"]), int(state["batch"]))
