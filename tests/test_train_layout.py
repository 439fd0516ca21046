"""The layout measures: real images follow their own segmentation and sketch, not another image's."""
import itertools

import numpy as np

from layout_measures import class_colours, layout_agreement, layout_sketch
from train_shards import write_training_shards

from train.data import ShardLoader, to_device
from train.metrics.sketch_consistency import sketch_scores


def test_real_images_agree_with_their_own_layout_far_more_than_with_a_shuffled_one(tmp_path):
    urls = [str(p) for p in write_training_shards(tmp_path, images=4, per_shard=4, short_side=32)]
    batch = to_device(next(itertools.islice(ShardLoader(urls, 32, 182, 4, shuffle_buffer=1), 1)), "cpu", 182)
    colours = class_colours(batch["image"], batch["seg"])
    own = layout_agreement(batch["image"], batch["seg"], colours)
    other = layout_agreement(batch["image"], batch["seg"].roll(1, 0), colours)
    assert own > 0.85 and other < own - 0.2


def test_real_images_class_boundaries_match_their_own_sketch_far_more_than_a_shuffled_one(tmp_path):
    urls = [str(p) for p in write_training_shards(tmp_path, images=4, per_shard=4)]
    batch = to_device(next(itertools.islice(ShardLoader(urls, 32, 182, 4, shuffle_buffer=1), 1)), "cpu", 182)
    sketches = (batch["sketch"][:, 0] * 255).round().byte().numpy()  # label boundaries, resized to 32 px
    drawn = layout_sketch(batch["image"], class_colours(batch["image"], batch["seg"]))
    assert drawn.dtype == np.uint8 and set(np.unique(drawn)) == {0, 255}
    own = sketch_scores(drawn, sketches, 1.0)["sketch_fscore"]
    assert own > 0.85 and sketch_scores(drawn, np.roll(sketches, 1, 0), 1.0)["sketch_fscore"] < own - 0.3
