"""The training loop and loss schedule: EMA, lazy R1, exact kill-and-resume, logs, snapshots, sample grids."""
import copy
import json
import random
from dataclasses import replace

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from train_shards import write_training_shards

from annotators.labelmaps import load_label_map
from train.checkpoint import load
from shardio.modalities import MODEL_MODALITIES as MODALITIES
from train.families.poegan.configs import get_config
from train.ema import ema_beta
from train.families.poegan import BETAS, GRAD_CLIP
from train.loop import MODALITY_DROPOUT, RunSpec, modality_masks, train, update_ema
from train.families.poegan.loss import R1_GAMMA, R1_INTERVAL
from train.models import family
from train.samples import PATTERNS
from train.vgg import VGGRelu51

# A smaller cousin of `tiny` so the loop tests stay fast on 2 cores.
MICRO = replace(get_config("tiny"), resolution=16, batch_size=4, channel_base=8, channel_max=32,
                latent_base=2, latent_max=8, kl_weights=get_config("coco-64").kl_weights)
LABELS = load_label_map("coco-stuff-182")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    return [str(p) for p in write_training_shards(d, images=6, per_shard=3, short_side=20)]


def _spec(run_dir, urls, steps, **kw):
    return RunSpec(run_dir, urls, urls, LABELS.num_classes, LABELS.colours, steps=steps, shuffle_buffer=4,
                   epoch_batches=4, snapshot_every=3, sample_every=3, grid_size=2, **kw)


def _train(spec):
    return train(family("poegan"), MICRO, VGGRelu51(None), spec, progress=False)


def test_ema_matches_its_definition():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = copy.deepcopy(model)
    before = [p.clone() for p in ema.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    update_ema(ema, model, 0.9)
    for p_ema, p0, p in zip(ema.parameters(), before, model.parameters()):
        assert torch.allclose(p_ema, 0.9 * p0 + 0.1 * p)


def test_ema_ramps_up_as_stylegan2_does():
    # first update: G itself; then the half-life is 5% of the images seen until it reaches ema_kimg
    assert ema_beta(0, 32, 10.0, 0.05) == 0.0
    assert ema_beta(32 * 100, 32, 10.0, 0.05) == pytest.approx(0.5 ** (32 / 160))
    assert ema_beta(10**9, 32, 10.0, 0.05) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(0, 32, 10.0, None) == pytest.approx(0.5 ** (32 / 10_000))  # no ramp-up
    assert ema_beta(10**9, 64, None, None) == pytest.approx(0.5 ** (64 / 20_000))  # default: batch * 10/32 kimg


def test_a_short_run_ema_is_not_its_initial_weights(shards, tmp_path):
    _train(_spec(tmp_path, shards, 3))
    snap = load(tmp_path / "network-snapshot-000003.pt")
    torch.manual_seed(0)
    initial = family("poegan").networks(MICRO, LABELS.num_classes)[0].state_dict()
    for name, p_ema in snap["G_ema"].items():
        if p_ema.is_floating_point() and not torch.equal(snap["G"][name], initial[name]):
            # with a fixed 0.999 decay G_ema would stay within 0.3% of the initial weights after 3 steps
            moved = (p_ema - initial[name]).norm() / (snap["G"][name] - initial[name]).norm()
            assert moved > 0.5, name


def test_r1_runs_only_every_16th_step():
    fam = family("poegan")
    G, D = fam.networks(MICRO, 5)
    loss = fam.loss(G, D, VGGRelu51(None), MICRO)
    r = MICRO.resolution
    batch = {"image": torch.rand(2, 3, r, r) * 2 - 1, "text": torch.randn(2, MICRO.clip_dim),
             "seg": torch.rand(2, 5, r, r), "sketch": torch.rand(2, 1, r, r)}
    batch["style"] = batch["image"]
    masks = modality_masks(2, "cpu")
    (r1,) = [phase for phase in fam.phases if phase.name == "Dreg"]  # the loop runs a phase only when it is due
    ran = [step for step in range(34) if r1.due(step)]
    D.zero_grad(set_to_none=True)
    out = loss.accumulate_gradients(r1, batch, masks, torch.Tensor.backward)
    assert out["D_r1"] > 0 and D.from_rgb.weight.grad is not None
    assert ran == [0, 16, 32] and (r1.network, r1.clip) == ("D", False) and R1_INTERVAL == 16 and R1_GAMMA == 1.0


def test_grad_norms_are_clipped_except_lazy_r1s(shards, tmp_path):
    stepped = []  # the gradient norm each optimizer step applies

    def record(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        stepped.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    poegan = family("poegan")
    limit = 0.05  # below every phase's gradient norm on this tiny run (PoE-GAN's own is GRAD_CLIP = 10)
    low_clip = replace(poegan, optimizer=lambda cfg: replace(poegan.optimizer(cfg), grad_clip=limit))
    handle = register_optimizer_step_pre_hook(record)
    try:
        (logged,) = train(low_clip, MICRO, VGGRelu51(None), _spec(tmp_path, shards, 1), progress=False)
    finally:
        handle.remove()
    norms = [logged[f"{phase}_grad_norm"] for phase in ("G", "D", "Dreg")]  # step 0: G, D and R1, pre-clip
    assert min(norms) > limit
    assert stepped[:2] == pytest.approx([limit, limit], rel=1e-4)  # G and D clipped ...
    assert stepped[2] == pytest.approx(norms[2], rel=1e-5)  # ... R1 (16 steps' worth, lazily) applied whole


def test_modality_dropout_drops_each_modality_half_the_time():
    torch.manual_seed(0)
    masks = modality_masks(20000, "cpu")
    assert set(masks) == set(MODALITIES)
    for m in masks.values():
        assert abs(m.float().mean().item() - (1 - MODALITY_DROPOUT)) < 0.02
    assert MODALITY_DROPOUT == 0.5 and BETAS == (0.0, 0.99) and GRAD_CLIP == 10.0


def test_resume_from_training_state_repeats_losses_step_for_step(shards, tmp_path):
    straight = _train(_spec(tmp_path / "a", shards, 7))
    run = tmp_path / "b"
    _train(_spec(run, shards, 5))
    # killed after step 5 was logged, before its training state was written: only step 3's state survives
    for name in ("training-state-000005.pt", "network-snapshot-000005.pt"):
        (run / name).unlink()
    resumed = _train(_spec(run, shards, 7))
    assert [r["step"] for r in resumed] == [4, 5, 6, 7]
    for a, b in zip(straight[3:], resumed):
        for key, value in a.items():
            if key not in ("sec", "data_sec"):  # wall-clock times
                assert b[key] == value, (a["step"], key)
    logged = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 8))  # the lines of the lost steps were replaced, not duplicated


