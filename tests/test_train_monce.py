"""MoNCE's paired setting (`spade-seg-monce`): the Sinkhorn plan, the (modulated) patch contrast, deterministic
SPADE, the configurations, and `pipeline train --model spade-seg-monce` (exact resume, dry-run counts)."""
import math
import re

import pytest
import torch
import torch.nn.functional as F
from test_train_cli import REPO_PARAMS, _run
from test_train_spade import NUM_CLASSES, _batch, _losses, _train, shards  # noqa: F401 (shards: a fixture)

from pipeline.params import load_params
from train.families.spade.monce_loss import (NCE_T, OT_LAYER, MoNCELoss, monce, patch_nce, sample_locations,
                                        sinkhorn_plan)
from train.families.spade.spade_loss import VGG_WEIGHTS, vgg_features
from train.models import GENERATOR_PHASE, count_parameters, family
from train.vgg import VGGRelu51

pytestmark = pytest.mark.usefixtures("one_thread")


def _features(b=2, p=16, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(b, p, c, generator=g), dim=-1) for _ in range(2)]


def test_sinkhorn_plan_has_unit_marginals_after_50_iterations():
    q, k = _features()
    plan = sinkhorn_plan(q, k)
    assert plan.shape == (2, 16, 16) and (plan >= 0).all()
    assert torch.allclose(plan.sum(-1), torch.ones(2, 16), atol=1e-4)
    assert torch.allclose(plan.sum(-2), torch.ones(2, 16), atol=1e-4)
    assert plan.diagonal(dim1=1, dim2=2).max() < 1e-3  # a location is never transported to itself


def test_without_transport_the_loss_is_patchnce_over_the_same_images_locations():
    q, k = _features()
    expected = []
    for b in range(2):
        for i in range(16):
            logits = [q[b, i] @ k[b, i]] + [q[b, i] @ k[b, j] for j in range(16) if j != i]
            expected.append(-torch.log_softmax(torch.stack(logits) / NCE_T, 0)[0])
    assert patch_nce(q, k).item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_loss_does_not_depend_on_the_transport_weight_but_on_the_plan():
    q, k = _features()
    plan = sinkhorn_plan(q, k)
    assert patch_nce(q, k, plan, ot_weight=1.0).item() == pytest.approx(patch_nce(q, k, plan, 256.0).item(),
                                                                         rel=1e-5)
    assert abs(patch_nce(q, k, plan).item() - patch_nce(q, k).item()) > 1e-3


def test_hand_computed_value_on_two_locations():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    k = torch.tensor([[[0.6, 0.8], [0.8, 0.6]]])
    # each location: positive cos 0.6, one negative cos 0.8 -> CE = log(1 + exp(0.2 / 0.07))
    expected = math.log(1 + math.exp(0.2 / 0.07))
    assert patch_nce(q, k).item() == pytest.approx(expected, rel=1e-5)
    # two locations, diagonal masked: the plan sends each to the other (0.99998, by hand from exp(0.8), exp(0),
    # exp(-10)) and shifts both logits by the same log -> the same value
    plan = sinkhorn_plan(q, k)
    assert plan[0, 0, 1].item() == pytest.approx(1, abs=1e-4) and plan[0, 1, 0].item() == pytest.approx(1, abs=1e-4)
    assert patch_nce(q, k, plan).item() == pytest.approx(expected, rel=1e-4)


def test_gradients_reach_the_fake_features_through_the_plan_and_never_the_real_ones():
    q, k = _features()
    q.requires_grad_(True), k.requires_grad_(True)
    patch_nce(q, k, sinkhorn_plan(q, k)).backward()
    through_plan = q.grad.clone()
    assert k.grad is None
    q.grad = None
    patch_nce(q, k, sinkhorn_plan(q, k).detach()).backward()
    assert not torch.allclose(through_plan, q.grad)


def test_monce_weights_plain_patchnce_on_relu1_to_4_and_the_modulated_one_on_relu5_1():
    vgg = VGGRelu51(None)
    fake, real = _batch(res=64)["image"], _batch(res=64, seed=1)["image"]
    torch.manual_seed(0)
    value = monce(vgg, fake, real)
    torch.manual_seed(0)
    real_features = vgg_features(vgg, real)
    pairs = [(F.normalize(f.flatten(2)[:, :, at].transpose(1, 2), dim=-1),
              F.normalize(r.flatten(2)[:, :, at].transpose(1, 2), dim=-1))
             for f, r, at in zip(vgg_features(vgg, fake), real_features, sample_locations(real_features))]
    assert [q.shape[1] for q, _ in pairs] == [256, 256, 256, 64, 16]  # 256 of each map, all of small ones
    plain = [patch_nce(q, k) for q, k in pairs]
    modulated = patch_nce(*pairs[OT_LAYER], sinkhorn_plan(*pairs[OT_LAYER]))
    expected = sum(w * term for w, term in zip(VGG_WEIGHTS[:OT_LAYER], plain)) + VGG_WEIGHTS[OT_LAYER] * modulated
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(expected.item() - sum(w * t for w, t in zip(VGG_WEIGHTS, plain)).item()) > 1e-4


