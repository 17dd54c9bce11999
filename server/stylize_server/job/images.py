"""Images in and out: decode (with limits checked from the header before any
pixel is decoded), resize, encode. Arrays are H×W×3 uint8 RGB unless a name
says float. Colour transforms live in `color`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from stylize_server.job.errors import DecodeFailed, InvalidArgument, TooLarge

# Pillow's own bomb guard raises above 2x this; our explicit check from the
# header comes first and names the field, this is the second line of defence.
Image.MAX_IMAGE_PIXELS = 64_000_000

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
ACCEPTED = "PNG, JPEG, WebP, BMP, GIF or TIFF"
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# EXIF orientations that swap width and height.
_TRANSPOSING = {5, 6, 7, 8}


@dataclass(frozen=True)
class Header:
    """What an image's header says, read without decoding a pixel."""

    width: int  # after EXIF orientation
    height: int
    format: str
    alpha: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # H×W×3 uint8
    alpha: np.ndarray | None  # H×W uint8, where the image has an alpha channel


def _bad_bytes(field: str) -> InvalidArgument:
    return DecodeFailed(field, f"cannot decode the image: the bytes are not a complete {ACCEPTED} file")


def _open(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Open (header only) and check the declared size against `max_pixels`."""
    if not data:
        raise InvalidArgument(field, f"is empty; expected {ACCEPTED} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow refuses the header before we can read it: the image declares
        # more than Pillow's own guard, which is far above any sane limit.
        raise TooLarge(
            field,
            f"the image declares more than {Image.MAX_IMAGE_PIXELS} pixels, over the limit of {max_pixels} "
            "pixels (refused from its header)",
        ) from None
    except Exception:
        raise _bad_bytes(field) from None
    fmt = image.format or "unknown"
    if fmt not in ALLOWED_FORMATS:
        raise DecodeFailed(field, f"unsupported image format {fmt}; this server accepts {ACCEPTED}")
    w, h = image.size
    if w < 1 or h < 1:
        raise InvalidArgument(field, f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise TooLarge(field, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels")
    return image


def probe(data: bytes, field: str, max_pixels: int) -> Header:
    """The image's size, format and whether it has alpha, from its header
    alone: nothing is decoded, so this is what admission may afford."""
    image = _open(data, field, max_pixels)
    w, h = image.size
    orientation = _orientation(image)
    if orientation in _TRANSPOSING:
        w, h = h, w
    alpha = image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)
    return Header(width=w, height=h, format=image.format or "unknown", alpha=alpha)


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation from what the header parse already read. Pillow's
    PNG getexif() decodes the whole image to look for a late eXIf chunk, which
    a header check cannot afford: a PNG's orientation counts only from an eXIf
    chunk before the pixels (PNG 1.5), which the parse has read."""
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
            return int(exif.get(0x0112, 1))
        return int(image.getexif().get(0x0112, 1))
    except Exception:
        return 1


def decode(data: bytes, field: str, max_pixels: int, at_least: tuple[int, int] | None = None) -> Decoded:
    """Decode into RGB (and the alpha channel, if any). With `at_least`
    (height, width), a JPEG is decoded at the smallest DCT scale that still
    covers it, and any image much larger than that is reduced by an integer
    factor before it becomes an array, so a huge upload for a small output
    never exists in memory more than once, in Pillow's own buffer."""
    image = _open(data, field, max_pixels)
    try:
        if at_least is not None and image.format == "JPEG":
            image.draft("RGB", (max(1, at_least[1]), max(1, at_least[0])))
        image.load()
        # In place: without it Pillow returns a copy even when nothing turns (+4 bytes a pixel).
        ImageOps.exif_transpose(image, in_place=True)
        if at_least is not None:
            # Box-reduce to no less than twice the target; the caller's Lanczos does the rest.
            factor = min(image.size[0] // max(1, 2 * at_least[1]), image.size[1] // max(1, 2 * at_least[0]))
            if factor >= 2 and image.mode in ("L", "LA", "RGB", "RGBA", "I", "F"):
                image = image.reduce(factor)
        return _split_alpha(image)
    except (InvalidArgument, TooLarge):
        raise
    except Exception:
        raise _bad_bytes(field) from None


def decode_mask(data: bytes, field: str, max_pixels: int, at_least: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as H×W float32 in 0..1: its luminance, or its alpha where
    it has one and is otherwise of one colour. `at_least` as for `decode`."""
    decoded = decode(data, field, max_pixels, at_least=at_least)
    gray = np.asarray(Image.fromarray(decoded.rgb).convert("L"), dtype=np.float32) / 255.0
    if decoded.alpha is not None and float(gray.max() - gray.min()) < 1e-6:
        return decoded.alpha.astype(np.float32) / 255.0
    return gray


def _split_alpha(image: Image.Image) -> Decoded:
    alpha: np.ndarray | None = None
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return Decoded(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        arr = arr * (255.0 / (65535.0 if hi > 255 else 255.0))
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    return Decoded(np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)), alpha)


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


def to_uint8(image: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return out


def resize_float(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an H×W float32 plane (a mask) to (height, width), bilinear."""
    h, w = shape
    if plane.shape[:2] == (h, w):
        return plane.astype(np.float32, copy=False)
    resized = Image.fromarray(plane.astype(np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)
