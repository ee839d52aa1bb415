"""core/image.py: the [image] pipeline against a reference written with PIL and torch ops.

The reference follows torchvision's Resize(int) + CenterCrop + ToTensor + Normalize on a
PIL image (what TorchServe's image_classifier runs), step by step in its own code.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from fastserve.core import image
from fastserve.core.image import center_crop, preprocess_image, preprocess_images, resized_size
from fastserve.core.model_config import ImageConfig
from fastserve.errors import InvalidInputError

IMAGENET = ImageConfig()


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)


def reference(data: bytes, config: ImageConfig) -> torch.Tensor:
    img = Image.open(io.BytesIO(data)).convert(config.mode)
    if config.resize:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(config.resize * long / short)
        size = (config.resize, new_long) if w <= h else (new_long, config.resize)
        img = img.resize(size, Image.Resampling.BILINEAR)
    t = torch.from_numpy(np.array(img)).to(torch.float32) / 255.0
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
    if config.crop:
        c = config.crop
        _, h, w = t.shape
        pad_w, pad_h = max(c - w, 0), max(c - h, 0)
        t = torch.nn.functional.pad(t, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2,
                                        (pad_h + 1) // 2))
        _, h, w = t.shape
        top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
        t = t[:, top:top + c, left:left + c]
    mean = torch.tensor(config.mean).view(-1, 1, 1)
    std = torch.tensor(config.std).view(-1, 1, 1)
    return (t - mean) / std


@pytest.mark.parametrize("size", [(300, 400), (400, 300), (256, 256), (257, 1000), (224, 224)])
def test_image_rgb_png_matches_reference(size: tuple[int, int]) -> None:
    data = encode(noise(*size))
    got = preprocess_image(data, IMAGENET)
    assert got.shape == (3, 224, 224) and got.dtype == np.float32
    assert got.flags["C_CONTIGUOUS"]
    assert np.allclose(got, reference(data, IMAGENET).numpy(), atol=1e-5)


def test_image_jpeg_decodes_like_pillow() -> None:
    data = encode(noise(120, 90), "JPEG", quality=90)
    config = ImageConfig(resize=64, crop=48)
    assert np.allclose(preprocess_image(data, config), reference(data, config).numpy(),
                       atol=1e-5)


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_image_modes_are_converted_to_rgb(mode: str) -> None:
    data = encode(noise(50, 40, mode))
    config = ImageConfig(resize=32, crop=32)
    got = preprocess_image(data, config)
    assert got.shape == (3, 32, 32)
    assert np.allclose(got, reference(data, config).numpy(), atol=1e-5)


def test_image_grey_mode_one_channel() -> None:
    data = encode(noise(20, 30, "RGB"))
    config = ImageConfig(resize=0, crop=0, mode="L", mean=(0.5,), std=(0.25,))
    got = preprocess_image(data, config)
    assert got.shape == (1, 30, 20)
    assert np.allclose(got, reference(data, config).numpy(), atol=1e-5)


def test_image_palette_with_transparency_converts_without_warning() -> None:
    img = noise(16, 16, "RGB").convert("P")
    img.info["transparency"] = 0
    got = preprocess_image(encode(img, transparency=0), ImageConfig(resize=0, crop=0))
    assert got.shape == (3, 16, 16)


def test_image_16_bit_grey_png_is_scaled_into_8_bits() -> None:
    arr = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    data = encode(Image.fromarray(arr))
    got = preprocess_image(data, ImageConfig(resize=0, crop=0, mode="L", mean=(0.0,),
                                             std=(1.0,)))
    assert np.allclose(got[0], np.round(arr / 257.0) / 255.0, atol=1e-6)


def test_image_smaller_than_crop_is_zero_padded_like_torchvision() -> None:
    data = encode(noise(10, 6))
    config = ImageConfig(resize=0, crop=12)
    got = preprocess_image(data, config)
    assert got.shape == (3, 12, 12)
    assert np.allclose(got, reference(data, config).numpy(), atol=1e-5)
    # the padded border is pixel 0, normalised
    assert np.allclose(got[:, 0, 0], (0 - np.array(IMAGENET.mean)) / np.array(IMAGENET.std))


@pytest.mark.parametrize("w,h,short,want", [(300, 400, 256, (256, 341)), (400, 300, 256,
                         (341, 256)), (8, 8, 4, (4, 4)), (1000, 3, 2, (666, 2))])
def test_image_resized_size_is_torchvisions(w: int, h: int, short: int,
                                            want: tuple[int, int]) -> None:
    assert resized_size(w, h, short) == want


def test_image_center_crop_rounds_like_torchvision() -> None:
    pixels = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6, 1)
    out = center_crop(pixels, 3)
    # top = round(1.0) = 1, left = round(1.5) = 2 (banker's rounding, as torchvision)
    assert out[:, :, 0].tolist() == pixels[1:4, 2:5, 0].tolist()


@pytest.mark.parametrize("data,needle", [
    (b"", "empty"),
    (b"hello, not an image at all", "not a JPEG or PNG"),
    (encode(noise(8, 8), "GIF"), "not a JPEG or PNG"),
    (encode(noise(64, 64))[:60], "cannot"),
    (encode(noise(64, 64), "JPEG")[:200], "cannot"),
])
def test_image_bad_input_is_invalid(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        preprocess_image(data, IMAGENET)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_base64_image_gets_a_hint(fmt: str) -> None:
    """A base64 text of an image (a v2 JSON BYTES element, a curl -d of `base64 img`) is
    refused with what to send instead, not only its first bytes."""
    text = base64.b64encode(encode(noise(8, 8), fmt))
    with pytest.raises(InvalidInputError, match="looks base64-encoded"):
        preprocess_image(text, IMAGENET)


def test_image_too_many_pixels_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(image, "MAX_PIXELS", 99)
    with pytest.raises(InvalidInputError, match="at most 99 pixels"):
        preprocess_image(encode(noise(10, 10)), IMAGENET)


def test_image_batch_stacks_and_names_the_bad_one() -> None:
    config = ImageConfig(resize=16, crop=16)
    items = [encode(noise(20, 30, seed=i)) for i in range(3)]
    batch = preprocess_images(items, config)
    assert batch.shape == (3, 3, 16, 16)
    assert np.allclose(batch[2], preprocess_image(items[2], config))
    with pytest.raises(InvalidInputError, match="image 1"):
        preprocess_images([items[0], b"junk"], config)
    with pytest.raises(InvalidInputError, match="different sizes"):
        preprocess_images([encode(noise(4, 4)), encode(noise(5, 4))],
                          ImageConfig(resize=0, crop=0))


def test_image_accepts_bytearray_and_memoryview() -> None:
    data = encode(noise(9, 9))
    config = ImageConfig(resize=0, crop=0)
    want = preprocess_image(data, config)
    assert np.array_equal(preprocess_image(bytearray(data), config), want)
    assert np.array_equal(preprocess_image(memoryview(data), config), want)
