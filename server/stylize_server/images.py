"""Images in and out: decode (with limits checked from the header before any
pixel is decoded), resize, encode, and the colour transforms of
`preserve_colors`. Arrays are H×W×3 uint8 RGB unless a name says float.
"""
from __future__ import annotations

import io
import warnings
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from .errors import InvalidArgument, TooLarge

# Pillow's own bomb guard raises above 2x this; our explicit check from the
# header comes first and names the field, this is the second line of defence.
Image.MAX_IMAGE_PIXELS = 64_000_000

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def decode(data: bytes, field: str, max_pixels: int) -> np.ndarray:
    """Decode an encoded image into RGB, refusing it before decoding when its
    header declares more than `max_pixels` pixels."""
    if not data:
        raise InvalidArgument(field, "is empty; expected PNG, JPEG or WebP bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise InvalidArgument(field, f"unsupported image format {fmt}; use PNG, JPEG or WebP")
            w, h = image.size
            if w < 1 or h < 1:
                raise InvalidArgument(field, f"image has no pixels ({w}x{h})")
            if w * h > max_pixels:
                raise TooLarge(
                    field, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except (InvalidArgument, TooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow refuses the header before we can read it: the image declares
        # more than Pillow's own guard, which is far above any sane limit.
        raise TooLarge(
            field,
            f"image declares more than {Image.MAX_IMAGE_PIXELS} pixels, over the limit of {max_pixels} pixels "
            "(rejected from its header as a decompression bomb)",
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad bytes
        raise InvalidArgument(
            field, f"cannot decode image ({type(exc).__name__}: {exc}); expected PNG, JPEG or WebP bytes"
        ) from None
    return rgb


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        arr = arr * (255.0 / (65535.0 if hi > 255 else 255.0))
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width) with a high-quality filter."""
    h, w = shape
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)


def fit_longest(image: np.ndarray, longest: int, min_side: int = 0) -> np.ndarray:
    """Resize so that the longest side is `longest`, keeping the aspect ratio,
    unless that would make the shorter side less than `min_side`: then the
    shorter side is `min_side`."""
    h, w = image.shape[:2]
    scale = max(longest / max(h, w), min_side / min(h, w))
    return resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def encode(image: np.ndarray, fmt: Literal["png", "jpeg", "webp"] | str, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    pil = Image.fromarray(image)
    fmt = str(fmt).lower()
    if fmt == "png":
        pil.save(buf, format="PNG", compress_level=6)
    elif fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
    elif fmt == "webp":
        pil.save(buf, format="WEBP", quality=quality, method=4)
    else:
        raise InvalidArgument("output_format", f"unknown format {fmt!r}; use png, jpeg or webp")
    return buf.getvalue()


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (never enlarge) so that the longest side is at most `max_side`."""
    if max(image.shape[:2]) <= max_side:
        return image
    return fit_longest(image, max_side)


# ITU-R BT.601 full-range YCbCr, the JPEG convention.
_RGB_TO_YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """uint8 or float RGB -> float YCbCr with Cb, Cr centred on 0."""
    return image.astype(np.float64) @ _RGB_TO_YCC.T


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    return ycc @ _YCC_TO_RGB.T


def transfer_luminance(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance from `result`, chrominance from `content` (same shape).

    Returns float RGB, not clipped: clipping would change the chrominance of
    saturated pixels, so the caller decides when to quantize.
    """
    y = rgb_to_ycbcr(result)[..., :1]
    cbcr = rgb_to_ycbcr(content)[..., 1:]
    return ycbcr_to_rgb(np.concatenate([y, cbcr], axis=-1))


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
