"""The SPADE baselines: hinge/feature-matching/VGG/KL terms and their weights, TTUR, the generator's conditioning
contract, and `pipeline train --model spade-seg|spade-sketch` (files written, exact resume, dry-run counts)."""
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from metric_fixtures import write_random_inception
from test_train_cli import REPO_PARAMS, _run
from train_shards import write_training_shards
from weight_init import torch_default_std, xavier_std

from pipeline.cli import main
from shardio.layout import Layout
from train.families.spade.spade_loss import (VGG_LAYERS, VGG_WEIGHTS, SPADELoss, feature_matching, hinge_d, hinge_g,
                                             kl_divergence, perceptual, vgg_features)
from train.models import GENERATOR_PHASE, family
from train.vgg import VGGRelu51

pytestmark = pytest.mark.usefixtures("one_thread")

PAPER_SKETCH_COCO = 95e6  # PoE-GAN supplement Table 2: SPADE-Sketch on MS-COCO 256x256
NUM_CLASSES = 5


def _batch(res=32, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (n, res, res), generator=g)
    batch = {"image": torch.rand(n, 3, res, res, generator=g) * 2 - 1,
             "seg": torch.nn.functional.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float(),
             "sketch": (torch.rand(n, 1, res, res, generator=g) > 0.8).float()}
    batch["style"] = batch["image"]
    return batch


def test_hinge_losses_on_known_logits_average_over_scales():
    real = [torch.tensor([2.0, 0.5, -1.0]), torch.tensor([0.0])]
    fake = [torch.tensor([-2.0, 0.0, 1.0]), torch.tensor([3.0])]
    # scale 1: relu(1 - real) = [0, .5, 2] -> 5/6, relu(1 + fake) = [0, 1, 2] -> 1; scale 2: 1 and 4
    assert hinge_d(real, fake).item() == pytest.approx((5 / 6 + 1) / 2 + (1 + 4) / 2)
    assert hinge_g(fake).item() == pytest.approx(-(-1 / 3 + 3.0) / 2)


def test_feature_matching_skips_the_logits_and_averages_over_scales():
    fake = [[torch.zeros(4), torch.ones(4), torch.full((4,), 100.0)], [torch.full((4,), 2.0), torch.zeros(1)]]
    real = [[torch.ones(4), torch.ones(4), torch.zeros(4)], [torch.zeros(4), torch.zeros(1)]]
    assert feature_matching(fake, real).item() == pytest.approx((1 + 0 + 2) / 2)


def test_kl_is_zero_for_the_prior_and_half_the_squared_mean_per_dimension():
    assert kl_divergence(torch.zeros(3, 8), torch.zeros(3, 8)).item() == 0
    assert kl_divergence(torch.ones(3, 8), torch.zeros(3, 8)).item() == pytest.approx(0.5 * 8)


def test_perceptual_loss_taps_relu_x_1_of_vgg19_with_spade_weights():
    vgg = VGGRelu51(None)
    convs_before = [sum(isinstance(m, torch.nn.Conv2d) for m in vgg.features[:i]) for i in VGG_LAYERS]
    assert convs_before == [1, 3, 5, 9, 13]  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    assert all(isinstance(vgg.features[i], torch.nn.ReLU) for i in VGG_LAYERS)
    assert VGG_WEIGHTS == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    x = _batch()["image"]
    assert perceptual(vgg, x, x).item() == 0
    assert perceptual(vgg, x, x.flip(-1)).item() > 0
    # the official VGG19 (architecture.py) takes the generator's [-1, 1] images as they are
    assert torch.equal(vgg_features(vgg, x)[0], vgg.features[:2](x))


