"""The PoE-GAN objective is composed as the paper states: each phase backpropagates exactly the sum of its terms
with Table 3's weights, the adversarial terms have the right sign, R1 is gamma/2 * |grad D(real)|^2 times the
lazy interval on real images only, and the discriminator ignores a dropped modality."""
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from shardio.modalities import MODEL_MODALITIES as MODALITIES
from train.families.poegan.configs import get_config
from train.families.poegan.loss import R1_GAMMA, R1_INTERVAL, R1_PHASE, PoEGANLoss, contrastive
from train.families.poegan.discriminator import Discriminator
from train.families.poegan.generator import Generator
from train.models import DISCRIMINATOR_PHASE, GENERATOR_PHASE
from train.vgg import VGGRelu51

# Distinct, non-unit weights so a term dropped or weighted wrongly changes the total.
CFG = replace(get_config("tiny"), resolution=16, channel_base=8, channel_max=32, latent_base=2, latent_max=8,
              image_contrastive=3.0, text_contrastive=0.7)
CLASSES = 5

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = CFG.resolution
    batch = {"image": torch.rand(n, 3, r, r, generator=g) * 2 - 1, "text": torch.randn(n, CFG.clip_dim, generator=g),
             "seg": torch.rand(n, CLASSES, r, r, generator=g), "sketch": torch.rand(n, 1, r, r, generator=g)}
    batch["style"] = batch["image"]
    return batch


def _all_present(n=4):
    return {m: torch.ones(n, dtype=torch.bool) for m in MODALITIES}


def _objective():
    """A loss object and the list its phases record their totals into when given its `append` as their backward
    (instead of backpropagating)."""
    torch.manual_seed(0)
    G, D = Generator(CFG, CLASSES), Discriminator(CFG, CLASSES)
    recorded = []
    loss = PoEGANLoss(G, D, VGGRelu51(None), CFG)
    return loss, recorded


def _phase(phase):
    """Run `phase` on a fixed batch; returns the loss object, batch, masks, logged terms and the backpropagated
    total, with the latent noise reseeded so that the caller can recompute the terms."""
    loss, recorded = _objective()
    batch, masks = _batch(), _all_present()
    torch.manual_seed(5)
    terms = loss.accumulate_gradients(phase, batch, masks, recorded.append)
    (total,) = recorded
    torch.manual_seed(5)
    return loss, batch, masks, terms, total


def test_generator_total_is_adversarial_plus_weighted_kl_plus_weighted_contrastive_terms():
    loss, batch, masks, terms, total = _phase(GENERATOR_PHASE)
    fake, _ = loss.G(batch, masks)  # the same latent noise: recompute every term from the networks directly
    logits, image_emb, text_emb = loss.D(fake, batch, masks)
    adv = sum(F.softplus(-logit).mean() for logit in logits)  # non-saturating: G wants D(fake) high
    img_c = contrastive(loss.vgg(fake), loss.vgg(batch["image"]), loss.G.log_temperature)
    txt_c = contrastive(image_emb, text_emb, loss.D.log_temperature)
    assert float(terms["G_adv"]) == pytest.approx(adv.item(), rel=1e-5)
    assert float(terms["G_img_contrastive"]) == pytest.approx(img_c.item(), rel=1e-5)
    assert float(terms["G_text_contrastive"]) == pytest.approx(txt_c.item(), rel=1e-5)
    assert float(terms["G_kl"]) > 0
    expected = adv + float(terms["G_kl"]) + CFG.image_contrastive * img_c + CFG.text_contrastive * txt_c
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_kl_term_is_the_table_3_weighted_sum_over_modalities_and_levels():
    loss, _ = _objective()
    n = 4
    masks = _all_present(n)
    masks["sketch"][0] = False  # a dropped modality contributes nothing for that sample
    kls = [{m: torch.full((n,), float(k + 1)) for m in ("seg", "sketch")} for k in range(len(CFG.resolutions) + 1)]
    total, _ = loss.kl_loss(kls, masks)
    w = CFG.kl_weights
    omega = loss.kl_balance.weights  # the running rebalancing weights this call used
    per_level = [(w["seg"] * (k + 1) + w["sketch"] * (k + 1) * (n - 1) / n) for k in range(len(kls))]
    expected = per_level[0] + sum(o * t for o, t in zip(omega.tolist(), per_level[1:]))
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_discriminator_total_is_logistic_loss_on_fake_and_real_plus_weighted_text_contrastive():
    loss, batch, masks, terms, total = _phase(DISCRIMINATOR_PHASE)
    with torch.no_grad():
        fake, _ = loss.G(batch, masks)
    fake_logits, _, _ = loss.D(fake, batch, masks)
    real_logits, image_emb, text_emb = loss.D(batch["image"], batch, masks)
    adv = sum(F.softplus(f).mean() + F.softplus(-r).mean() for f, r in zip(fake_logits, real_logits))
    txt_c = contrastive(image_emb, text_emb, loss.D.log_temperature)
    assert float(terms["D_adv"]) == pytest.approx(adv.item(), rel=1e-5)
    assert total.item() == pytest.approx((adv + CFG.text_contrastive * txt_c).item(), rel=1e-5)


