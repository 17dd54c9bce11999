"""Images in and out: decode (with limits checked from the header before any
pixel is decoded), resize, encode. Arrays are H×W×3 uint8 RGB unless a name
says float. Colour transforms live in `color`.

Admission reads headers with `probe` (headers.py: straight from the bytes,
nothing inflated). `decode` runs on the decode executor and holds the
documented per-decode bound, DECODE_BYTES_PER_PIXEL times the image's pixels
(160 MB at the default 40 MP): Pillow's buffer of the stored pixels (at most 4
bytes each) plus tiles of TILE x TILE pixels. Every mode is box-reduced tile
by tile towards the size the job uses before it is widened to 8-bit RGB(A),
so no full-size copy in a wider mode (float, RGBA from a palette, 32-bit
from 16-bit) ever exists.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin

from stylize_server.job import headers
from stylize_server.job.errors import DecodeFailed, InvalidArgument, TooLarge
from stylize_server.job.headers import ACCEPTED, TRANSPOSING, Header

__all__ = ["ACCEPTED", "ALLOWED_FORMATS", "Decoded", "Header", "decode", "decode_mask", "probe"]

# Pillow's own bomb guard raises above 2x this; our explicit check from the
# header comes first and names the field, this is the second line of defence.
Image.MAX_IMAGE_PIXELS = 64_000_000
# A truncated image is refused, never half decoded.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Decoding never needs PNG text (nor more than a small ICC profile, which
# Pillow inflates under the same limit): inflate at most this much of it.
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "MPO"})
# Pillow opens MPO through its JPEG plugin; no other plugin ever sees the bytes.
_PIL_FORMATS = ("BMP", "GIF", "JPEG", "PNG", "TIFF", "WEBP")
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
# Peak memory of one decode, per pixel of the image: Pillow's buffer (at most
# 4 bytes a pixel in every mode it opens here) and nothing else at full size.
DECODE_BYTES_PER_PIXEL = 4
TILE = 512  # side of the tiles cropped and converted at once (1 MB in 4-byte pixels)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Modes Image.reduce averages correctly (P and PA would average palette indices).
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr", "RGBa", "La"})


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # H×W×3 uint8
    alpha: np.ndarray | None  # H×W uint8, where the image has an alpha channel


def _bad_bytes(field: str) -> InvalidArgument:
    return DecodeFailed(field, f"cannot decode the image: the bytes are not a complete {ACCEPTED} file")


def probe(data: bytes, field: str, max_pixels: int) -> Header:
    """The image's size (after EXIF orientation), format and whether it has
    alpha, from the bytes of its header alone: microseconds, nothing
    inflated or decoded, so this is what the event loop may afford."""
    if not data:
        raise InvalidArgument(field, f"is empty; expected {ACCEPTED} bytes")
    header = headers.read(data, field)
    w, h = header.width, header.height
    if w < 1 or h < 1:
        raise InvalidArgument(field, f"the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise TooLarge(field, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} pixels")
    return header


def _open(data: bytes, field: str, max_pixels: int) -> tuple[Image.Image, Header]:
    """Open with Pillow (its header only), checked against our own header
    read: what admission priced is what gets decoded."""
    header = probe(data, field, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(field, f"the image declares more than {max_pixels} pixels (refused from its header)") from None
    except ValueError as exc:
        raise _text_error(field, exc) from None
    except Exception:
        raise _bad_bytes(field) from None
    # Pillow's TIFF plugin reports the oriented size and transposes at load.
    expected = (header.width, header.height) if image.format == "TIFF" else header.stored_size
    if image.size != expected:
        w, h = expected
        raise DecodeFailed(
            field,
            f"its header reads {w}x{h} but the image opens as {image.size[0]}x{image.size[1]}; "
            f"the bytes are not a valid {ACCEPTED} file",
        )
    return image, header


def _text_error(field: str, exc: ValueError) -> InvalidArgument:
    if "MAX_TEXT" in str(exc):
        return DecodeFailed(
            field,
            f"the PNG's text or ICC chunks inflate to more than {PngImagePlugin.MAX_TEXT_CHUNK} bytes a chunk or "
            f"{PngImagePlugin.MAX_TEXT_MEMORY} in all (the limit); remove its metadata",
        )
    return _bad_bytes(field)


def _wide_mode(image: Image.Image) -> str:
    """The mode a tile is converted to before it is reduced."""
    mode = image.mode
    if mode in _REDUCIBLE:
        return mode
    if mode == "1":
        return "L"
    if mode.startswith("I;16"):
        return "I"
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return "RGBA"
    return "RGB"


def _tile_to_8bit(band: Image.Image, mode: str, high: float) -> Image.Image:
    """A reduced tile in `mode` (L, LA, RGB or RGBA). Integer images scale by
    255/65535 when they hold values above 255 (`high`, the whole image's
    maximum), else are taken as 8-bit."""
    if band.mode == "I":
        arr = np.asarray(band, dtype=np.int64)
        if high > 255:
            arr = np.clip(arr, 0, 65535) * 255 // 65535
        band = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif band.mode == "F":
        band = band.convert("L")
    return band if band.mode == mode else band.convert(mode)


def _to_array(image: Image.Image, factors: tuple[int, int], grey: bool) -> np.ndarray:
    """H×W×C uint8 (RGB or RGBA; with `grey`, L or LA), box-reduced by the
    (x, y) factors, one tile at a time: each tile is widened (a palette to
    RGB(A), 16-bit to 32-bit) only once cropped, so peak memory is Pillow's
    buffer, the result and one tile."""
    wide = _wide_mode(image)
    alpha = wide in ("LA", "RGBA", "La", "RGBa")
    mode = ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")
    high = 0.0
    if wide == "I":
        extrema = image.getextrema()  # in C, no copy
        high = float(extrema[1]) if isinstance(extrema[1], (int, float)) else 0.0
    fx, fy = factors
    w, h = image.size
    out = np.empty((-(-h // fy), -(-w // fx), len(mode)), dtype=np.uint8)
    # Tiles of about TILE x TILE pixels, whole reduction blocks each: a very
    # wide or very tall image never makes one large crop.
    rows, cols = fy * max(1, TILE // fy), fx * max(1, TILE // fx)
    for top in range(0, h, rows):
        for left in range(0, w, cols):
            tile = image.crop((left, top, min(w, left + cols), min(h, top + rows)))
            if tile.mode != wide:
                tile = tile.convert(wide)
            if factors != (1, 1):
                tile = tile.reduce(factors)
            tile = _tile_to_8bit(tile, mode, high)
            y, x = top // fy, left // fx
            out[y : y + tile.height, x : x + tile.width] = np.asarray(tile).reshape(tile.height, tile.width, len(mode))
    return out


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an H×W×C array (as Pillow's exif_transpose)."""
    flips = {
        2: arr[:, ::-1],
        3: arr[::-1, ::-1],
        4: arr[::-1],
        5: arr.transpose(1, 0, 2),
        6: arr.transpose(1, 0, 2)[:, ::-1],
        7: arr[::-1, ::-1].transpose(1, 0, 2),
        8: arr.transpose(1, 0, 2)[::-1],
    }
    return np.ascontiguousarray(flips[orientation]) if orientation in flips else arr