@pytest.mark.parametrize("model", ["spade-seg", "spade-sketch"])
def test_generator_objective_weights_feature_matching_10_vgg_10_kl_0_05(model):
    fam = family(model)
    cfg = fam.config("tiny")
    G, D = fam.networks(cfg, NUM_CLASSES)
    G.eval(), D.eval()  # no batch-norm/spectral-norm state changes between the two evaluations below
    loss = SPADELoss(G, D, VGGRelu51(None), cfg)
    batch = _batch()
    totals = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        terms = {k: v.item() for k, v in loss.generator_terms(batch).items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        logged = loss.accumulate_gradients(GENERATOR_PHASE, batch, {}, totals.append)
    assert {k: v.item() for k, v in logged.items()} == pytest.approx(terms)
    assert (cfg.feat_weight, cfg.vgg_weight, cfg.kl_weight) == (10.0, 10.0, 0.05)
    expected = terms["G_hinge"] + 10 * terms["G_feat"] + 10 * terms["G_vgg"] + 0.05 * terms["G_kl"]
    assert totals[0].item() == pytest.approx(expected, rel=1e-5)
    assert terms["G_feat"] > 0 and terms["G_vgg"] > 0 and terms["G_kl"] > 0
    assert [phase.name for phase in family("spade-seg").phases] == ["G", "D"]  # no regularisation phase


def test_generator_sees_its_condition_and_draws_style_from_the_prior_without_a_style_image():
    fam = family("spade-sketch")
    G, _ = fam.networks(fam.config("tiny"), NUM_CLASSES)
    G.eval()
    batch = _batch()

    def run(b, style):
        torch.manual_seed(0)
        return G(b, {"style": torch.tensor([style, style])})[0]

    encoded = run(batch, True)
    assert encoded.shape == (2, 3, 32, 32) and encoded.abs().max() <= 1
    assert not torch.allclose(encoded, run(batch, False))
    assert not torch.allclose(encoded, run({**batch, "sketch": 1 - batch["sketch"]}, True))
    assert torch.allclose(encoded, run({**batch, "seg": torch.zeros_like(batch["seg"])}, True))
    assert G.modalities == ("sketch", "style")


@pytest.mark.parametrize("model", ["spade-seg", "spade-sketch", "spade-seg-monce"])
def test_plain_layers_start_xavier_normal_at_gain_0_02_spectral_normed_ones_at_torch_default_and_biases_zero(model):
    fam = family(model)
    cfg = fam.config("tiny")
    torch.manual_seed(3)
    nets = fam.build(cfg, NUM_CLASSES)
    torch.manual_seed(3)
    again = fam.build(cfg, NUM_CLASSES)
    for key, net in nets.items():
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again[key].state_dict().values()))
    G, D = nets["G"], nets["D"]
    spade_conv = G.blocks[0].norm_0.gamma  # plain conv inside SPADE; PyTorch's default would be ~30x wider
    for weight in (spade_conv.weight, G.fc.weight, D.scales[0].blocks[0][0].weight):
        assert weight.std().item() == pytest.approx(xavier_std(weight), rel=0.1)
    # NVlabs/SPADE moves the networks to the GPU before init_weights, which then misses spectral norm's weight_orig
    for normed in (D.scales[0].blocks[1][0][0], G.blocks[0].conv_0):
        raw = normed.parametrizations.weight.original
        assert raw.std().item() == pytest.approx(torch_default_std(raw), rel=0.1)
    assert G.blocks[0].conv_0.bias.abs().max() == 0
    assert spade_conv.bias.abs().max() == 0 and G.conv_img.bias.abs().max() == 0


def test_ttur_halves_the_generator_rate_and_doubles_the_discriminator_rate():
    for model in ("spade-seg", "spade-sketch"):
        fam = family(model)
        cfg = fam.config("coco-256")
        opt = fam.optimizer(cfg)
        assert (opt.lr_G, opt.lr_D, opt.betas, opt.grad_clip) == (cfg.lr / 2, cfg.lr * 2, (0.0, 0.9), None)
        assert cfg.lr == 0.0002 and cfg.resolution == 256 and cfg.num_d == 2


def _params(tmp_path, model, evaluate=None, **section):
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"][model].update(section)
    overrides = raw["datasets"]["sample"]["overrides"]  # the section's values win over the sample profile's
    overrides.update({key: section[key.rpartition(".")[2]] for key in overrides
                      if key.startswith(f"train.{model}.") and key.rpartition(".")[2] in section})
    raw["evaluate"].update(evaluate or {})
    raw["annotate"]["seg"].update(long_side=32, batch_size=4)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _train(tmp_path, data, model, until, **section):
    params = _params(tmp_path, model, batch_size=2, workers=0, shuffle_buffer=4, epoch_batches=3,
                     snapshot_every=2, sample_every=2, **section)
    result = _run(["--model", model, "--data-dir", str(data), "--steps", str(until)], params)
    assert result.exit_code == 0, result.output
    return Layout(data, "sample").training(model)


def _losses(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in ("sec", "data_sec")}
            for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    write_training_shards(data / "sample" / "shards", images=4, per_shard=2, short_side=36)
    write_training_shards(data / "sample" / "shards", images=4, per_shard=4, short_side=36, split="test", seed=1)
    return data


DECAY_AFTER_STEP_1 = {"steps": 4, "lr_decay_start": 1}  # params of a 4-step schedule decaying from step 2