def test_r1_is_half_gamma_times_squared_gradient_norm_on_reals_times_the_interval():
    loss, recorded = _objective()
    batch, masks = _batch(), _all_present()
    loss.G = None  # R1 must not need the generator: it is computed on real images only
    terms = loss.accumulate_gradients(R1_PHASE, batch, masks, recorded.append)
    (total,) = recorded

    real = batch["image"].clone().requires_grad_(True)
    logits, _, _ = loss.D(real, batch, masks)
    (grad,) = torch.autograd.grad(sum(logit.sum() for logit in logits), real)
    squared_norm = grad.square().sum((1, 2, 3)).mean()
    assert (R1_GAMMA, R1_INTERVAL) == (1.0, 16)  # supplement B
    assert float(terms["D_r1"]) == pytest.approx(squared_norm.item(), rel=1e-4)
    assert total.item() == pytest.approx(R1_GAMMA / 2 * squared_norm.item() * R1_INTERVAL, rel=1e-4)
    assert total.requires_grad  # the penalty reaches D's parameters (double backpropagation)


@pytest.mark.parametrize("name", MODALITIES)
def test_a_dropped_modality_leaves_the_discriminator_output_unchanged(name):
    torch.manual_seed(0)
    D = Discriminator(CFG, CLASSES)
    batch, other = _batch(seed=1), _batch(seed=2)
    changed = {**batch, name: other[name]}  # only this modality's input differs
    masks = _all_present()
    masks[name] = torch.tensor([False, True, False, True])
    with torch.no_grad():
        before, image_before, _ = D(batch["image"], batch, masks)
        after, image_after, _ = D(batch["image"], changed, masks)
    for a, b in zip(before, after):
        assert torch.equal(a[~masks[name]], b[~masks[name]])  # dropped: D cannot see the modality
        assert not torch.allclose(a[masks[name]], b[masks[name]])  # present: D does see it
    assert torch.equal(image_before, image_after)


def test_contrastive_temperature_is_bounded_below_at_0_01():
    torch.manual_seed(0)
    query, keys = torch.randn(6, 8), torch.randn(6, 8)
    at_bound = contrastive(query, keys, torch.tensor(0.01).log())
    below = torch.tensor(1e-4).log().requires_grad_(True)  # where an optimizer step may have left it
    loss = contrastive(query, keys, below)
    assert loss.item() == pytest.approx(at_bound.item(), rel=1e-6)
    assert below.item() == pytest.approx(math.log(0.01))  # clamped in place, as CLIP clamps its logit scale
    loss.backward()
    assert below.grad != 0  # it can still rise again
    assert contrastive(query, keys, torch.tensor(0.3).log()).item() != pytest.approx(at_bound.item())


def test_r1_under_mixed_precision_is_the_fp32_penalty():
    # autocast cannot take the GradScaler's loss scale into R1's inner gradient, where fp16 underflows: R1 runs
    # in fp32 whatever the surrounding autocast (PyTorch AMP notes, "gradient penalty", offer both remedies)
    loss, recorded = _objective()
    batch, masks = _batch(), _all_present()
    loss.accumulate_gradients(R1_PHASE, batch, masks, recorded.append)
    with torch.autocast("cpu", dtype=torch.float16):
        loss.accumulate_gradients(R1_PHASE, batch, masks, recorded.append)
    fp32, mixed = recorded
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(fp32.item(), rel=1e-6)


def test_text_contrastive_over_present_samples_equals_infonce_on_that_subset_and_has_the_same_gradient():
    torch.manual_seed(0)
    query, keys = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)
    present = torch.tensor([True, False, True, True, False, True])
    masked = contrastive(query, keys, torch.tensor(0.3).log(), present=present)
    (masked_grad,) = torch.autograd.grad(masked, query)
    subset = contrastive(query[present], keys[present], torch.tensor(0.3).log())
    (subset_grad,) = torch.autograd.grad(subset, query)
    assert masked.item() == pytest.approx(subset.item(), rel=1e-6)
    assert torch.allclose(masked_grad, subset_grad, atol=1e-7) and not masked_grad[~present].any()
    for few in ([False] * 6, [True] + [False] * 5):  # no negative to contrast with: no loss, no gradient
        none = contrastive(query, keys, torch.tensor(0.3).log(), present=torch.tensor(few))
        (grad,) = torch.autograd.grad(none, query)
        assert none.item() == 0 and not grad.any()
