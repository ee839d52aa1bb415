"""The [image] pipeline: JPEG/PNG bytes -> float32 C x H x W, as a model's config.toml says.

One implementation for every API that takes images (TorchServe's image_classifier,
v2 BYTES image inputs, the KServe v1 envelope). The steps and their rounding follow
torchvision's ``Resize(resize)``, ``CenterCrop(crop)``, ``ToTensor()``,
``Normalize(mean, std)`` on a PIL image, which is what TorchServe's default
image_classifier handler runs, so a model gets the same tensor it got there:

    decode -> convert to mode (RGB or L) -> resize the short side to ``resize``
    (bilinear; the long side int(resize * long / short)) -> center-crop ``crop``
    (zero-padded when smaller) -> scale to [0, 1] -> (x - mean) / std per channel

Pillow and numpy only: no torch here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError
from .model_config import ImageConfig

if TYPE_CHECKING:  # Pillow is imported on the first image (~20 ms off every start)
    from PIL import Image

FORMATS = ("JPEG", "PNG")
# Decoded pixels accepted per image (Pillow's own bomb check warns past ~89M).
MAX_PIXELS = 40_000_000


def preprocess_image(data: bytes | bytearray | memoryview, config: ImageConfig) -> np.ndarray:
    """Decode one JPEG or PNG image and preprocess it as ``config`` says.

    Args:
        data: the encoded image, as sent.
        config: the model's ``[image]`` table.
    Returns:
        float32 array, C x H x W (C = 3 for mode RGB, 1 for L), C-contiguous.
    Raises:
        InvalidInputError: not a JPEG or PNG Pillow can decode, or too many pixels (400).
    """
    img = _decode(data)
    img = _convert(img, config.mode)
    if config.resize:
        img = _resize_short_side(img, config.resize)
    # pixels: (H, W) for L, (H, W, 3) for RGB, uint8
    pixels = np.asarray(img, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if config.crop:
        pixels = center_crop(pixels, config.crop)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    # scaled: (H, W, C) float32 in [0, 1], then normalised per channel
    scaled = pixels.astype(np.float32) / np.float32(255.0)
    normalised = (scaled - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))


def preprocess_images(items: Sequence[Any], config: ImageConfig) -> np.ndarray:
    """Several encoded images -> one float32 batch N x C x H x W (for BYTES image inputs).

    Raises:
        InvalidInputError: a bad image (its index is named), or images whose sizes differ
            after preprocessing (only possible with crop = 0).
    """
    arrays = []
    for i, item in enumerate(items):
        try:
            arrays.append(preprocess_image(item, config))
        except InvalidInputError as exc:
            error = InvalidInputError(f"image {i}: {exc.message}")
            error.index, error.reason = i, exc.message  # type: ignore[attr-defined]
            raise error from None
    if not arrays:
        raise InvalidInputError("no image in the request")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InvalidInputError(
            f"the images have different sizes after preprocessing ({sorted(shapes)}); send "
            "images of one size, or give the model an [image] crop")
    return np.stack(arrays)


def load_pillow() -> None:
    """Import Pillow and its JPEG and PNG plugins (what the first image would)."""
    from PIL import Image

    Image.preinit()


# How base64 text of a PNG (\x89PNG) and of a JPEG (\xff\xd8\xff) begins.
BASE64_IMAGE_HEADS = (b"iVBORw0K", b"/9j/")


def _decode(data: bytes | bytearray | memoryview) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if not len(data):
        raise InvalidInputError("the image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        head = bytes(data[:8])
        hint = ""
        if head.startswith(BASE64_IMAGE_HEADS):
            hint = ("; it looks base64-encoded: send the image's own bytes (a raw body, "
                    "multipart, or the binary tensor extension)")
        raise InvalidInputError(
            f"the body is not a JPEG or PNG image (it starts with {head!r}); "
            f"image models take JPEG or PNG{hint}") from None
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(f"cannot read the image: {exc}") from None
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise InvalidInputError(
            f"the image is {width} x {height} pixels; at most {MAX_PIXELS} pixels are accepted")
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"cannot decode the {img.format} image: {exc}") from None
    return img


def _convert(img: Image.Image, mode: str) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit grey PNG: scale into 8 bits rather than clip.
        arr = np.asarray(img, dtype=np.float64)
        wide = img.mode.startswith("I;16") or (arr.size and arr.max() > 255)
        arr = arr / 257.0 if wide else arr
        from PIL import Image

        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
    if img.mode == mode:
        return img
    if img.mode == "P" and "transparency" in img.info:
        # Palette transparency: through RGBA, as Pillow asks, then drop the alpha.
        img = img.convert("RGBA")
    return img.convert(mode)


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """torchvision's Resize(int): the short side becomes ``short``, the long side scales down."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _resize_short_side(img: Image.Image, short: int) -> Image.Image:
    size = resized_size(img.width, img.height, short)
    if size == img.size:
        return img
    if 0 in size:
        raise InvalidInputError(f"the image is {img.width} x {img.height} pixels: too thin to "
                                f"resize to a short side of {short}")
    from PIL import Image

    return img.resize(size, Image.Resampling.BILINEAR)


def center_crop(pixels: np.ndarray, crop: int) -> np.ndarray:
    """torchvision's CenterCrop on (H, W, C): pad with zeros when smaller, then crop."""
    height, width = pixels.shape[:2]
    if height < crop or width < crop:
        padded = np.zeros((max(height, crop), max(width, crop), pixels.shape[2]), pixels.dtype)
        top, left = (max(crop - height, 0)) // 2, (max(crop - width, 0)) // 2
        padded[top : top + height, left : left + width] = pixels
        pixels = padded
        height, width = pixels.shape[:2]
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return pixels[top : top + crop, left : left + crop]
