"""Cluster-guided synthesis (docs/cluster-guided.md): IMLE covers every mode, k-means is stable for a seed, PoE-GAN's
generator gives an external z0 its image and features, and end to end on a tiny PoE-GAN run of the sample the
per-cluster mappers land back in their clusters, get their own grids and their own evaluation rows."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from train_shards import write_sample_shards

from pipeline.cli import main
from pipeline.params.train import TrainParams
from train.families.cluster_guided.fit import FitError, check, kmeans
from train.families.cluster_guided.imle import IMLESettings, fit_imle, mapper
from train.families.poegan.configs import GLOBAL_DIM, get_config
from train.families.poegan.generator import Generator

pytestmark = pytest.mark.usefixtures("one_thread")

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def _mixture(points: int, seed: int = 0) -> torch.Tensor:
    """Points of 8 well separated 2-D Gaussians (std 0.1) on a circle of radius 4."""
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(8) * 2 * math.pi / 8
    centres = 4 * torch.stack([angles.cos(), angles.sin()], 1)
    return centres[torch.randint(8, (points,), generator=g)] + 0.1 * torch.randn(points, 2, generator=g)


def _covered(data: torch.Tensor, generated: torch.Tensor, radius: float = 0.5) -> float:
    """The share of data points with a generated point within `radius`."""
    return float((torch.cdist(data, generated).min(1).values < radius).float().mean())


def test_imle_covers_every_mode_of_a_gaussian_mixture_where_a_collapsed_mapper_does_not():
    data = _mixture(300)
    torch.manual_seed(0)
    net = mapper(8, 64, 3, 2)
    g = torch.Generator().manual_seed(0)
    fit_imle(net, 8, data, IMLESettings(rounds=15, candidates=10, steps=20, batch_size=128, lr=0.01), g)
    with torch.no_grad():
        generated = net(torch.randn(4000, 8, generator=g))
    assert _covered(data, generated) >= 0.95
    collapsed = data[:1].expand(4000, 2)  # every sample on one mode: the criterion fails it
    assert _covered(data, collapsed) < 0.2


def test_kmeans_is_stable_for_a_fixed_seed_and_finds_separated_groups():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (60, 16)), rng.normal(6, 1, (40, 16))]).astype(np.float32)
    labels, centroids = kmeans(features, 2, 3, seed=5)
    again = kmeans(features, 2, 3, seed=5)
    assert np.array_equal(labels, again[0]) and np.array_equal(centroids, again[1])
    assert len(set(labels[:60])) == 1 and len(set(labels[60:])) == 1 and labels[0] != labels[-1]
    # one cluster (the supplement's FID check: IMLE over every code) holds them all, its centroid their mean
    labels, centroids = kmeans(features, 1, 1, seed=5)
    assert not labels.any() and np.allclose(centroids[0], features.mean(0), atol=1e-4)
    assert TrainParams.model_validate({"cluster-guided": {"clusters": 1}}).model("cluster-guided").clusters == 1


def _tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(get_config("tiny"), 5).eval().requires_grad_(False)


def test_poegan_generator_takes_an_external_z0_with_fixed_local_latents_and_exposes_features():
    G, cfg = _tiny_generator(), get_config("tiny")
    noise = {r: torch.randn(1, cfg.latent_channels(r), r, r) for r in cfg.resolutions}
    z0 = torch.randn(3, GLOBAL_DIM)
    image = G.unconditional(z0, noise)
    assert image.shape == (3, 3, 32, 32)
    assert torch.equal(G.unconditional(z0, noise), image)  # a function of z0 alone once the local draws are fixed
    assert not torch.equal(G.unconditional(torch.randn(3, GLOBAL_DIM), noise), image)
    assert not torch.equal(G.unconditional(z0), image)  # fresh local draws otherwise
    features = G.features(z0, 8, noise)
    assert features.shape == (3, cfg.channels(8), 8, 8)
    assert torch.allclose(G.features(z0[:1], 8, noise), features[:1], atol=1e-5)  # per code, batch aside
    with pytest.raises(ValueError, match="no decoder resolution 12"):
        G.features(z0, 12, noise)


def test_a_snapshot_alone_rebuilds_the_clusters_and_their_images():
    from dataclasses import replace

    from train.families.cluster_guided.generator import ClusterGuidedGenerator
    from train.noise import private_noise

    cfg = replace(get_config("tiny"), resolution=16, channel_base=8, channel_max=32, latent_base=2, latent_max=8)
    torch.manual_seed(0)
    fitted = ClusterGuidedGenerator(cfg, 5)
    fitted.set_pool(2)
    for r, share in ((8, 0.25), (8, 0.75), (16, 1.0)):
        fitted.add_cluster(r, torch.randn(cfg.channels(r) * 4), share, mapper(6, 16, 3, GLOBAL_DIM))
    loaded = ClusterGuidedGenerator(cfg, 5)  # as evaluation builds it: from the configuration alone
    loaded.load_state_dict(fitted.state_dict())
    masks = {"text": torch.zeros(4, dtype=torch.bool)}
    assert [name for name, _ in loaded.rows()] == ["cluster-r8-0", "cluster-r8-1", "cluster-r16-0"]
    for cluster in (None, 0, 2):
        with private_noise(1):
            image = fitted.eval()(None, masks, cluster=cluster)[0]
        with private_noise(1):
            assert torch.equal(loaded.eval()(None, masks, cluster=cluster)[0], image)
    z0 = torch.randn(4, GLOBAL_DIM)
    assert torch.equal(loaded.assign(z0, 16), torch.full((4,), 2)) and set(loaded.assign(z0, 8).tolist()) <= {0, 1}


def test_params_that_do_not_fit_the_configuration_fail_before_any_work():
    from train.families.cluster_guided.params import ClusterGuidedParams

    with pytest.raises(FitError, match=r"resolutions \[64\].*4, 8, 16, 32"):
        check(ClusterGuidedParams(resolutions=[64]), get_config("tiny"))
    with pytest.raises(FitError, match="pool 8 is larger than resolutions \\[4\\]"):
        check(ClusterGuidedParams(resolutions=[4, 8], pool=8), get_config("tiny"))


def _params(root: Path) -> Path:
    """The repository's params with a short tiny PoE-GAN, a small cluster-guided fit and a small evaluation."""
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    raw["train"]["poegan"].update(batch_size=2, workers=0, snapshot_every=2, sample_every=2, steps=2)
    fit = dict(codes=200, kmeans_inits=2, rounds=10, steps_per_round=100, consistency_samples=200, batch_size=100,
               grid_size=3)  # as the sample's overrides, so that they win
    raw["datasets"]["sample"]["overrides"].update({f"train.cluster-guided.{k}": v for k, v in fit.items()})
    raw["evaluate"].update(metrics=["fid", "kid", "lpips_diversity"], num_images=4, batch_size=4, kid_subsets=2,
                           diversity_groups=2, diversity_pairs=1, diversity_images=2)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_fitting_without_a_poegan_run_says_how_to_train_one(tmp_path):
    result = _run("train", "--model", "cluster-guided", "--params", str(_params(tmp_path)),
                  "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 1
    assert "pipeline train --dataset sample --model poegan" in result.output
    assert "dvc repro train@poegan" in result.output


def test_the_dry_run_prints_the_fit_settings_even_before_a_poegan_run(tmp_path):
    result = _run("train", "--model", "cluster-guided", "--params", str(_params(tmp_path)),
                  "--data-dir", str(tmp_path / "data"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would fit cluster-guided from the newest snapshot of" in result.output and "(none yet)" in result.output
    settings = result.output.split("fit settings (train.cluster-guided): ")[1].splitlines()[0]
    for setting in ("codes ", "clusters ", "rounds ", "steps_per_round ", "batch_size ", "lr "):
        assert setting in settings
    assert "pipeline train --dataset sample --model poegan" in result.output  # what to run before fitting


@pytest.mark.slow
def test_fitted_on_a_tiny_poegan_run_each_mapper_stays_in_its_cluster_and_is_evaluated(tmp_path):
    data = tmp_path / "data"
    write_sample_shards(data)
    params = _params(tmp_path)
    for model in ("poegan", "cluster-guided"):
        result = _run("train", "--model", model, "--params", str(params), "--data-dir", str(data))
        assert result.exit_code == 0, result.output
    run = data / "runs" / "sample" / "cluster-guided" / "train"
    clusters = json.loads((run / "clusters.json").read_text())["clusters"]
    assert [c["name"] for c in clusters] == ["cluster-r8-0", "cluster-r8-1"]
    assert sum(c["size"] for c in clusters) == 200
    for c in clusters:  # chance would be the cluster's share of the codes
        assert c["self_consistency"] >= 0.9 and c["self_consistency"] > c["share"], c
    grids = [np.asarray(Image.open(run / f"samples-{c['name']}.png")) for c in clusters]
    assert grids[0].shape == (96, 96, 3) and not np.array_equal(*grids)

    result = _run("evaluate", "--model", "cluster-guided", "--params", str(params), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    metrics = json.loads((data / "runs" / "sample" / "cluster-guided" / "eval" / "metrics.json").read_text())
    for row in ("unconditional", "cluster-r8-0", "cluster-r8-1"):
        assert metrics[f"{row}/fid"] > 0 and metrics[f"{row}/lpips_diversity"] > 0
    assert not any(k.startswith(("text/", "seg/")) for k in metrics)
