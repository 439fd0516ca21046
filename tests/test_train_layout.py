"""The layout measure: real images follow their own segmentation, not another image's."""
import itertools

from train_shards import write_training_shards

from train.data import ShardLoader, to_device
from train.layout import class_colours, layout_agreement


def test_real_images_agree_with_their_own_layout_far_more_than_with_a_shuffled_one(tmp_path):
    urls = [str(p) for p in write_training_shards(tmp_path, images=4, per_shard=4, short_side=32)]
    batch = to_device(next(itertools.islice(ShardLoader(urls, 32, 182, 4, shuffle_buffer=1), 1)), "cpu", 182)
    colours = class_colours(batch["image"], batch["seg"])
    own = layout_agreement(batch["image"], batch["seg"], colours)
    other = layout_agreement(batch["image"], batch["seg"].roll(1, 0), colours)
    assert own > 0.85 and other < own - 0.2
