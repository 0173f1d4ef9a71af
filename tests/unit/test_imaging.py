"""Guarded decoding: every bad input maps to its API error; odd valid inputs decode to RGB."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.errors import ApiError, PayloadTooLarge
from service.pipeline.imaging import decode_image
from tests.conftest import encode
from tests.samples import bad_images, odd_images, png_bomb, with_orientation

LIMIT = 40_000_000


@pytest.mark.parametrize("name", sorted(bad_images()))
def test_bad_inputs_raise_their_api_error(name: str) -> None:
    data, status, code = bad_images()[name]
    with pytest.raises(ApiError) as info:
        decode_image(data, max_pixels=LIMIT, target_size=(28, 28))
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.message


@pytest.mark.parametrize("name", sorted(odd_images()))
def test_odd_images_decode_to_rgb(name: str) -> None:
    image = decode_image(odd_images()[name], max_pixels=LIMIT)
    assert image.pixels.dtype == np.uint8
    assert image.pixels.ndim == 3 and image.pixels.shape[2] == 3
    assert image.pixels.shape[:2] == (image.height, image.width)


def test_bomb_is_rejected_before_pixels_are_allocated() -> None:
    import tracemalloc

    data = png_bomb(30000, 30000)
    assert len(data) < 5000
    tracemalloc.start()
    with pytest.raises(PayloadTooLarge):
        decode_image(data, max_pixels=LIMIT)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 1024 * 1024


def test_pixel_limit_is_configurable() -> None:
    data = encode(np.zeros((100, 100, 3), np.uint8))
    decode_image(data, max_pixels=10_000)
    with pytest.raises(PayloadTooLarge):
        decode_image(data, max_pixels=9_999)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    grey16 = np.array([[0, 32768, 65535]], dtype=np.uint16)
    image = decode_image(encode(Image.fromarray(grey16)), max_pixels=LIMIT)
    np.testing.assert_array_equal(image.pixels[0, :, 0], [0, 128, 255])


def test_transparent_pixels_become_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    image = decode_image(encode(rgba), max_pixels=LIMIT)
    assert (image.pixels == 255).all()


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c).convert("P") for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels = decode_image(data, max_pixels=LIMIT).pixels
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:10, :20] = 255  # a white block in the top-left corner
    data = with_orientation(Image.fromarray(upright), orientation)
    image = decode_image(data, max_pixels=LIMIT)
    assert (image.width, image.height) == (60, 40)
    np.testing.assert_array_equal(image.pixels, upright)


def test_jpeg_draft_decodes_at_reduced_scale_and_keeps_source_size() -> None:
    rng = np.random.default_rng(0)
    data = encode(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), "JPEG")
    small = decode_image(data, max_pixels=LIMIT, target_size=(28, 28))
    assert (small.width, small.height) == (640, 480)
    assert small.pixels.shape == (60, 80, 3)  # 1/8 scale, still >= the target
    assert small.scale == (8.0, 8.0)
    full = decode_image(data, max_pixels=LIMIT)
    assert full.pixels.shape == (480, 640, 3)
    big = decode_image(data, max_pixels=LIMIT, target_size=(320, 320))
    assert big.pixels.shape[0] >= 320 and big.pixels.shape[1] >= 320
