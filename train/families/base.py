"""What a model family declares besides its code, importing no torch: its params section (the loop settings every
trained family shares, `ModelTrainParams`, and `VGGTrainParams` for a loss on the VGG-19), its configuration names,
how to build it and the published tables that measured it (`Declaration`, which the registry in
train/families/__init__.py lists; `PaperTable`)."""
from dataclasses import dataclass, field
from typing import Callable, Literal

from pydantic import Field, model_validator

from ..sections import Section


@dataclass(frozen=True)
class PaperTable:
    """One published table that measured a family, for `pipeline compare` to set a run's numbers beside: where it
    is, the dataset profile it corresponds to, the resolution and FID reference split it was measured at (None:
    not stated), its numbers in metrics.json's units (fractions where the paper prints percentages), and what
    differs from the project's profile even when those match."""

    source: str
    dataset: str
    resolution: int | None
    reference: str | None
    numbers: dict[tuple[str, str], float]  # (condition, metric key) -> the printed number
    caveat: str = ""


@dataclass(frozen=True)
class Declaration:
    """One model family as the registry lists it: its params section class (`train.<name>` in params.yaml), the
    names of its configurations (`pipeline train --config`), `build()`, which imports its code (and torch)
    and returns its ModelFamily, and the published tables that measured it, by an id unique among families."""

    params: type[Section]
    configs: tuple[str, ...]
    build: Callable[[], object]  # -> train.models.ModelFamily
    published: dict[str, PaperTable] = field(default_factory=dict)


class ModelTrainParams(Section):
    """Training of one model family: architecture configuration, length, seed, data loading, checkpoint cadence."""

    config: str | None = Field(None, description="architecture configuration; default: the dataset's train_config")
    steps: int = Field(200, ge=1, description="training iterations (each: G step, D step, R1 every 16th)")
    lr_decay_start: int | None = Field(None, ge=0, description="steps at the full learning rate before it decays "
                                       "linearly to 0 at `steps`; null: the family's (SPADE, MoNCE: half of "
                                       "`steps`; the others: constant)")
    seed: int = Field(0, ge=0)
    batch_size: int | None = Field(None, ge=2, description="global batch; default: the configuration's")
    batch_gpu: int | None = Field(None, ge=1, description="samples per device in one gradient accumulation "
                                  "round (must divide batch_size / GPUs); default: the device's whole share")
    workers: int = Field(2, ge=0, description="data loader worker processes per rank")
    shuffle_buffer: int = Field(1000, ge=1, description="webdataset sample shuffle buffer")
    epoch_batches: int = Field(1000, ge=1, description="batches per loader epoch (webdataset with_epoch)")
    skip_bad_samples: bool = Field(False, description="a training shard that cannot be read on, or a sample that "
                                   "cannot be used: skipped, counted and logged; false: an error naming it")
    ema_kimg: float | None = Field(None, gt=0, description="half-life of the generator's moving average in "
                                   "thousands of images; null: global batch * 10/32 (StyleGAN2-ADA)")
    ema_rampup: float | None = Field(0.05, gt=0, description="early on the half-life is at most this fraction of "
                                     "the images seen (StyleGAN2's ramp-up); null: none")
    ema_rate: float | None = Field(None, gt=0, lt=1, description="a fixed decay of the moving average per step "
                                   "(ADM's --ema_rate), replacing ema_kimg and ema_rampup; null: the half-life")
    snapshot_every: int = Field(100, ge=1, description="steps between saves (weight snapshot + training state: "
                                "a resume point); at multiples of epoch_batches a resume replays no data")
    keep_states: int = Field(2, ge=1, description="the newest saves kept whole; older ones are deleted once a "
                             "newer one is on disk, except the weight snapshots of keep_snapshot_every")
    keep_snapshot_every: int | None = Field(10000, ge=1, description="steps between weight snapshots kept for "
                                            "good (also saved there); null: every weight snapshot is kept")
    sample_every: int = Field(100, ge=1, description="steps between sample grids")
    log_every: int = Field(10, ge=1, description="steps between reads of the logged losses (a GPU sync each); "
                           "every step is still logged")
    mixed_precision: bool = Field(True, description="fp16 autocast with ±256 clamping; used on CUDA only")
    fit: Literal["random-crop", "resize", "resize-crop"] = Field(
        "random-crop", description="to the training resolution R: short side scaled then a random square crop "
        "(Landscape), the whole image scaled to a square (MS-COCO, MM-CelebA-HQ; supplement A), or the whole image "
        "scaled to 286/256 R (bicubic) then a random R x R crop (the SPADE family's official loaders)")
    flip: bool = Field(False, description="random horizontal flips (PoE-GAN's supplement names none; the SPADE "
                       "family's loaders flip)")
    tensorboard: bool = Field(True, description="TensorBoard event files in the run folder (every logged number, "
                              "images/s, sample grids): `tensorboard --logdir data/runs`")
    wandb_project: str | None = Field(None, description="Weights & Biases project to log to as well (needs `pip "
                                      "install wandb` and a login); null: off, nothing leaves the machine")

    @model_validator(mode="after")
    def _decay_within_the_run(self):
        if self.lr_decay_start is not None and self.lr_decay_start > self.steps:
            raise ValueError(f"lr_decay_start {self.lr_decay_start} is after steps {self.steps}: set it to at most "
                             "steps (steps itself: a constant rate), or null for the family's schedule")
        return self


class VGGTrainParams(ModelTrainParams):
    """A trained family whose loss uses the VGG-19 (PoE-GAN's image contrastive loss, SPADE's perceptual loss,
    MoNCE's contrast): also where its weights come from."""

    vgg_weights: str = Field("vgg19-imagenet", description="weights registry name or file; 'random' only for "
                             "tests/demos (the loss term on it is then meaningless)")
