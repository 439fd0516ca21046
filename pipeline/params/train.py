"""Params of training: one section per model family under `train`."""
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import Section


class ModelTrainParams(Section):
    """Training of one model family: configuration profile, length, seed, data loading, checkpoint cadence."""

    config: str | None = Field(None, description="configuration profile; default: the dataset's train_config")
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
    fit: Literal["random-crop", "resize"] = Field(
        "random-crop", description="to the training resolution: short side scaled then a random square crop "
        "(Landscape), or the whole image scaled to a square (MS-COCO, MM-CelebA-HQ; supplement A)")
    flip: bool = Field(False, description="random horizontal flips (the supplement names none)")
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


class PoEGANParams(ModelTrainParams):
    """PoE-GAN: also where the VGG-19 of the image contrastive loss comes from."""

    vgg_weights: str = Field("vgg19-imagenet", description="weights registry name or file; 'random' only for "
                             "tests/demos (the image contrastive loss is then meaningless)")


class SPADEParams(ModelTrainParams):
    """SPADE baselines: also where the VGG-19 of the perceptual loss comes from."""

    vgg_weights: str = Field("vgg19-imagenet", description="weights registry name or file; 'random' only for "
                             "tests/demos (the perceptual loss is then meaningless)")


class ClusterGuidedParams(Section):
    """Cluster-guided synthesis fitted on the newest PoE-GAN snapshot (docs/cluster-guided.md). The supplement gives
    binary clusters per layer as best and k-means; every number here is a project choice."""

    config: str | None = Field(None, description="configuration profile of the PoE-GAN run it fits from (must be "
                               "train.poegan's); default: the dataset's train_config")
    seed: int = Field(0, ge=0, description="codes, fixed local latents, k-means, mapper init, IMLE draws")
    fit: Literal["random-crop", "resize"] = Field(
        "random-crop", description="how evaluation brings test images to the resolution (as train.poegan.fit)")
    codes: int = Field(10000, ge=2, description="latent codes z^0 ~ N(0, I) sampled and clustered")
    resolutions: list[int] = Field([8], min_length=1, description="decoder resolutions whose features are "
                                   "clustered, each on its own (one attribute per layer)")
    clusters: int = Field(2, ge=1, description="k-means clusters per resolution (the supplement: 2 is best; 1: "
                          "one mapper over every code, the supplement's FID check of IMLE's domain gap)")
    pool: int = Field(4, ge=1, description="features average-pooled to pool x pool before k-means")
    kmeans_inits: int = Field(10, ge=1, description="k-means restarts (the best inertia is kept)")
    noise_dim: int = Field(64, ge=1, description="auxiliary noise e of the mappers T_c")
    mapper_hidden: int = Field(512, ge=1, description="hidden width of each mapper MLP")
    mapper_layers: int = Field(3, ge=1, description="fully-connected layers of each mapper MLP")
    rounds: int = Field(20, ge=1, description="IMLE rounds: a nearest-neighbour search, then steps_per_round")
    candidates: int = Field(10, ge=1, description="generated codes per cluster code in each IMLE search")
    steps_per_round: int = Field(100, ge=1, description="Adam steps on the round's (code, nearest) pairs")
    batch_size: int = Field(256, ge=1, description="IMLE minibatch, and codes per generator forward")
    lr: float = Field(0.01, gt=0, description="Adam learning rate of the mappers")
    consistency_samples: int = Field(1000, ge=1, description="T_c samples per cluster scored for self-consistency")
    grid_size: int = Field(4, ge=1, description="each cluster's sample grid is grid_size x grid_size")


class UniteConquerParams(ModelTrainParams):
    """Unite-and-Conquer: how its experts are combined at sampling (paper Eq. 10)."""

    sampler: Literal["ddim", "ancestral"] | None = Field(None, description="DDIM (eta 0) or ancestral sampling; "
                                                         "null: the profile's (DDIM)")
    sample_steps: int | None = Field(None, ge=1, le=1000, description="respaced sampling steps; null: the "
                                     "profile's (100; tiny 50)")
    weights: dict[Literal["seg", "sketch", "text"], Annotated[float, Field(ge=1)]] = Field(
        {"seg": 1.0, "sketch": 1.0, "text": 1.0}, description="guidance weight w_i >= 1 per expert (Eq. 10)")
    reliabilities: dict[Literal["seg", "sketch", "text"], Annotated[float, Field(ge=0)]] | None = Field(
        None, description="reliability a_j of each expert's unconditional estimate, normalised over the experts "
        "in use; null: 1/N (paper Sec. 4.1)")
    eval_images: int | None = Field(None, ge=1, description="at most this many test images per evaluation "
                                    "condition (sampling costs steps x (experts + 1) passes); null: the profile's")


class TrainParams(Section):
    """All model families, keyed by the model name (`spade-seg`; the attribute is `spade_seg`)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    poegan: PoEGANParams = PoEGANParams()
    spade_seg: SPADEParams = Field(SPADEParams(), alias="spade-seg")
    spade_sketch: SPADEParams = Field(SPADEParams(), alias="spade-sketch")
    spade_seg_monce: SPADEParams = Field(SPADEParams(), alias="spade-seg-monce")
    inade: SPADEParams = SPADEParams()
    unite_conquer: UniteConquerParams = Field(UniteConquerParams(), alias="unite-conquer")
    cluster_guided: ClusterGuidedParams = Field(ClusterGuidedParams(), alias="cluster-guided")

    def model(self, name: str) -> ModelTrainParams | ClusterGuidedParams:
        """The section of model family `name`; unknown names raise KeyError."""
        field = name.replace("-", "_")
        if field not in type(self).model_fields:
            raise KeyError(f"params have no section train.{name}")
        return getattr(self, field)
