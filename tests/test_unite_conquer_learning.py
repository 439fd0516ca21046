"""Unite-and-Conquer learns on CPU (issue 13's slow test): the tiny experts, trained on 4 sample images, follow the
segmentation or sketch they are given. The measures are the GAN baselines' learning tests' (train/layout.py):
nearest class colour agreement with the segmentation, and the F-score of the class boundaries of what the image
shows against the input sketch (the test shards' sketches are label boundaries), each against another image's."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from train_shards import write_training_shards

from annotators.labelmaps import load_label_map
from train.data import ShardLoader, to_device
from train.evaluate import generate
from train.layout import class_colours, layout_agreement, layout_sketch
from train.loop import RunSpec, train
from train.metrics.sketch_consistency import sketch_scores
from train.models import family

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 750
DRAWS = 3  # noise seeds per condition: 12 images per score


def _scores(G, batch: dict, condition: str, colours: dict) -> dict[str, float]:
    """Layout agreement and sketch F-score of G's images under `condition`, with their own inputs and with
    another image's (the batch rolled by one)."""
    images = np.concatenate([generate(G, batch, condition, seed=s, batch_size=4, device="cpu") for s in range(DRAWS)])
    generated = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    seg = batch["seg"].repeat(DRAWS, 1, 1, 1)
    sketches = np.tile((batch["sketch"][:, 0] * 255).round().byte().numpy(), (DRAWS, 1, 1))
    drawn = layout_sketch(generated, colours)
    return {"seg": layout_agreement(generated, seg, colours),
            "seg_shuffled": layout_agreement(generated, seg.roll(1, 0), colours),
            "sketch": sketch_scores(drawn, sketches, 1.0)["sketch_fscore"],
            "sketch_shuffled": sketch_scores(drawn, np.roll(sketches, 1, 0), 1.0)["sketch_fscore"]}


@pytest.mark.slow  # 750 steps of three experts: ~18 min on a busy 2-core machine
def test_tiny_experts_trained_on_four_images_follow_their_segmentation_and_sketch(tmp_path):
    labels = load_label_map("coco-stuff-182")
    urls = [str(p) for p in write_training_shards(tmp_path / "shards", images=4, per_shard=4)]
    fam = family("unite-conquer")
    # sampled with the paper's weight for generic scenes (w_i = 5, Sec. 4.2) and 10 DDIM steps: after 750 steps
    # the experts' noise estimates at high t are still coarse, and fewer steps compound less of their error
    cfg = replace(fam.config("tiny"), sample_steps=10, weights={"seg": 5.0, "sketch": 5.0, "text": 5.0})
    spec = RunSpec(tmp_path / "run", urls, urls, labels.num_classes, labels.colours, steps=STEPS, batch_size=4,
                   snapshot_every=STEPS, sample_every=STEPS, shuffle_buffer=8, epoch_batches=10, tensorboard=False)
    records = train(fam, cfg, None, spec, progress=False)
    for expert in ("seg", "sketch", "text"):
        first, last = ([r[f"{expert}_mse"] for r in part] for part in (records[:50], records[-50:]))
        assert np.mean(last) < np.mean(first) / 3, expert
    G, = fam.networks(cfg, labels.num_classes)
    G.load_state_dict(torch.load(tmp_path / "run" / f"network-snapshot-{STEPS:06d}.pt", weights_only=True)["G_ema"])
    G.eval()
    batch = to_device(next(iter(ShardLoader(urls, cfg.resolution, labels.num_classes, 4, seed=1, shuffle_buffer=1))),
                      "cpu", labels.num_classes)
    colours = class_colours(batch["image"], batch["seg"])
    scores = {condition: _scores(G, batch, condition, colours) for condition in ("seg", "sketch", "all")}
    assert scores["seg"]["seg"] >= scores["seg"]["seg_shuffled"] + 0.1, scores
    assert scores["sketch"]["sketch"] > scores["sketch"]["sketch_shuffled"], scores
    # the product of all experts follows the layout at least as well as either expert alone (its sketch F-score
    # does not yet reach the sketch expert's after 750 steps: docs/known-gaps.md)
    assert scores["all"]["seg"] >= max(scores["seg"]["seg"], scores["sketch"]["seg"]), scores