def test_deterministic_spade_generates_from_the_segmentation_alone():
    fam = family("spade-seg-monce")
    cfg = fam.config("tiny")
    G, _ = fam.networks(cfg, NUM_CLASSES)
    G.eval()
    assert not cfg.vae and G.modalities == ("seg",) and not hasattr(G, "encoder")
    assert isinstance(G.fc, torch.nn.Conv2d) and G.fc.in_channels == NUM_CLASSES and G.fc.kernel_size == (3, 3)
    batch = _batch()
    image, posterior = G(batch)
    assert posterior is None and image.shape == (2, 3, 32, 32)
    assert torch.equal(image, G({**batch, "style": -batch["style"]})[0])  # no style path, no noise
    assert not torch.allclose(image, G({**batch, "seg": batch["seg"].roll(1, 0)})[0])


def test_generator_objective_is_spade_without_kl_and_with_the_contrast_at_lambda_vgg():
    fam = family("spade-seg-monce")
    cfg = fam.config("tiny")
    G, D = fam.networks(cfg, NUM_CLASSES)
    G.eval(), D.eval()
    loss = fam.loss(G, D, VGGRelu51(None), cfg)
    assert isinstance(loss, MoNCELoss)
    totals = []
    torch.manual_seed(1)
    terms = loss.accumulate_gradients(GENERATOR_PHASE, _batch(), {}, totals.append)
    assert set(terms) == {"G_hinge", "G_feat", "G_monce"}
    expected = terms["G_hinge"] + 10 * terms["G_feat"] + 50 * terms["G_monce"]
    assert totals[0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_configurations_follow_the_official_scripts():
    fam = family("spade-seg-monce")
    coco, celeba = fam.config("coco-256"), fam.config("celeba-256")
    assert (coco.vgg_weight, coco.batch_size, celeba.vgg_weight, celeba.batch_size) == (50.0, 12, 100.0, 20)
    assert not coco.vae and not celeba.vae and coco.condition == "seg" and coco.resolution == 256
    opt = fam.optimizer(coco)
    assert (opt.lr_G, opt.lr_D, opt.betas, opt.grad_clip) == (1e-4, 4e-4, (0.0, 0.9), None)
    with_vae, _ = family("spade-seg").networks(family("spade-seg").config("coco-256"), 182)
    without, _ = fam.networks(coco, 182)
    assert count_parameters(with_vae) - count_parameters(without) == (
        count_parameters(with_vae.encoder) + count_parameters(with_vae.fc) - count_parameters(without.fc))


def test_real_profiles_train_for_the_official_scripts_epochs():
    params, fam = load_params(REPO_PARAMS), family("spade-seg-monce")
    # (profile, its configuration, training images, epochs: ADE20K's 200 for COCO-like scenes, CelebA-HQ's 60)
    runs = [("coco", "coco-256", 118_287, 200), ("mm-celeba-hq", "celeba-256", 24_000, 60)]
    for profile, config, images, epochs in runs:
        section = params.for_dataset(profile).train.model("spade-seg-monce")
        # the official loader drops the last partial batch of each epoch
        assert section.steps == epochs * (images // fam.config(config).batch_size) and section.fit == "resize-crop"


def test_tiny_spade_seg_monce_from_the_cli_trains_and_resumes_exactly(shards, tmp_path):  # noqa: F811
    whole = _train(tmp_path, shards, "spade-seg-monce", 4)
    reference = _losses(whole)
    assert [r["step"] for r in reference] == [1, 2, 3, 4]
    assert {"G_hinge", "G_feat", "G_monce", "D_hinge"} <= set(reference[0]) and "G_kl" not in reference[0]
    for name in ("network-snapshot-000004.pt", "training-state-000004.pt", "samples-000004.png"):
        (whole / name).unlink()  # as if killed after step 2's training state
    resumed = _train(tmp_path, shards, "spade-seg-monce", 4)
    assert _losses(resumed) == reference


@pytest.mark.parametrize("config", ["tiny", "coco-256", "celeba-256"])
def test_dry_run_prints_generator_and_discriminator_sizes(config):
    result = _run(["--model", "spade-seg-monce", "--config", config, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert int(re.search(r"^generator parameters: (\d+)$", result.output, re.M)[1]) > 0
    assert int(re.search(r"^discriminator parameters: (\d+)$", result.output, re.M)[1]) > 0