def test_a_run_killed_and_resumed_writes_the_bytes_of_an_uninterrupted_one(shards, tmp_path):
    # each run is a new process: its Python RNG starts from the OS's entropy, as random.seed(None) gives it
    random.seed()
    _train(_spec(tmp_path / "a", shards, 7))
    run = tmp_path / "b"
    random.seed()
    _train(_spec(run, shards, 5))
    for name in ("training-state-000005.pt", "network-snapshot-000005.pt"):  # killed before step 5's save
        (run / name).unlink()
    random.seed()
    _train(_spec(run, shards, 7))
    for name in ("network-snapshot-000006.pt", "training-state-000006.pt", "network-snapshot-000007.pt",
                 "training-state-000007.pt", "samples-000006.png", "samples-000007.png"):
        assert (run / name).read_bytes() == (tmp_path / "a" / name).read_bytes(), name


def test_mixed_precision_logs_the_steps_its_loss_scaler_skips(shards, tmp_path):
    # CPU fp16 autocast stands in for CUDA's AMP: G's scaled gradients overflow while the loss scale calibrates
    # from 2**16, so its first steps are skipped, their gradient norms NaN or inf (the false FAIL gpu_check had)
    records = _train(_spec(tmp_path, shards, 6, amp_on_cpu=torch.float16, log_every=2))
    skips = [r["G_skipped"] for r in records]
    assert set(skips) == {0.0, 1.0} and all(r["D_skipped"] in (0.0, 1.0) for r in records)
    for r in records:
        for phase in ("G", "D"):
            assert torch.isfinite(torch.tensor(r[f"{phase}_grad_norm"])).item() == (r[f"{phase}_skipped"] == 0.0)
    # each skip halved the scaler's scale (no growth within 2000 steps): the flags are what the scaler did
    state = load(tmp_path / "training-state-000006.pt")
    for phase in ("G", "D"):
        assert state["scaler"][phase]["scale"] == 2.0 ** (16 - sum(r[f"{phase}_skipped"] for r in records))
    waits = [r["data_sec"] for r in records]  # seconds waiting for batches, cumulative, within the run's time
    assert waits == sorted(waits) and 0 < waits[-1] < records[-1]["sec"]