def test_tiny_spade_seg_from_the_cli_writes_outputs_and_decays_and_resumes_exactly(shards, tmp_path):
    # SPADE's linear decay to 0, made to start after the first step (params lr_decay_start) of a 4-step run (params
    # steps: the schedule's length)
    whole = _train(tmp_path, shards, "spade-seg", 4, **DECAY_AFTER_STEP_1)
    assert {p.name for p in whole.iterdir()} >= {
        "log.jsonl", "samples-000002.png", "samples-000004.png", "network-snapshot-000002.pt",
        "training-state-000002.pt", "network-snapshot-000004.pt", "training-state-000004.pt"}
    reference = _losses(whole)
    assert [r["step"] for r in reference] == [1, 2, 3, 4]
    assert {"G_hinge", "G_feat", "G_vgg", "G_kl", "D_hinge"} <= set(reference[0])
    # tiny: lr 2e-4 under TTUR (G 1e-4, D 4e-4); step s (0-based) at min(1, (4 - s) / 3), as SPADE's epochs
    assert [r["lr_G"] for r in reference] == pytest.approx([1e-4, 1e-4, 1e-4 * 2 / 3, 1e-4 / 3])
    assert [r["lr_D"] for r in reference] == pytest.approx([4e-4, 4e-4, 4e-4 * 2 / 3, 4e-4 / 3])
    state = torch.load(whole / "training-state-000004.pt", weights_only=True)
    assert state["opt_G"]["param_groups"][0]["betas"] == (0.0, 0.9)
    assert state["lr_schedule"] == {"hold": 1, "total": 4}
    weights = torch.load(whole / "network-snapshot-000004.pt", weights_only=True)

    for name in ("network-snapshot-000004.pt", "training-state-000004.pt", "samples-000004.png"):
        (whole / name).unlink()  # as if killed after step 2's training state
    resumed = _train(tmp_path, shards, "spade-seg", 4, **DECAY_AFTER_STEP_1)
    assert _losses(resumed) == reference  # the same losses and learning rates, step for step
    again = torch.load(resumed / "network-snapshot-000004.pt", weights_only=True)
    for net in ("G", "D", "G_ema"):
        assert all(torch.equal(weights[net][k], again[net][k]) for k in weights[net]), net


def test_spade_decays_over_the_second_half_of_params_steps_and_the_dry_run_prints_its_recipe():
    result = _run(["--model", "spade-seg", "--dataset", "coco", "--config", "tiny", "--steps", "10", "--dry-run"])
    assert result.exit_code == 0, result.output
    steps = int(yaml.safe_load(REPO_PARAMS.read_text())["datasets"]["coco"]["overrides"]["train.spade-seg.steps"])
    assert "steps: 10 at batch 8" in result.output
    assert f"up to step {steps // 2 + 1}, then decaying linearly every step to 1/{steps - steps // 2} of it at " \
           f"step {steps}" in result.output
    for line in ("initialisation: Xavier normal, gain 0.02", "preprocessing: resize-crop: whole image to 36x36, a "
                 "random 32x32 crop", "moving average of G: half-life", "Adam betas: G (0.0, 0.9), D (0.0, 0.9)"):
        assert line in result.output  # the rest of the recipe (tests/test_train_recipe.py)


def test_tiny_spade_sketch_trains_from_the_cli(shards, tmp_path):
    run = _train(tmp_path, shards, "spade-sketch", 2)
    weights = torch.load(run / "network-snapshot-000002.pt", weights_only=True)
    assert weights["D"]["scales.0.blocks.0.0.weight"].shape[1] == 3 + 1  # image + sketch
    assert (run / "samples-000002.png").is_file()


