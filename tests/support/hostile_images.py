"""Hostile and odd images for the header parser and decode-memory tests and
their reliability scenarios (issue 17, items 2 and 4).

    text_bomb_png(64, 48)         # 63 zTXt chunks before IDAT, each inflating to 1 MiB
    mode_image("P+tRNS", 4000, 4000)   # a Pillow image of a mode, cheap to compress
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from .images import encode, image_array

# Every mode Pillow opens from the accepted formats, as (name, format to save it in).
MODES = (
    ("1", "PNG"),
    ("L", "PNG"),
    ("P", "PNG"),
    ("P+tRNS", "PNG"),
    ("LA", "PNG"),
    ("RGB", "PNG"),
    ("RGBA", "PNG"),
    ("CMYK", "TIFF"),
    ("I;16", "PNG"),
    ("I", "TIFF"),
    ("F", "TIFF"),
    ("YCbCr", "JPEG"),
)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def with_chunks_before_idat(png: bytes, chunks: list[bytes]) -> bytes:
    """`png` with `chunks` (whole chunks) inserted right after IHDR."""
    return png[:33] + b"".join(chunks) + png[33:]


def text_bomb_png(width: int = 64, height: int = 48, chunks: int = 63, inflated: int = 1 << 20) -> bytes:
    """A valid PNG whose `chunks` zTXt chunks before IDAT each inflate to
    `inflated` bytes (about 1 KB each on the wire): Pillow's open inflates
    them all (up to its 64 MiB default), a header read must not."""
    payload = b"Comment\x00\x00" + zlib.compress(b"\x00" * inflated, 9)
    return with_chunks_before_idat(encode(image_array(width, height), "PNG"), [png_chunk(b"zTXt", payload)] * chunks)


def mode_image(mode: str, width: int, height: int, seed: int = 0) -> tuple[Image.Image, dict[str, object]]:
    """A width×height image in `mode` (plus "P+tRNS": a palette with a
    transparent entry) of a few flat bands, so that it compresses to tens of
    kilobytes even at 40 MP, and the save() arguments it needs."""
    y = np.arange(height, dtype=np.int64)[:, None] * 8 // max(1, height)
    x = np.arange(width, dtype=np.int64)[None, :] * 8 // max(1, width)
    bands = ((x + y + seed) % 8).astype(np.int64)
    kwargs: dict[str, object] = {}
    if mode == "I;16":
        return Image.fromarray((bands * 8000).astype(np.uint16)), kwargs
    if mode == "I":
        return Image.fromarray((bands * 9000).astype(np.int32)), kwargs
    if mode == "F":
        return Image.fromarray((bands * 30.5).astype(np.float32)), kwargs
    grey = Image.fromarray((bands * 32).astype(np.uint8))
    if mode == "L":
        return grey, kwargs
    if mode == "1":
        return grey.point(lambda v: 255 if v >= 128 else 0).convert("1"), kwargs
    if mode in ("P", "P+tRNS"):
        palette = Image.merge("RGB", (grey, grey.point(lambda v: 255 - v), grey)).quantize(8)
        if mode == "P+tRNS":
            kwargs["transparency"] = 0
        return palette, kwargs
    if mode == "LA":
        return Image.merge("LA", (grey, grey.point(lambda v: 255 - v))), kwargs
    rgb = Image.merge("RGB", (grey, grey.point(lambda v: 255 - v), grey.point(lambda v: (v * 3) % 256)))
    if mode == "RGBA":
        return Image.merge("RGBA", (*rgb.split(), grey)), kwargs
    if mode == "CMYK":
        return rgb.convert("CMYK"), kwargs
    return rgb, kwargs  # RGB, and YCbCr: a JPEG of it decodes from YCbCr


def mode_bytes(mode: str, fmt: str, width: int, height: int, seed: int = 0) -> bytes:
    image, kwargs = mode_image(mode, width, height, seed)
    buf = io.BytesIO()
    if fmt == "TIFF":
        kwargs = {**kwargs, "compression": "tiff_deflate"}
    elif fmt == "PNG":
        kwargs = {**kwargs, "compress_level": 1}
    image.save(buf, format=fmt, **kwargs)  # type: ignore[arg-type]
    return buf.getvalue()
