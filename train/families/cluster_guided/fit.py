"""Fit the cluster-guided generator from a trained PoE-GAN snapshot (G is never retrained): sample codes z^0,
cluster the decoder's features at each chosen resolution with k-means, fit one IMLE mapper per cluster, measure
each mapper's self-consistency, and write the snapshot, a sample grid per cluster, clusters.json and log.jsonl."""
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from ... import checkpoint, run_config
from ...samples import image_grid, save_grid
from ..poegan.configs import GLOBAL_DIM
from .generator import ClusterGuidedGenerator
from .imle import IMLESettings, fit_imle, mapper


class FitError(ValueError):
    """A fit that cannot start; the message names the param or file."""


def kmeans(features: np.ndarray, clusters: int, inits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels [N], centroids [K, D]) of k-means on `features` [N, D], `inits` restarts from `seed`."""
    fitted = KMeans(n_clusters=clusters, n_init=inits, random_state=seed).fit(features)
    return fitted.labels_.astype(np.int64), fitted.cluster_centers_.astype(np.float32)


@torch.no_grad()
def _batched(fn, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])


def check(section, cfg) -> None:
    """FitError naming the param when `train.cluster-guided` cannot apply to configuration `cfg`."""
    unknown = [r for r in section.resolutions if r not in cfg.resolutions]
    if unknown:
        raise FitError(f"train.cluster-guided.resolutions {unknown} are not decoder resolutions of this "
                       f"configuration ({', '.join(map(str, cfg.resolutions))})")
    small = [r for r in section.resolutions if section.pool > r]
    if small:
        raise FitError(f"train.cluster-guided.pool {section.pool} is larger than resolutions {small}")
    if section.clusters > section.codes:
        raise FitError(f"train.cluster-guided.clusters {section.clusters} exceeds codes {section.codes}")


def base_generator(snapshot: Path, cfg, num_classes: int) -> ClusterGuidedGenerator:
    """An empty cluster-guided generator holding the PoE-GAN snapshot's G_ema; a snapshot of another configuration
    is a FitError saying which params must agree."""
    model = ClusterGuidedGenerator(cfg, num_classes)
    try:
        model.base.load_state_dict(checkpoint.load(snapshot)["G_ema"])
    except (RuntimeError, KeyError) as err:
        raise FitError(f"{snapshot} is not a PoE-GAN snapshot of the configuration train.cluster-guided.config "
                       f"gives (set it as train.poegan.config): {str(err).splitlines()[0]}") from None
    return model


def fit(base_snapshot: Path, run_dir: Path, cfg, num_classes: int, section, device,
        run_record: dict | None = None) -> dict:
    """Fit from `base_snapshot` under params `section` (train.cluster-guided) into a fresh `run_dir` (written
    beside it, then swapped in; its snapshot carries `run_record`, train/run_config.py); returns the clusters.json
    record."""
    check(section, cfg)
    model = base_generator(base_snapshot, cfg, num_classes).to(device).eval()
    model.base.requires_grad_(False)
    rng = torch.Generator().manual_seed(section.seed)  # on the CPU: the same fit on every device
    for r, buffer in model.local_noise.items():
        buffer.copy_(torch.randn(buffer.shape, generator=rng))
    model.set_pool(section.pool)
    codes = torch.randn(section.codes, GLOBAL_DIM, generator=rng).to(device)
    settings = IMLESettings(section.rounds, section.candidates, section.steps_per_round, section.batch_size,
                            section.lr)
    losses, records = {}, []
    for r in section.resolutions:
        features = _batched(lambda z: model.features(z, r), codes, section.batch_size).cpu().numpy()
        labels, centroids = kmeans(features, section.clusters, section.kmeans_inits, section.seed)
        for j in range(section.clusters):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(section.seed + len(model.clusters))
                net = mapper(section.noise_dim, section.mapper_hidden, section.mapper_layers, GLOBAL_DIM)
            member = torch.from_numpy(labels == j).to(device)
            cluster = model.add_cluster(r, torch.from_numpy(centroids[j]), float(member.float().mean()), net)
            name = f"cluster-r{r}-{j}"
            losses[name] = fit_imle(cluster.mapper, section.noise_dim, codes[member], settings, rng)
            cluster.requires_grad_(False)
            records.append({"name": name, "resolution": r, "size": int(member.sum()),
                            "share": float(cluster.share)})
    for i, record in enumerate(records):
        noise = torch.randn(section.consistency_samples, section.noise_dim, generator=rng).to(device)
        assigned = _batched(lambda e: model.assign(model.codes(e, i), record["resolution"]), noise,
                            section.batch_size)
        record["self_consistency"] = float((assigned == i).float().mean())
    summary = {"base_snapshot": base_snapshot.name, "codes": section.codes,
               "consistency_samples": section.consistency_samples, "clusters": records}
    _write(run_dir, model, summary, losses, section, device, run_record)
    return summary


def _write(run_dir: Path, model: ClusterGuidedGenerator, summary: dict, losses: dict, section, device,
           run_record: dict | None) -> None:
    """The run folder, built beside `run_dir` and swapped in whole (no file of an earlier fit survives)."""
    staging = run_dir.with_name(run_dir.name + ".fitting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    checkpoint.save(checkpoint.snapshot_path(staging, section.rounds),
                    {"G_ema": model.state_dict(), "fitted_from": summary["base_snapshot"],
                     **run_config.entry(run_record)})
    noise = torch.randn(section.grid_size ** 2, section.noise_dim,
                        generator=torch.Generator().manual_seed(section.seed + 1)).to(device)
    with torch.no_grad():
        for i, record in enumerate(summary["clusters"]):  # the same noise in every grid: mappers alone differ
            images = model.base.unconditional(model.codes(noise, i), model.local_noise)
            save_grid(staging / f"samples-{record['name']}.png", image_grid(images, section.grid_size))
    (staging / "clusters.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [json.dumps({"step": step + 1, **{f"imle_{n}": v[step] for n, v in losses.items()}})
             for step in range(section.rounds)]
    (staging / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    old = run_dir.with_name(run_dir.name + ".replaced")
    if run_dir.exists():
        run_dir.rename(old)
    staging.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)