@pytest.mark.parametrize("model", ["spade-seg", "spade-seg-monce"])
def test_evaluate_scores_a_segmentation_model_under_the_seg_condition_only(shards, tmp_path, model):
    data = tmp_path / "data"  # a data folder of its own: the decay tests train spade-seg under other params
    shutil.copytree(shards / "sample" / "shards", data / "sample" / "shards")
    run = _train(tmp_path, data, model, 2)
    evaluate = {"metrics": ["fid", "seg_consistency", "lpips_diversity"], "num_images": 4, "batch_size": 4,
                "diversity_groups": 2, "diversity_pairs": 1, "diversity_images": 2, "lpips_weights": "random",
                "inception_weights": str(write_random_inception(tmp_path / "inception.pth"))}
    params = _params(tmp_path, model, evaluate)
    result = CliRunner().invoke(main, ["evaluate", "--model", model, "--params", str(params),
                                       "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run.parent / "eval" / "metrics.json").read_text())
    # SPADE-Seg takes no text or sketch (`random_weights/<score>` flag what the offline test's networks lack)
    assert {k.split("/")[0] for k in metrics} - {"random_weights", "protocol"} == {"seg"}
    assert 0 <= metrics["seg/seg_miou"] <= 1 and metrics["seg/fid"] > 0
    if model == "spade-seg":
        assert metrics["seg/lpips_diversity"] > 0  # without a style image the style code is drawn anew
    else:
        assert metrics["seg/lpips_diversity"] == 0  # deterministic SPADE: one image per segmentation


@pytest.mark.parametrize("model", ["spade-seg", "spade-sketch"])
def test_dry_run_prints_parameter_counts(model):
    result = _run(["--model", model, "--config", "tiny", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert int(re.search(r"^generator parameters: (\d+)$", result.output, re.M)[1]) > 0
    assert int(re.search(r"^discriminator parameters: (\d+)$", result.output, re.M)[1]) > 0


def test_spade_sketch_at_256_is_within_1_5x_of_the_papers_count():
    result = _run(["--model", "spade-sketch", "--dataset", "coco", "--config", "coco-256", "--dry-run"])
    assert result.exit_code == 0, result.output
    g = int(re.search(r"^generator parameters: (\d+)$", result.output, re.M)[1])
    assert PAPER_SKETCH_COCO / 1.5 <= g <= PAPER_SKETCH_COCO * 1.5


def test_unknown_spade_config_lists_the_known_ones():
    result = _run(["--model", "spade-seg", "--config", "celeba-1024", "--dry-run"])
    assert result.exit_code == 2 and "tiny" in result.output and "coco-256" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("model,image_term", [("spade-seg", "G_vgg"), ("spade-seg-monce", "G_monce")])
def test_tiny_segmentation_model_overfits_four_images_and_follows_their_segmentation(tmp_path, model, image_term):
    """~600 steps (5 min on 2 quiet cores): the image term falls, and samples generated from a training
    segmentation (its image as the style) come close to that image, closer than to the other training images, and
    reproduce its layout (nearest class colour agreement) far better than another image's layout. Feature matching
    is not checked: it measures D's features of real against fake, a target that moves as D learns (from the
    official initialisation, D's features start near alike and the term may grow while G improves)."""
    from annotators.labelmaps import load_label_map
    from train.data import ShardLoader, to_device
    from layout_measures import class_colours, layout_agreement
    from train.loop import RunSpec, train
    from train.samples import pattern_masks

    labels = load_label_map("coco-stuff-182")
    urls = [str(p) for p in write_training_shards(tmp_path / "shards", images=4, per_shard=4)]
    fam = family(model)
    cfg = fam.config("tiny")
    batch = to_device(next(iter(ShardLoader(urls, cfg.resolution, labels.num_classes, 4, seed=1, shuffle_buffer=1))),
                      "cpu", labels.num_classes)

    def generate(G):
        with torch.no_grad():
            torch.manual_seed(0)
            return G.eval()({**batch, "style": batch["image"]}, pattern_masks(("seg",), 4))[0]

    def l1(images):
        return (images - batch["image"]).abs().mean().item()

    torch.manual_seed(0)
    untrained = l1(generate(fam.networks(cfg, labels.num_classes)[0]))
    spec = RunSpec(tmp_path / "run", urls, urls, labels.num_classes, labels.colours, steps=600, batch_size=4,
                   snapshot_every=600, sample_every=600, shuffle_buffer=8, epoch_batches=10, ema_kimg=0.026)
    records = train(fam, cfg, VGGRelu51(None), spec, progress=False)
    windows = {term: [round(sum(r[term] for r in records[i:i + 100]) / 100, 3) for i in range(0, 600, 100)]
               for term in ("G_feat", image_term, "D_hinge")}
    G, _ = fam.networks(cfg, labels.num_classes)
    G.load_state_dict(torch.load(tmp_path / "run" / "network-snapshot-000600.pt", weights_only=True)["G_ema"])
    generated = generate(G)
    own, others = l1(generated), l1(generated.roll(1, 0))
    colours = class_colours(batch["image"], batch["seg"])
    followed = layout_agreement(generated, batch["seg"], colours)
    shuffled = layout_agreement(generated, batch["seg"].roll(1, 0), colours)
    print(f"{model}: 100-step means {windows}; L1 to the training images {untrained:.3f} untrained, {own:.3f} "
          f"trained (to another's image {others:.3f}); layout agreement {followed:.3f} (another's {shuffled:.3f})")
    assert sum(r[image_term] for r in records[-50:]) < sum(r[image_term] for r in records[:50]), windows
    # on these 4 images (measured): an all-zero output is at L1 0.33, their mean image at 0.17 from its own image and
    # from another's alike (the second check fails it), a painting of each class in its mean colour at 0.07 / 0.25
    assert own < 0.8 * untrained and own < 0.9 * others, (untrained, own, others)
    assert followed > shuffled + 0.1, (followed, shuffled)
