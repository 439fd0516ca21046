"""Bounded decoding and storage of one image: every awkward input gives 8-bit RGB or a reason."""
import io

import numpy as np
import pytest
from ingest_fixtures import (LIMITS, bomb_png, cmyk_jpeg, encode, exif_rotated_jpeg, gray_jpeg, jpeg,
                             palette_png_with_transparency, picture, png16, ramp16)
from PIL import Image

from pipeline.imageio import (Rejected, Stored, decode_labels, decode_sketch, fit_labels, fit_sketch, pil_limits,
                             store_jpeg, stored_size)


def decoded(stored) -> np.ndarray:
    image = Image.open(io.BytesIO(stored.jpg))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size == (stored.width, stored.height)
    return np.asarray(image).astype(int)


def reason(data: bytes, limits=LIMITS) -> str:
    with pytest.raises(Rejected) as caught:
        store_jpeg(data, limits)
    return caught.value.reason


def test_an_rgb_jpeg_within_limits_is_kept_byte_for_byte():
    data = jpeg(80, 60)
    stored = store_jpeg(data, LIMITS)
    assert stored.jpg == data and stored.reused and (stored.width, stored.height) == (80, 60)


def test_a_large_image_is_scaled_to_the_short_side_and_a_small_one_never_upscaled():
    big = store_jpeg(jpeg(400, 200), LIMITS)
    assert (big.width, big.height) == (192, 96) and not big.reused
    assert stored_size(50, 40, 96) == (50, 40)
    assert stored_size(100, 300, 96) == (96, 288)


def test_a_png_is_reencoded_as_jpeg_with_the_same_pixels():
    array = picture(64, 48)
    assert np.abs(decoded(store_jpeg(encode(array, "PNG"), LIMITS)) - array).mean() < 4


@pytest.mark.parametrize("make, kind, source", [
    (cmyk_jpeg, "CMYK", picture(64, 48, 1)),                                  # the RGB picture it was made from
    (gray_jpeg, "L", np.repeat(picture(64, 48, 3)[..., :1], 3, axis=-1)),     # grey v -> (v, v, v)
    (png16, "I;16", np.repeat(ramp16()[..., None] >> 8, 3, axis=-1)),         # scaled to 8 bits, not clipped
])
def test_cmyk_grey_and_16_bit_become_rgb_with_their_sources_pixels(make, kind, source):
    data = make()
    assert Image.open(io.BytesIO(data)).mode == kind
    pixels = decoded(store_jpeg(data, LIMITS))
    assert pixels.shape == source.shape
    # two JPEG generations (the source's and the stored one at quality 90) stay within a few levels
    error = np.abs(pixels - source.astype(int))
    assert error.mean() < 5 and np.percentile(error, 99) < 16


def test_transparency_is_composited_on_white():
    pixels = decoded(store_jpeg(palette_png_with_transparency(), LIMITS))
    assert (pixels[:, :24] > 245).all()                      # transparent -> white
    assert (pixels[:, 40:, 0] > 235).all() and (pixels[:, 40:, 1:] < 20).all()  # opaque red stays red


def test_exif_orientation_is_applied_to_the_pixels():
    stored = store_jpeg(exif_rotated_jpeg(6), LIMITS)
    pixels = decoded(stored)
    assert (stored.width, stored.height, stored.orientation) == (40, 80, 6) and not stored.reused
    # orientation 6: the stored picture is turned 90 degrees clockwise, the white half ends at the bottom
    assert pixels[:30].mean() < 20 and pixels[50:].mean() > 235


@pytest.mark.parametrize("data, expected", [
    (b"", "empty"),
    (b"this is a text file that is named like a picture\n", "not_an_image"),
    (jpeg(80, 60)[:600], "undecodable"),
    (encode(picture(80, 60), "PNG")[:300], "undecodable"),
    (jpeg(20, 60), "too_small"),
    (jpeg(300, 40), "aspect"),
    (bomb_png(), "too_large"),
])
def test_bad_inputs_are_rejected_with_their_reason(data, expected):
    assert reason(data) == expected


def test_the_pixel_limit_is_checked_from_the_header_before_decoding():
    limits = LIMITS.model_copy(update={"max_pixels": 3000})
    assert reason(jpeg(80, 60), limits) == "too_large"
    # a 50,000 x 50,000 header whose data is a few bytes: rejected with its size, not a decode error
    with pytest.raises(Rejected, match="too_large"):
        store_jpeg(bomb_png(), LIMITS.model_copy(update={"max_pixels": 10**10}))


def test_pil_limits_are_restored_after_the_block():
    before = Image.MAX_IMAGE_PIXELS
    with pil_limits(1234):
        assert Image.MAX_IMAGE_PIXELS == 1234
    assert Image.MAX_IMAGE_PIXELS == before


def test_labels_follow_the_image_orientation_and_size_with_nearest_resampling():
    stored = store_jpeg(exif_rotated_jpeg(6), LIMITS.model_copy(update={"max_short_side": 20}))
    labels = np.zeros((40, 80), np.uint8)
    labels[:, 40:] = 7                                     # the white half of the raw pixels
    fitted = fit_labels(labels, stored)
    assert fitted.shape == (stored.height, stored.width) == (40, 20)
    assert set(np.unique(fitted)) == {0, 7}                # nearest: no blended class ids
    assert (fitted[25:] == 7).all() and (fitted[:15] == 0).all()


def test_labels_of_another_aspect_are_rejected():
    stored = store_jpeg(jpeg(80, 60), LIMITS)
    with pytest.raises(Rejected, match="bad_seg"):
        fit_labels(np.zeros((60, 60), np.uint8), stored)


def test_label_maps_must_hold_class_ids():
    assert decode_labels(encode(np.full((4, 4, 3), 9, np.uint8), "PNG"), 100).tolist() == [[9] * 4] * 4
    with pytest.raises(Rejected, match="bad_seg"):
        decode_labels(encode(picture(8, 8), "PNG"), 100)


def test_a_sketch_shrinks_without_losing_a_line_thinner_than_the_scale():
    strokes = np.zeros((300, 300), np.uint8)
    strokes[102, :] = 255  # a third of target row 32: nearest (rows 101, 104) and a 50% threshold both drop it
    fitted = fit_sketch(strokes, Stored(b"", 96, 96, 1, reused=False))
    assert fitted.shape == (96, 96) and set(np.unique(fitted)) == {0, 255}
    assert [row for row in range(96) if fitted[row].any()] == [32] and fitted[32].all()


def test_sketches_are_dark_lines_on_light_and_keep_the_image_aspect():
    drawing = np.full((8, 8, 3), 255, np.uint8)
    drawing[2] = 90
    assert decode_sketch(encode(drawing, "JPEG", quality=95), 100)[:, 0].tolist() == [0, 0, 255, 0, 0, 0, 0, 0]
    with pytest.raises(Rejected, match="bad_sketch"):
        fit_sketch(np.zeros((60, 60), np.uint8), store_jpeg(jpeg(80, 60), LIMITS))
