"""Small deterministic test images, encoded or as arrays, made with numpy and
Pillow only (no TensorFlow), plus hostile inputs for validation tests.

    from tests.support.images import png_bytes, jpeg_bytes, image_array
    png_bytes(64, 48)            # 64 wide, 48 high, seeded pattern
    jpeg_bytes(64, 48, seed=2)
    bomb_png(100_000, 100_000)   # a tiny PNG whose header claims 10^10 pixels
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def image_array(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """H×W×3 uint8 RGB: smooth gradients plus a few seeded blocks and noise, so
    that content and style losses are non-trivial at any size."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    freq = rng.uniform(1.0, 4.0, size=3)
    channels = [
        127.5 + 100 * np.sin(freq[c] * 2 * np.pi * (x / max(width, 1) + y / max(height, 1)) + phase[c])
        for c in range(3)
    ]
    img = np.stack(channels, axis=-1)
    for _ in range(3):
        bw, bh = max(1, width // 4), max(1, height // 4)
        x0, y0 = rng.integers(0, max(1, width - bw)), rng.integers(0, max(1, height - bh))
        img[y0 : y0 + bh, x0 : x0 + bw] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str = "PNG", quality: int = 90) -> bytes:
    """Encode an H×W×3 (or H×W×4) uint8 array with Pillow ("PNG", "JPEG", "WEBP", ...)."""
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt.upper() in ("JPEG", "WEBP") else {}
    Image.fromarray(image).save(buf, format=fmt.upper(), **kwargs)
    return buf.getvalue()


def png_bytes(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    return encode(image_array(width, height, seed), "PNG")


def jpeg_bytes(width: int = 64, height: int = 48, seed: int = 0, quality: int = 90) -> bytes:
    return encode(image_array(width, height, seed), "JPEG", quality)


def webp_bytes(width: int = 64, height: int = 48, seed: int = 0, quality: int = 90) -> bytes:
    return encode(image_array(width, height, seed), "WEBP", quality)


def decode(data: bytes) -> tuple[str, np.ndarray]:
    """(Pillow format name, H×W×3 RGB array) of encoded bytes."""
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format or ""
        return fmt, np.asarray(im.convert("RGB"))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG (grayscale, 1 bit) whose header declares width×height
    pixels but which carries only a few bytes of data: decoding it would
    allocate gigabytes, so a server must refuse it from the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    # One compressed scanline of zeros is enough for the header to parse.
    idat = zlib.compress(b"\x00" * (1 + (width + 7) // 8), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def garbage_bytes(n: int = 256, seed: int = 0) -> bytes:
    """Random bytes that are no image format."""
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def truncated_png(width: int = 64, height: int = 48) -> bytes:
    """A PNG cut in half: the header parses, the pixels do not."""
    data = png_bytes(width, height)
    return data[: len(data) // 2]


def big_flat_png(width: int, height: int, seed: int = 0) -> bytes:
    """A real, fully decodable RGB PNG of width×height whose pixels are a few
    flat bands, so it compresses to about 100 KB at 6320×6320: small on the
    wire, ~120 MB decoded. Written row by row, never whole in memory."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(8, 3), dtype=np.uint8)
    compressor = zlib.compressobj(9)
    parts = []
    band = max(1, height // len(colours))
    for y in range(height):
        row = b"\x00" + bytes(colours[min(y // band, len(colours) - 1)]) * width
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
