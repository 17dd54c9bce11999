"""The malformed requests of the fuzz scenario (fuzz.py), from a fixed corpus
and as hypothesis strategies.

Every request starts as a small valid one and gets one to three mutations:
random bytes or truncated / bit-flipped PNG, JPEG, WebP, GIF, BMP or TIFF as
any of its images, headers declaring huge dimensions, a real decompression
bomb, odd but legal images (16-bit, palette with alpha, CMYK, 1-pixel-thin),
NaN / infinite / negative / huge option values, unknown raw enum numbers,
nonsense layer names, too many or no styles, a bad request id, an empty
message and one over --max-message-mb.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import image_array

from .harness import image_bytes, make_request

FLOAT_FIELDS = ("learning_rate", "content_weight", "style_weight", "tv_weight", "style_scale")
INT_FIELDS = ("size", "iterations", "multiscale_min_size", "progress_interval", "preview_max_side", "quality")
ENUM_FIELDS = {
    "optimizer": pb.Optimizer,
    "pooling": pb.Pooling,
    "init": pb.Init,
    "output_format": pb.OutputFormat,
}
BAD_FLOATS = (math.nan, math.inf, -math.inf, -1.0, -1e-30, 0.0, 1e-45, 1e30, 3.4e38, -3.4e38)
# Out of range, or in range but cheap: a valid mutation must not start a long job.
EDGE_INTS = (-(2**31), -1, 0, 1, 2, 3, 2001, 4097, 65536, 2**31 - 1)
INTS = {
    "size": EDGE_INTS + (15, 16, 17, 31, 32, 33, 64, 127, 128, 129, 255, 256, 257),
    "iterations": EDGE_INTS,
    "multiscale_min_size": EDGE_INTS + (31, 32, 33, 64, 255, 256, 257),
    "progress_interval": EDGE_INTS + (1000,),
    "preview_max_side": EDGE_INTS + (16, 32, 255, 256, 257),
    "quality": EDGE_INTS + (99, 100, 101),
}
IMAGE_SLOTS = ("content", "style", "init_image")
Mutation = Callable[[pb.StylizeRequest], None]


# ------------------------------------------------------------------ images
def _encode(fmt: str, width: int = 40, height: int = 32, **kwargs) -> bytes:
    buf = io.BytesIO()
    arr = image_array(width, height, seed=3)
    im = Image.fromarray(arr)
    if fmt == "CMYK":
        im.convert("CMYK").save(buf, format="JPEG")
    elif fmt == "PNG16":
        Image.fromarray(np.ascontiguousarray(arr[..., 0].astype(np.uint16) * 257)).save(buf, format="PNG")
    elif fmt == "PALETTE_ALPHA":
        p = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        p.info["transparency"] = 0
        p.save(buf, format="PNG", transparency=0)
    elif fmt == "GIF_ANIMATED":
        frames = [im, Image.fromarray(255 - arr)]
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    else:
        im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _real_bomb(side: int = 8000) -> bytes:
    """A real decompression bomb: a complete 1-bit PNG of side x side zeros
    (64 Mpx) that compresses to a few kilobytes."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    idat = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


_VALID: dict[str, bytes] = {}


def valid_encodings() -> dict[str, bytes]:
    if not _VALID:
        for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
            _VALID[fmt] = _encode(fmt)
        for odd in ("CMYK", "PNG16", "PALETTE_ALPHA", "GIF_ANIMATED"):
            _VALID[odd] = _encode(odd)
        _VALID["THIN"] = _encode("PNG", 2000, 1)
        _VALID["ONE_PIXEL"] = _encode("PNG", 1, 1)
    return _VALID


