"""Unite-and-Conquer: the diffusion against closed forms, the ADM UNet's size, the product of experts (paper Eq. 10)
and the family in the trainer (`pipeline train --model unite-conquer`: outputs, exact resume, dry run)."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from test_train_cli import REPO_PARAMS, _run
from train_shards import write_training_shards

from pipeline.params import load_params
from shardio.layout import Layout
from train.families.unite_conquer.config import get_config
from train.families.unite_conquer.diffusion import Diffusion, discretized_gaussian_log_likelihood, normal_kl
from train.families.unite_conquer.experts import Experts
from train.ema import ema_beta
from train.evaluate import generate
from train.metrics.conditions import CONDITIONS
from train.models import GENERATOR_PHASE, count_parameters, family
from train.noise import private_noise

pytestmark = pytest.mark.usefixtures("one_thread")
D = Diffusion()
TINY = replace(get_config("tiny"), channels=32, sample_steps=1)


def _gen(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_schedule_is_linear_from_1e_4_to_0_02_over_1000_steps():
    betas = np.linspace(1e-4, 0.02, 1000)
    assert torch.allclose(D.betas, torch.from_numpy(betas), rtol=1e-6, atol=0)  # diffusers: float32 betas
    assert torch.allclose(D.alphas_cumprod, torch.from_numpy(np.cumprod(1 - betas)), rtol=1e-6)
    assert D.alphas_cumprod[-1] < 1e-4  # x_T is nearly pure noise


def test_posterior_is_the_product_of_the_two_gaussians():
    # q(x_{t-1} | x_t, x_0) ∝ N(x_{t-1}; sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}) N(x_t; sqrt(alpha_t) x_{t-1}, beta_t)
    x0, xt, t = _gen(0, 3, 3, 2, 2), _gen(1, 3, 3, 2, 2), torch.tensor([1, 300, 999])
    mean, logvar = D.posterior(x0, xt, t)
    abar_prev, beta = D.alphas_cumprod[t - 1].view(-1, 1, 1, 1), D.betas[t].view(-1, 1, 1, 1)
    precision = 1 / (1 - abar_prev) + (1 - beta) / beta
    expected_mean = (abar_prev.sqrt() * x0 / (1 - abar_prev) + (1 - beta).sqrt() * xt / beta) / precision
    assert torch.allclose(mean, expected_mean, atol=1e-10)
    assert torch.allclose(logvar.exp(), (1 / precision).expand_as(logvar), rtol=1e-9)


def test_a_ddim_step_re_derives_epsilon_from_the_clipped_x0_as_adm_does():
    # guided-diffusion gaussian_diffusion.py ddim_sample: pred_xstart clipped to [-1, 1], then
    # eps = _predict_eps_from_xstart(x_t, t, pred_xstart), x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps
    assert D.sampler("ddim", 100).timesteps.tolist() == list(range(990, -1, -10))  # ADM's "ddim100" respacing
    seen = []

    def model_output(x, t):  # an epsilon far outside what x_t allows: x0 leaves [-1, 1] and is clipped
        seen.append((x.clone(), int(t[0])))
        return torch.cat([torch.full_like(x, -3.0), torch.zeros_like(x)], 1)

    D.sample(model_output, (2, 3, 4, 4), "cpu", "ddim", steps=2)
    (xt, t), (x_prev, t_prev) = seen
    abar, abar_prev = D.alphas_cumprod[t].float(), D.alphas_cumprod[t_prev].float()
    x0 = ((xt + 3 * (1 - abar).sqrt()) / abar.sqrt()).clamp(-1, 1)
    assert (x0 == 1).float().mean() > 0.5  # clipping bites
    eps = (xt - abar.sqrt() * x0) / (1 - abar).sqrt()
    assert torch.allclose(x_prev, abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps, atol=1e-5)


def test_real_profiles_keep_adms_moving_average_of_0_9999_per_step():
    params = load_params(REPO_PARAMS)
    rates = {name: params.for_dataset(name).train.unite_conquer.ema_rate for name in ("coco", "mm-celeba-hq", "sample")}
    assert rates == {"coco": 0.9999, "mm-celeba-hq": 0.9999, "sample": None}  # the demo's 60 steps: the half-life
    assert ema_beta(0, 16, None, 0.05, 0.9999) == ema_beta(10**9, 16, None, 0.05, 0.9999) == 0.9999  # no ramp-up


def test_ancestral_step_with_learned_range_variance():
    scheduler = D.sampler("ancestral", 100)
    xt, eps = _gen(4, 1, 3, 4, 4).float(), _gen(5, 1, 3, 4, 4).float()
    v = torch.full_like(xt, 1.0)  # v = 1: the variance is the (respaced) beta_t
    abar, abar_prev = D.alphas_cumprod[500], D.alphas_cumprod[490]
    beta = 1 - abar / abar_prev
    x0 = ((xt.double() - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
    mean = (abar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_prev) * xt) / (1 - abar)
    noise = torch.randn(xt.shape, generator=torch.Generator().manual_seed(7))
    out = scheduler.step(torch.cat([eps, v], 1), 500, xt, generator=torch.Generator().manual_seed(7)).prev_sample
    assert torch.allclose(out.double(), mean + beta.sqrt() * noise, atol=1e-4)


def test_variational_bound_vanishes_for_the_true_posterior_and_is_positive_otherwise():
    x0 = torch.rand(2, 3, 4, 4) * 2 - 1
    noise, t = torch.randn_like(x0), torch.tensor([5, 40])  # early, where beta_t and beta~_t differ most
    xt = D.q_sample(x0, t, noise)
    v_posterior = torch.full_like(x0, -1.0)  # v = -1: the posterior variance beta~_t
    mse, vb = D.hybrid_loss(torch.cat([noise, v_posterior], 1), x0, xt, t, noise)
    assert torch.allclose(mse, torch.zeros(2)) and torch.allclose(vb, torch.zeros(2), atol=1e-4)
    _, vb_off = D.hybrid_loss(torch.cat([noise, -v_posterior], 1), x0, xt, t, noise)
    assert (vb_off > 1e-4).all()


def test_kl_and_discretised_likelihood_closed_forms():
    assert torch.allclose(normal_kl(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)),
                          torch.tensor(0.5))
    # a very narrow Gaussian on a pixel value puts all its mass in that pixel's bin
    x = torch.tensor([-1.0, 0.0, 1.0])
    assert torch.allclose(discretized_gaussian_log_likelihood(x, x, torch.full_like(x, -8.0)), torch.zeros(3),
                          atol=1e-6)


def test_celeba_256_experts_are_adm_face_models_of_about_331m_parameters():
    with torch.device("meta"):
        G = family("unite-conquer").generator(get_config("celeba-256"), 19)
    counts = {name: count_parameters(net) for name, net in G.experts.items()}
    assert counts["text"] == pytest.approx(331e6, rel=0.01)  # the official model's CLIP modulation included
    assert counts["seg"] == pytest.approx(311e6, rel=0.01) and counts["sketch"] < counts["seg"]


def test_profiles_build_and_tiny_has_a_few_million_parameters():
    for name in ("tiny", "celeba-256", "coco-64", "coco-256"):
        with torch.device("meta"):
            G = family("unite-conquer").generator(get_config(name), 182)
        assert set(G.experts) == {"seg", "sketch", "text"}
    tiny = count_parameters(family("unite-conquer").generator(get_config("tiny"), 182))
    assert 2e6 < tiny < 10e6


def _batch(num_classes=3, n=2, r=32):
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(n, 3, r, r, generator=g) * 2 - 1, "seg": torch.rand(n, num_classes, r, r, generator=g),
            "sketch": torch.rand(n, 1, r, r, generator=g), "text": torch.randn(n, 8, generator=g),
            "clip_image": torch.randn(n, 8, generator=g)}


def _experts(cfg, num_classes=3) -> Experts:
    torch.manual_seed(0)
    G = Experts(replace(cfg, clip_dim=8), num_classes).eval()
    for p in G.parameters():  # the zero-initialised output layers would make every expert's epsilon 0
        torch.nn.init.normal_(p, std=0.05)
    return G


def _selected(*names, n=2):
    return {m: torch.full((n,), m in names) for m in ("seg", "sketch", "text")}


@torch.no_grad()
def test_eq10_with_one_expert_of_weight_1_is_that_expert():
    G, batch = _experts(TINY), _batch()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 700])
    for name in ("seg", "sketch", "text"):
        expected = G.expert(name, x, t, batch, torch.ones(2, dtype=torch.bool))
        assert torch.equal(G.product(_selected(name))(x, t, batch), expected)


@torch.no_grad()
def test_eq10_with_identical_experts_is_classifier_free_guidance_with_weight_sum_w_minus_1():
    cfg = replace(TINY, experts=("seg", "sketch"), weights={"seg": 2.0, "sketch": 1.5})
    G, batch = _experts(cfg, num_classes=1), _batch(num_classes=1)
    G.experts["sketch"].load_state_dict(G.experts["seg"].state_dict())  # the same network ...
    batch["sketch"] = batch["seg"]  # ... given the same condition
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 700])
    cond = G.expert("seg", x, t, batch, torch.ones(2, dtype=torch.bool))[:, :3]
    uncond = G.expert("seg", x, t, batch, None)[:, :3]
    guidance = 2.0 + 1.5 - 1
    combined = G.product({"seg": torch.ones(2, dtype=torch.bool), "sketch": torch.ones(2, dtype=bool)})(x, t, batch)
    assert torch.allclose(combined[:, :3], cond + guidance * (cond - uncond), atol=1e-5)


@torch.no_grad()
def test_no_modality_samples_the_mean_unconditional_estimate_and_conditions_change_samples():
    G, batch = _experts(TINY), _batch()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 700])
    mean_null = sum(G.expert(n, x, t, batch, None) for n in G.experts) / 3
    assert torch.allclose(G.product(_selected())(x, t, batch), mean_null, atol=1e-6)
    with private_noise(0):
        uncond, extra = G(batch, _selected())
    with private_noise(0):
        seg, _ = G(batch, _selected("seg"))
    assert uncond.shape == (2, 3, 32, 32) and extra == {} and uncond.abs().max() <= 1
    assert not torch.allclose(uncond, seg)


def test_the_text_expert_trains_on_the_clip_image_embedding_not_the_text():
    G, batch = _experts(TINY), _batch()
    loss = family("unite-conquer").loss(G, None, G.cfg)

    def text_grads(b):
        G.zero_grad()
        torch.manual_seed(1)
        terms = loss.accumulate_gradients(GENERATOR_PHASE, b, {}, torch.Tensor.backward)
        assert set(terms) == {f"{e}_{k}" for e in ("seg", "sketch", "text") for k in ("mse", "vb")}
        return G.experts["text"].time_embed[0].weight.grad.clone()

    reference = text_grads(batch)
    assert torch.equal(reference, text_grads({**batch, "text": -batch["text"]}))
    assert not torch.equal(reference, text_grads({**batch, "clip_image": -batch["clip_image"]}))


@torch.no_grad()
def test_every_evaluation_row_samples_from_exactly_its_modalities():
    G = _experts(TINY)
    cond, other = _batch(n=1), {k: -v for k, v in _batch(n=1).items()}
    for condition, modalities in CONDITIONS.items():  # unconditional, text, seg, sketch, all
        given = set(modalities)  # generator modalities, named as the condition tensors are
        images = generate(G, cond, condition, seed=0, batch_size=1, device="cpu")
        excluded = {k: other[k] if k not in given else v for k, v in cond.items()}  # the image and clip_image too
        assert generate(G, excluded, condition, seed=0, batch_size=1, device="cpu").tobytes() == images.tobytes()
        for name in given:
            changed = generate(G, {**cond, name: other[name]}, condition, seed=0, batch_size=1, device="cpu")
            assert not np.array_equal(changed, images), (condition, name)


# --- the family in the trainer -------------------------------------------------------------------------------


def _params(tmp_path, **section):
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"]["unite-conquer"].update(section)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_training_shards(data / "sample" / "shards", images=4, per_shard=2, short_side=36)
    return data


def _train(tmp_path, data, steps):
    params = _params(tmp_path, batch_size=2, workers=0, shuffle_buffer=4, epoch_batches=3, snapshot_every=2,
                     sample_every=4, sample_steps=1)
    result = _run(["--model", "unite-conquer", "--data-dir", str(data), "--steps", str(steps)], params)
    assert result.exit_code == 0, result.output
    return Layout(data, "sample").training("unite-conquer")


@pytest.mark.slow  # three experts per step, and a sample grid of 12 patterns
def test_unite_conquer_trains_without_a_discriminator_and_resumes_exactly(shards, tmp_path):
    whole = _train(tmp_path, shards, 4)
    snapshot = torch.load(whole / "network-snapshot-000004.pt", weights_only=True)
    state = torch.load(whole / "training-state-000004.pt", weights_only=True)
    assert set(snapshot) == {"G", "G_ema"} and "opt_D" not in state and set(state["scaler"]) == {"G"}
    assert state["opt_G"]["param_groups"][0]["lr"] == 2e-3  # the tiny profile's
    assert (whole / "samples-000004.png").is_file()
    reference = [{k: v for k, v in json.loads(line).items() if k not in ("sec", "data_sec")}
                 for line in (whole / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in reference] == [1, 2, 3, 4] and "G_grad_norm" in reference[0]
    for name in ("network-snapshot-000004.pt", "training-state-000004.pt"):
        (whole / name).unlink()
    _train(tmp_path, shards, 4)
    resumed = [{k: v for k, v in json.loads(line).items() if k not in ("sec", "data_sec")}
               for line in (whole / "log.jsonl").read_text().splitlines()]
    assert resumed == reference


def test_dry_run_prints_only_the_generator(tmp_path):
    result = _run(["--model", "unite-conquer", "--config", "tiny", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "generator parameters:" in result.output and "discriminator" not in result.output
    assert "estimated peak" in result.output  # the per-GPU batch the run would take, with its memory


def test_a_guidance_weight_below_1_is_refused_before_training(tmp_path):
    result = _run(["--model", "unite-conquer", "--dry-run"], _params(tmp_path, weights={"seg": 0.5}))
    assert result.exit_code == 2 and "train.unite-conquer.weights.seg" in result.output
