"""Malformed requests, from a fixed corpus and from hypothesis.

Every request starts as a small valid one and gets one to three mutations:
random bytes or truncated / bit-flipped PNG, JPEG, WebP, GIF, BMP or TIFF as
any of its images, headers declaring huge dimensions, a real decompression
bomb, odd but legal images (16-bit, palette with alpha, CMYK, 1-pixel-thin),
NaN / infinite / negative / huge option values, unknown raw enum numbers,
nonsense layer names, too many or no styles, a bad request id, an empty
message and one over --max-message-mb.

Each must end with a clean status: OK (a whole result, when the mutations
happened to be valid), INVALID_ARGUMENT with a message, RESOURCE_EXHAUSTED
(too large) or ALREADY_EXISTS (two requests drew one request_id). Never
INTERNAL, UNKNOWN or a dropped connection; afterwards the
process is alive, logged no error, and a good request succeeds.

Hypothesis runs derandomized (the same requests every run), without a
deadline, database or shrinking: a failure is recorded with the request that
caused it, not minimized against a live server.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylize.v1 import stylize_pb2 as pb
from tests.support.images import image_array

from .harness import Profile, ScenarioResult, ServerProc, image_bytes, make_request, result_problems, scenario, stylize

# ALREADY_EXISTS: two fuzzed requests that drew the same request_id are
# different requests under one id (REQUEST_ID_IN_USE), a documented refusal.
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}
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


OVER_LIMIT_BASE = 1024 * 1024  # set from the server's limit before a run


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


# ------------------------------------------------------------------- run
@dataclass
class _Record:
    sent: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    invalid_without_message: int = 0


def _send(server: ServerProc, stub, request: pb.StylizeRequest, label: str, rec: _Record) -> None:
    outcome = stylize(stub, request, timeout=60)
    rec.sent += 1
    rec.codes[outcome.code.name] = rec.codes.get(outcome.code.name, 0) + 1
    if outcome.code not in CLEAN:
        rec.failures.append(f"{label}: {outcome.code.name}: {outcome.details}")
    elif outcome.code is grpc.StatusCode.INVALID_ARGUMENT and not outcome.details.strip():
        rec.failures.append(f"{label}: INVALID_ARGUMENT without a message")
    elif outcome.code is grpc.StatusCode.OK:
        problems = result_problems(outcome, request)
        if problems:
            rec.failures.append(f"{label}: OK but {'; '.join(problems)}")


def run_fuzz(server: ServerProc, profile: Profile) -> ScenarioResult:
    global OVER_LIMIT_BASE
    with scenario("fuzzed input") as res:
        OVER_LIMIT_BASE = int(server.info().limits.max_message_bytes)
        stub = server.stub()
        rec = _Record()
        for label, mutate in corpus():
            request = base_request()
            mutate(request)
            _send(server, stub, request, f"corpus[{label}]", rec)
        corpus_count = rec.sent

        @settings(
            max_examples=profile.fuzz_examples,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(st.lists(mutations(), min_size=1, max_size=3))
        def fuzz_one(muts: list[Mutation]) -> None:
            request = base_request()
            for m in muts:
                m(request)
            _send(server, stub, request, f"example {rec.sent - corpus_count}", rec)

        fuzz_one()
        alive = server.popen.poll() is None
        good = base_request()
        after = stylize(stub, good, timeout=60) if alive else None
        records = server.records()
        serving = next((i for i, r in enumerate(records) if r.get("event") == "serving"), 0)
        # TensorFlow's native start-up lines (logger "stderr") before "serving"
        # are its own noise, e.g. "failed call to cuInit" on a machine without a GPU.
        errors = [
            r
            for i, r in enumerate(records)
            if r.get("level") in ("ERROR", "CRITICAL") and (i > serving or r.get("logger") != "stderr")
        ]
        tracebacks = server.output.count(b"Traceback")
        internal = server.metric("stylize_requests_total", code="INTERNAL") if alive else None
        unknown = server.metric("stylize_requests_total", code="UNKNOWN") if alive else None
        res.figures.update(
            requests=rec.sent,
            corpus_cases=corpus_count,
            generated=rec.sent - corpus_count,
            codes=dict(sorted(rec.codes.items())),
            failures=len(rec.failures),
        )
        res.check(
            f"sent at least {profile.fuzz_examples} malformed requests",
            rec.sent >= profile.fuzz_examples,
            f"{rec.sent} sent ({corpus_count} from the corpus)",
        )
        res.check(
            "every one got a clean status (OK / INVALID_ARGUMENT with a message / RESOURCE_EXHAUSTED / ALREADY_EXISTS)",
            not rec.failures,
            "; ".join(rec.failures[:8]),
        )
        res.check("the server process is alive", alive, f"exit code {server.popen.poll()}")
        res.check(
            "a good request afterwards succeeds",
            after is not None and not result_problems(after, good),
            "; ".join(result_problems(after, good)) if after else "server gone",
        )
        res.check(
            "no INTERNAL/UNKNOWN counted, no ERROR logged, no traceback",
            not internal and not unknown and not errors and not tracebacks,
            f"INTERNAL {internal}, UNKNOWN {unknown}, errors {[e.get('event') for e in errors[:3]]}, "
            f"tracebacks {tracebacks}",
        )
    return res