def _decode_array(data: bytes, field: str, max_pixels: int, at_least: tuple[int, int] | None, grey: bool) -> np.ndarray:
    """The image as H×W×C uint8 (see `_to_array`), oriented, and with
    `at_least` (height, width) box-reduced to no less than twice that on each
    axis: a JPEG at the smallest DCT scale that covers it, then any mode."""
    image, header = _open(data, field, max_pixels)
    try:
        orientation = 1 if image.format == "TIFF" else header.orientation  # Pillow's TIFF load orients
        target = None
        if at_least is not None:  # (width, height) as stored
            target = at_least if orientation in TRANSPOSING else (at_least[1], at_least[0])
        if target is not None and image.format in ("JPEG", "MPO"):
            image.draft(image.mode, (max(1, target[0]), max(1, target[1])))
        image.load()
        factors = (1, 1)
        if target is not None:
            w, h = image.size
            factors = (max(1, w // max(1, 2 * target[0])), max(1, h // max(1, 2 * target[1])))
        arr = _to_array(image, factors, grey)
        del image
        return _orient(arr, orientation)
    except (InvalidArgument, TooLarge):
        raise
    except ValueError as exc:
        raise _text_error(field, exc) from None
    except Exception:
        raise _bad_bytes(field) from None


def decode(data: bytes, field: str, max_pixels: int, at_least: tuple[int, int] | None = None) -> Decoded:
    """Decode into RGB (and the alpha channel, if any). With `at_least`
    (height, width), the image is reduced by integer factors to no less than
    twice that on each axis before it becomes an array (the caller's Lanczos
    does the rest), so a huge upload for a small output never exists in
    memory more than once, in Pillow's own buffer of its stored pixels."""
    arr = _decode_array(data, field, max_pixels, at_least, grey=False)
    if arr.shape[2] == 4:
        return Decoded(np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3]))
    return Decoded(arr, None)


def decode_mask(data: bytes, field: str, max_pixels: int, at_least: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as H×W float32 in 0..1: its luminance, or its alpha where
    it has one and is otherwise of one colour. `at_least` as for `decode`;
    the float plane exists only at the reduced size."""
    arr = _decode_array(data, field, max_pixels, at_least, grey=True)
    plane = arr[..., 0]
    if arr.shape[2] == 2 and int(plane.min()) == int(plane.max()):
        plane = arr[..., 1]
    out: np.ndarray = plane.astype(np.float32)
    out /= np.float32(255.0)
    return out


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
