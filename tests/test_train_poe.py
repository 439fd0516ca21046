"""Product of experts, KL, log-variance limits and KL rebalancing of PoE-GAN against their closed forms."""
import math

import pytest
import torch

from shardio.modalities import MODEL_MODALITIES as MODALITIES
from train.families.poegan.configs import get_config
from train.families.poegan.kl_balance import DECAY, KLBalancer, rebalance_weights
from train.families.poegan.generator import Generator
from train.families.poegan.poe import EXPERT_THETA, PRIOR_THETA, kl_gaussians, limit_logvar, product_of_experts
from train.families.poegan.poe_nets import GlobalPoENet, LocalPoENet


def test_product_of_two_gaussians_matches_the_closed_form():
    mu0, var0, mu1, var1, mu2, var2 = 0.5, 2.0, -1.0, 0.5, 3.0, 4.0
    t = lambda v: torch.tensor([[v]])  # noqa: E731
    yes = torch.tensor([True])
    mu, logvar = product_of_experts((t(mu0), t(math.log(var0))),
                                    [(t(mu1), t(math.log(var1)), yes), (t(mu2), t(math.log(var2)), yes)])
    precision = 1 / var0 + 1 / var1 + 1 / var2
    assert logvar.item() == pytest.approx(-math.log(precision))
    assert mu.item() == pytest.approx((mu0 / var0 + mu1 / var1 + mu2 / var2) / precision)


def test_masked_out_expert_is_left_out_of_the_product_per_sample():
    prior = (torch.zeros(2, 3), torch.zeros(2, 3))
    expert = (torch.full((2, 3), 4.0), torch.full((2, 3), -2.0), torch.tensor([True, False]))
    mu, logvar = product_of_experts(prior, [expert])
    assert torch.allclose(mu[1], torch.zeros(3)) and torch.allclose(logvar[1], torch.zeros(3))
    assert mu[0, 0].item() == pytest.approx(4.0 * math.exp(2) / (1 + math.exp(2)))


def test_kl_matches_the_closed_form_of_diagonal_gaussians():
    mu_q, var_q, mu_p, var_p = torch.tensor(0.3), torch.tensor(0.5), torch.tensor(-0.2), torch.tensor(1.7)
    expected = math.log(math.sqrt(var_p) / math.sqrt(var_q)) + (var_q + (mu_q - mu_p) ** 2) / (2 * var_p) - 0.5
    assert kl_gaussians(mu_q, var_q.log(), mu_p, var_p.log()).item() == pytest.approx(expected.item(), rel=1e-5)
    torch.manual_seed(0)
    q = torch.distributions.Normal(torch.randn(5), torch.rand(5) + 0.1)
    p = torch.distributions.Normal(torch.randn(5), torch.rand(5) + 0.1)
    ours = kl_gaussians(q.loc, 2 * q.scale.log(), p.loc, 2 * p.scale.log())
    assert torch.allclose(ours, torch.distributions.kl_divergence(q, p), atol=1e-5)


def test_tanh_limits_keep_log_variances_inside_theta():
    x = torch.tensor([-1e4, -30.0, -0.01, 0.0, 0.01, 30.0, 1e4])
    for theta in (PRIOR_THETA, EXPERT_THETA):
        y = limit_logvar(x, theta)
        assert (y.abs() <= theta).all() and (y.abs()[[0, 1, 5, 6]] > 0.9 * theta).all()
        assert y[2].item() == pytest.approx(-0.01, rel=1e-3)  # near identity around 0
    assert (PRIOR_THETA, EXPERT_THETA) == (1.0, 10.0)


def test_local_poe_net_limits_prior_and_expert_log_variances():
    torch.manual_seed(0)
    net = LocalPoENet(8, {"seg": 4}, 2)
    h, enc = torch.randn(3, 8, 4, 4) * 1e3, {"seg": torch.randn(3, 4, 4, 4) * 1e3}
    prior_logvar = net.prior(h).chunk(2, 1)[1]
    assert prior_logvar.abs().max() > PRIOR_THETA  # raw outputs would leave the range ...
    _, kls = net(h, enc, {"seg": torch.ones(3, dtype=torch.bool)})
    assert torch.isfinite(kls["seg"]).all()  # ... the limited ones keep every KL finite


def test_dropping_every_modality_gives_the_prior_at_every_level():
    torch.manual_seed(0)
    nets = GlobalPoENet({"text": 16, "seg": 8})
    none = {"text": torch.zeros(4, dtype=torch.bool), "seg": torch.zeros(4, dtype=torch.bool)}
    feats = {"text": torch.randn(4, 16), "seg": torch.randn(4, 8)}
    other = {"text": torch.randn(4, 16) * 5, "seg": torch.randn(4, 8) * 5}
    torch.manual_seed(1)
    w, _ = nets(feats, none)
    torch.manual_seed(1)
    w_other, _ = nets(other, none)
    assert torch.equal(w, w_other)  # z^0 ~ N(0, I) whatever the features

    cfg = get_config("tiny")
    G = Generator(cfg, 5).eval()
    r = cfg.resolution
    masks = {m: torch.zeros(2, dtype=torch.bool) for m in MODALITIES}

    def generate(seed):
        torch.manual_seed(seed)
        cond = {"text": torch.randn(2, cfg.clip_dim), "seg": torch.rand(2, 5, r, r),
                "sketch": torch.rand(2, 1, r, r), "style": torch.rand(2, 3, r, r)}
        torch.manual_seed(7)
        return G(cond, masks)[0]

    assert torch.allclose(generate(1), generate(2), atol=1e-6)  # unconditional: conditions are ignored


def test_rebalancing_weights_average_one_and_follow_eq1():
    kl = torch.tensor([8.0, 40.0, 64.0, 128.0])
    areas = torch.tensor([16.0, 64.0, 256.0, 1024.0])
    w = rebalance_weights(kl, areas)
    assert w.mean().item() == pytest.approx(1.0)
    ratio = kl / areas
    assert torch.allclose(w / w[0], ratio / ratio[0])  # proportional to KL^k / (w^k h^k)


def test_running_average_of_rebalancing_weights_decays_at_0_99_and_keeps_mean_one():
    balancer = KLBalancer([4, 8, 16])
    first = balancer.update(torch.tensor([16.0, 0.0, 0.0]))
    assert torch.allclose(first, torch.tensor([DECAY + (1 - DECAY) * 3, DECAY, DECAY]))
    for _ in range(50):
        avg = balancer.update(torch.rand(3) * 100)
        assert avg.mean().item() == pytest.approx(1.0, abs=1e-5)
    assert DECAY == 0.99
