"""Configurations carry the supplement's Table 3 and B.4's channel rules."""
import pytest

from train.families.poegan.configs import CONFIGS, GLOBAL_DIM, get_config
from train.families.poegan.generator import Generator

TABLE3 = {  # lr, batch, KL text/seg/sketch/style, image/text contrastive, Dec/Dis base/max, latent base/max
    "celeba-1024": (0.003, 64, 0.01, 0.01, 0.1, 0.0005, 0.3, 0.3, 16, 512, 2, 32),
    "celeba-256": (0.003, 64, 0.1, 0.1, 1, 0.005, 0.3, 0.3, 64, 512, 16, 64),
    "coco-256": (0.004, 256, 0.01, 0.01, 0.1, 0.001, 3, 0.3, 128, 1024, 16, 64),
    "coco-64": (0.004, 128, 0.1, 0.1, 1, 0.01, 3, 0.3, 256, 512, 64, 64),
    "landscape-1024": (0.004, 768, 0.05, 0.1, 1, 0.01, 3, 0.3, 32, 1024, 2, 32),
}


@pytest.mark.parametrize("name", TABLE3)
def test_configuration_matches_table_3(name):
    c = get_config(name)
    kl = c.kl_weights
    assert (c.lr, c.batch_size, kl["text"], kl["seg"], kl["sketch"], kl["style"], c.image_contrastive,
            c.text_contrastive, c.channel_base, c.channel_max, c.latent_base, c.latent_max) == TABLE3[name]
    assert c.resolution == int(name.split("-")[1])


def test_channels_double_as_resolution_halves_up_to_the_maximum_and_encoders_use_a_quarter():
    c = get_config("celeba-1024")
    assert [c.channels(r) for r in c.resolutions[::-1]] == [16, 32, 64, 128, 256, 512, 512, 512, 512]
    assert [c.encoder_channels(r) for r in (1024, 32)] == [4, 128]
    assert [c.latent_channels(r) for r in c.resolutions[::-1]] == [2, 4, 8, 16, 32, 32, 32, 32, 32]


def test_global_latent_and_w_are_512_wide_and_tiny_is_small():
    assert GLOBAL_DIM == 512
    G = Generator(get_config("tiny"), 182)
    assert G.global_poe.mapping[0].weight.shape == (512, 512) and G.global_poe.mapping[-1].weight.shape[0] == 512
    assert CONFIGS["tiny"].resolution <= 64
    with pytest.raises(KeyError, match="celeba-1024"):
        get_config("nope")