def image_data() -> st.SearchStrategy[bytes]:
    """Bytes for an image field: almost always broken, sometimes odd but legal."""
    valid = valid_encodings()
    names = sorted(valid)
    truncated = st.tuples(st.sampled_from(names), st.floats(0.0, 0.999)).map(
        lambda t: valid[t[0]][: int(len(valid[t[0]]) * t[1])]
    )
    flipped = st.tuples(
        st.sampled_from(names), st.lists(st.tuples(st.floats(0, 0.999), st.integers(1, 255)), min_size=1, max_size=8)
    ).map(lambda t: _flip(valid[t[0]], t[1]))
    huge = (
        st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
        .filter(lambda wh: wh[0] * wh[1] > 1024 * 1024)
        .map(lambda wh: declared_png(*wh))
    )
    return st.one_of(
        st.binary(min_size=0, max_size=512),
        st.sampled_from(
            [
                b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                b"GIF89a",
                b"\x89PNG\r\n\x1a\n",
                b"\xff\xd8\xff",
                b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                b"BM",
                b"II*\x00",
                b"\x00" * 64,
            ]
        ),
        truncated,
        flipped,
        huge,
        st.just("bomb").map(lambda _: _BOMB),
        st.sampled_from(names).map(lambda n: valid[n]),
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (valid CRCs) over a few
    bytes of pixel data: only a header check can refuse it cheaply."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _flip(data: bytes, flips: list[tuple[float, int]]) -> bytes:
    out = bytearray(data)
    for where, mask in flips:
        out[int(where * len(out))] ^= mask
    return bytes(out)


_BOMB = _real_bomb()


# --------------------------------------------------------------- mutations
def _set_image(slot: str, data: bytes) -> Mutation:
    def apply(r: pb.StylizeRequest) -> None:
        if slot == "content":
            r.content.data = data
        elif slot == "style":
            if not r.styles:
                r.styles.add()
            r.styles[0].image.data = data
        else:
            r.init_image.data = data
            r.init = pb.INIT_IMAGE

    return apply


def _setattr(name: str, value: object) -> Mutation:
    return lambda r: setattr(r, name, value)


def _layers(name: str, layers: list[tuple[str, float | None]]) -> Mutation:
    def apply(r: pb.StylizeRequest) -> None:
        field_ = getattr(r, name)
        for layer, weight in layers:
            lw = field_.add(layer=layer)
            if weight is not None:
                lw.weight = weight

    return apply


def _styles(count: int, weight: float | None) -> Mutation:
    def apply(r: pb.StylizeRequest) -> None:
        data = r.styles[0].image.data if r.styles else image_bytes(32, 32)
        del r.styles[:]
        for _ in range(count):
            s = r.styles.add()
            s.image.data = data
            if weight is not None:
                s.blend_weight = weight

    return apply


def _oversize(extra: int) -> Mutation:
    def apply(r: pb.StylizeRequest) -> None:
        r.content.data = b"\x00" * (OVER_LIMIT_BASE + extra)

    return apply


def _empty(r: pb.StylizeRequest) -> None:
    r.Clear()


def _init_image_without_init(r: pb.StylizeRequest) -> None:
    r.init_image.data = image_bytes(40, 32)


def _init_without_image(r: pb.StylizeRequest) -> None:
    r.init = pb.INIT_IMAGE
    r.ClearField("init_image")


# The server's --max-message-mb in bytes; run_fuzz sets it before a run.
OVER_LIMIT_BASE = 1024 * 1024


def mutations() -> st.SearchStrategy[Mutation]:
    layer_names = st.one_of(
        st.sampled_from(["relu4_2", "conv1_1", "relu5_4", "pool1", "relu6_1", "conv0_0", "", "RELU4_2", "relu4_2 "]),
        st.text(max_size=40),
    )
    maybe_float = st.one_of(
        st.none(), st.sampled_from(BAD_FLOATS), st.floats(allow_nan=True, allow_infinity=True, width=32)
    )
    return st.one_of(
        st.builds(_set_image, st.sampled_from(IMAGE_SLOTS), image_data()),
        st.builds(
            _setattr,
            st.sampled_from(FLOAT_FIELDS),
            st.one_of(st.sampled_from(BAD_FLOATS), st.floats(allow_nan=True, allow_infinity=True, width=32)),
        ),
        st.sampled_from(INT_FIELDS).flatmap(
            lambda name: st.builds(
                _setattr, st.just(name), st.one_of(st.sampled_from(INTS[name]), st.integers(-(2**31), 2**31 - 1))
            )
        ),
        st.builds(_setattr, st.just("seed"), st.sampled_from([0, 1, 2**32, 2**63, 2**64 - 1])),
        st.builds(
            _setattr,
            st.sampled_from(sorted(ENUM_FIELDS)),
            st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([-1, 3, 4, 5, 99, 2**31 - 1])),
        ),
        st.builds(
            _layers,
            st.sampled_from(["content_layers", "style_layers"]),
            st.lists(st.tuples(layer_names, maybe_float), min_size=1, max_size=20),
        ),
        st.builds(_styles, st.sampled_from([0, 4, 5, 50]), maybe_float),
        st.builds(_styles, st.just(2), st.sampled_from([0.0, -1.0, math.nan, math.inf])),
        st.builds(
            _setattr, st.just("request_id"), st.one_of(st.text(min_size=129, max_size=300), st.text(max_size=40))
        ),
        st.just(_empty),
        st.just(_init_image_without_init),
        st.just(_init_without_image),
        st.builds(_setattr, st.sampled_from(["preserve_colors", "multiscale"]), st.booleans()),
        st.builds(_oversize, st.sampled_from([1, 100, 65536])),
    )