def test_run_writes_snapshots_state_log_and_sample_grids(shards, tmp_path):
    records = _train(_spec(tmp_path, shards, 3))
    snap = load(tmp_path / "network-snapshot-000003.pt")
    assert set(snap) == {"G", "D", "G_ema"}
    state = load(tmp_path / "training-state-000003.pt")
    assert {"opt_G", "opt_D", "step", "loss", "rng", "loader", "scaler"} <= set(state)
    assert state["step"] == 3 and state["loss"]["kl_balance"]["weights"].shape == (len(MICRO.resolutions),)
    assert state["opt_G"]["param_groups"][0]["betas"] == BETAS
    # lazy R1 every 16 steps: D's Adam runs at lr * 16/17 and betas ** (16/17) (StyleGAN2); G has no regulariser
    c = R1_INTERVAL / (R1_INTERVAL + 1)
    assert state["opt_G"]["param_groups"][0]["lr"] == MICRO.lr
    assert state["opt_D"]["param_groups"][0]["lr"] == pytest.approx(MICRO.lr * c)
    assert state["opt_D"]["param_groups"][0]["betas"] == pytest.approx((0.0, 0.99 ** c))
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged[0]["D_r1"] > 0 and "D_r1" not in logged[1]  # R1 on step 0 only here
    for key in ("G_adv", "G_kl", "G_img_contrastive", "G_text_contrastive", "D_adv", "kl_seg", "kl_text"):
        assert all(key in r for r in logged), key
    assert records[-1]["step"] == 3
    from PIL import Image
    grid = Image.open(tmp_path / "samples-000003.png")
    # rows: image, seg, sketch, then none / 4 singles / 6 pairs / all; columns: the fixed conditions
    assert len(PATTERNS) == 12 and grid.size == (2 * MICRO.resolution, (3 + 12) * MICRO.resolution)


def test_a_short_run_on_a_few_images_lowers_its_losses(shards, tmp_path):
    records = _train(_spec(tmp_path, shards[:1], 24, batch_size=3))
    first, last = records[:6], records[-6:]

    def mean(rs, key):
        return sum(r[key] for r in rs) / len(rs)

    assert mean(last, "G_kl") < 0.5 * mean(first, "G_kl")
    assert mean(last, "D_adv") < mean(first, "D_adv")  # D learns to tell the generated from the real


@pytest.mark.slow
def test_tiny_overfits_four_images_and_follows_their_segmentation(tmp_path):
    """~1,500 steps (8-25 min on 2 cores): conditioned on a training segmentation the samples reproduce its
    layout (nearest class colour agreement), far better than unconditioned or against another image's layout."""
    from train.data import ShardLoader, to_device
    from layout_measures import class_colours, layout_agreement
    from train.samples import pattern_masks

    urls = [str(p) for p in write_training_shards(tmp_path / "shards", images=4, per_shard=4)]
    cfg = get_config("tiny")
    spec = RunSpec(tmp_path / "run", urls, urls, LABELS.num_classes, LABELS.colours, steps=1500, batch_size=4,
                   snapshot_every=1000, sample_every=500, shuffle_buffer=8, epoch_batches=10, ema_kimg=0.026)
    records = train(family("poegan"), cfg, VGGRelu51(None), spec, progress=False)
    assert sum(r["G_kl"] for r in records[-50:]) < sum(r["G_kl"] for r in records[:50])
    G, _ = family("poegan").networks(cfg, LABELS.num_classes)
    G.load_state_dict(load(tmp_path / "run" / "network-snapshot-001500.pt")["G_ema"])
    batch = to_device(next(iter(ShardLoader(urls, cfg.resolution, LABELS.num_classes, 4, seed=1, shuffle_buffer=1))),
                      "cpu", LABELS.num_classes)
    cond = {**batch, "style": batch["image"]}
    colours = class_colours(batch["image"], batch["seg"])
    with torch.no_grad():
        torch.manual_seed(0)
        with_seg, _ = G.eval()(cond, pattern_masks(("seg",), 4))
        without, _ = G(cond, pattern_masks((), 4))
    followed = layout_agreement(with_seg, batch["seg"], colours)
    assert followed > layout_agreement(without, batch["seg"], colours) + 0.1  # measured: 0.79 vs 0.58
    assert followed > layout_agreement(with_seg, batch["seg"].roll(1, 0), colours) + 0.1  # vs 0.49