def base_request() -> pb.StylizeRequest:
    return make_request(size=32, iterations=2, request_id="fuzz")


# ------------------------------------------------------------------ corpus
def corpus() -> list[tuple[str, Mutation]]:
    """Named cases every run sends before hypothesis starts."""
    valid = valid_encodings()
    cases: list[tuple[str, Mutation]] = [
        ("empty message", _empty),
        ("content 100000x100000 declared in the PNG header", _set_image("content", declared_png(100_000, 100_000))),
        ("style 100000x100000 declared in the PNG header", _set_image("style", declared_png(100_000, 100_000))),
        ("init image 100000x100000 declared", _set_image("init_image", declared_png(100_000, 100_000))),
        ("content: real decompression bomb (8000x8000 PNG, few KB)", _set_image("content", _BOMB)),
        ("content: random bytes", _set_image("content", bytes(range(256)) * 4)),
        ("content: empty bytes", _set_image("content", b"")),
        ("message over --max-message-mb by 1 byte of content", _oversize(1)),
        ("init IMAGE without an init image", _init_without_image),
        ("init image without init IMAGE", _init_image_without_init),
        ("no styles", _styles(0, None)),
        ("too many styles", _styles(50, None)),
        ("style blend weights all zero", _styles(2, 0.0)),
        ("request id of 129 characters", _setattr("request_id", "x" * 129)),
        ("request id with a newline", _setattr("request_id", "a\nb")),
        ("seed 2**64-1", _setattr("seed", 2**64 - 1)),
    ]
    for fmt in ("PNG", "JPEG", "WEBP"):
        cases.append((f"content: truncated {fmt}", _set_image("content", valid[fmt][: len(valid[fmt]) // 2])))
        cases.append((f"style: truncated {fmt}", _set_image("style", valid[fmt][: len(valid[fmt]) // 3])))
    for name in FLOAT_FIELDS:
        for v in (math.nan, math.inf, -math.inf, -1.0, 3.4e38):
            cases.append((f"{name} = {v}", _setattr(name, v)))
    for name in INT_FIELDS:
        for v in (-1, 0, 2**31 - 1):
            cases.append((f"{name} = {v}", _setattr(name, v)))
    for name in ENUM_FIELDS:
        for v in (-1, 99, 2**31 - 1):
            cases.append((f"{name} = {v} (unknown enum number)", _setattr(name, v)))
    cases.append(("unknown layer name", _layers("style_layers", [("relu9_9", 1.0)])))
    cases.append(("negative layer weight", _layers("content_layers", [("relu4_2", -1.0)])))
    cases.append(("NaN layer weight", _layers("content_layers", [("relu4_2", math.nan)])))
    return cases
