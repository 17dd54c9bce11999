"""What a finished job delivers, on a real in-process server: the content's
alpha kept exactly (PNG, WebP), flattened onto the background for JPEG and
said so; 16-bit PNG from the float pixels, checked with an independent decoder
written here; results larger than the message limit in chunks that
reassemble; and GetServerInfo's new fields."""

from __future__ import annotations

import io
import struct
import zlib

import grpc
import numpy as np
import pytest
from PIL import Image

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.wire.png16 import encode_png16
from tests.support.images import encode, image_array
from tests.support.server import running_server, small_request


def _rgba(width: int, height: int) -> np.ndarray:
    rgb = image_array(width, height, seed=4)
    y, x = np.mgrid[0:height, 0:width]
    alpha = ((x * 7 + y * 13) % 256).astype(np.uint8)  # every value, in a pattern no filter smooths away
    alpha[: height // 4] = 0  # a fully transparent band
    return np.dstack([rgb, alpha])


def _result(frames: list[pb.StylizeResponse]) -> tuple[pb.Result, bytes]:
    chunks = [f.result for f in frames if f.HasField("result")]
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert all(c.chunk_count == len(chunks) for c in chunks)
    data = b"".join(c.image.data for c in chunks)
    assert len(data) == chunks[0].total_bytes
    return chunks[0], data


@pytest.mark.parametrize(("fmt", "pil"), [(pb.OUTPUT_FORMAT_PNG, "PNG"), (pb.OUTPUT_FORMAT_WEBP, "WEBP")])
def test_alpha_is_kept_bit_exact(server, fmt, pil):
    rgba = _rgba(40, 32)
    request = small_request(content=pb.Image(data=encode(rgba, "PNG")), size=40, iterations=2, output_format=fmt)
    result, data = _result(list(server.stub().Stylize(request, timeout=60)))
    assert result.alpha and not result.flattened_on and (result.width, result.height) == (40, 32)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == pil and image.mode == "RGBA"
        out = np.asarray(image)
    assert np.array_equal(out[..., 3], rgba[..., 3])


def test_alpha_follows_a_resized_output(server):
    rgba = _rgba(80, 64)
    request = small_request(content=pb.Image(data=encode(rgba, "PNG")), size=40, iterations=1)
    result, data = _result(list(server.stub().Stylize(request, timeout=60)))
    with Image.open(io.BytesIO(data)) as image:
        out = np.asarray(image)
    assert out.shape == (32, 40, 4) and result.alpha
    expected = np.asarray(Image.fromarray(rgba[..., 3]).resize((40, 32), Image.Resampling.LANCZOS))
    assert np.array_equal(out[..., 3], expected)
    assert (out[:4, :, 3] == 0).all()  # the transparent band stays transparent


@pytest.mark.parametrize(("background", "rgb"), [(None, (255, 255, 255)), ("#102030", (16, 32, 48))])
def test_jpeg_flattens_alpha_onto_the_background_and_says_so(server, background, rgb):
    rgba = _rgba(40, 32)
    rgba[..., 3] = 0  # fully transparent: the output is the background
    fields = {"background": background} if background else {}
    request = small_request(
        content=pb.Image(data=encode(rgba, "PNG")), size=40, iterations=1, output_format=pb.OUTPUT_FORMAT_JPEG, **fields
    )
    result, data = _result(list(server.stub().Stylize(request, timeout=60)))
    assert not result.alpha and result.flattened_on == "#{:02x}{:02x}{:02x}".format(*rgb)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        out = np.asarray(image).astype(int)
    assert np.abs(out - np.asarray(rgb)).max() <= 3  # JPEG's rounding


# ------------------------------------------------------------- 16-bit PNG
def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb_, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb_ and pa <= pc:
        return a
    return b if pb_ <= pc else c


def decode_png16(data: bytes) -> np.ndarray:
    """An independent PNG reader for 16-bit truecolour (with or without alpha):
    chunks and CRCs, IHDR, the zlib stream, all five row filters (PNG spec 9.2)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 16 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    bpp, stride = 2 * channels, 2 * channels * width
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    previous = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(int)
        row = np.zeros(stride, int)
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up = int(previous[i])
            up_left = int(previous[i - bpp]) if i >= bpp else 0
            predictor = {0: 0, 1: left, 2: up, 3: (left + up) // 2, 4: _paeth(left, up, up_left)}[int(kind)]
            row[i] = (line[i] + predictor) % 256
        out[y] = row
        previous = out[y]
    return out.view(">u2").reshape(height, width, channels).astype(np.uint16)


def test_png16_encoder_round_trips_through_an_independent_decoder():
    rng = np.random.default_rng(0)
    for channels in (3, 4):
        image = rng.integers(0, 65536, size=(7, 5, channels), dtype=np.uint16)
        image[0, 0] = 65535
        assert np.array_equal(decode_png16(encode_png16(image)), image)


def test_16_bit_png_output_keeps_the_float_precision(server):
    # Adam's steps of ~10 on the 0..255 scale move pixels off the integers.
    job = {"size": 40, "iterations": 3, "optimizer": pb.OPTIMIZER_ADAM}
    request = small_request(output_bit_depth=16, **job)
    result, data = _result(list(server.stub().Stylize(request, timeout=60)))
    assert result.bit_depth == 16 and result.mime_type == "image/png"
    deep = decode_png16(data)
    assert deep.shape == (result.height, result.width, 3)
    assert len(np.unique(deep % 257)) > 1  # not 8-bit values scaled up: sub-integer steps survive
    with Image.open(io.BytesIO(data)) as image:  # and Pillow reads it as a PNG of that size
        assert image.size == (result.width, result.height)
    eight = list(server.stub().Stylize(small_request(**job), timeout=60))[-1].result
    with Image.open(io.BytesIO(eight.image.data)) as image:
        shallow = np.asarray(image.convert("RGB")).astype(int)
    # The same job (same seed and options) at 8 bits is its 16-bit image rounded.
    assert np.abs(np.rint(deep / 257.0) - shallow).max() <= 1


def test_16_bit_needs_png(server):
    request = small_request(output_bit_depth=16, output_format=pb.OUTPUT_FORMAT_JPEG)
    with pytest.raises(grpc.RpcError) as caught:
        list(server.stub().Stylize(request, timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("output_bit_depth:")


# ----------------------------------------------------------------- chunks
def test_a_result_over_the_message_limit_comes_in_chunks(engine):
    # The floor of --max-message-mb, 64 KiB; the 16-bit PNG is about 100 KiB.
    with running_server(engine=engine, max_message_mb=1 / 16, max_pixels=256 * 256) as srv:
        request = small_request(size=256, iterations=1, output_bit_depth=16)
        frames = list(srv.stub().Stylize(request, timeout=120))
        chunks = [f.result for f in frames if f.HasField("result")]
        assert len(chunks) >= 2
        first, data = _result(frames)
        # Whole frames fit the limit, metadata included (gRPC refuses to send one that does not).
        assert all(f.ByteSize() <= 2**16 for f in frames if f.HasField("result"))
        for chunk in chunks:  # every chunk repeats the metadata
            assert (chunk.width, chunk.height, chunk.iterations, chunk.bit_depth) == (256, 205, 1, 16)
            assert chunk.request_id == first.request_id and chunk.losses.total == first.losses.total
        assert decode_png16(data).shape == (205, 256, 3)


def test_previews_are_bounded_by_the_server(engine):
    with running_server(engine=engine, max_preview_side=24) as srv:
        with pytest.raises(grpc.RpcError) as caught:
            list(srv.stub().Stylize(small_request(preview_max_side=25), timeout=30))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "preview_max_side" in (caught.value.details() or "") and "24" in (caught.value.details() or "")


def test_server_info_fills_every_new_field(engine, tmp_path):
    with running_server(
        engine=engine, max_jobs_per_client=3, result_retention_seconds=60, device_memory_budget=2**30
    ) as srv:
        info = srv.stub().GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        limits = info.limits
        assert limits.max_request_pixels == 80_000_000 and limits.max_job_seconds == 120
        assert (limits.max_jobs_per_client, limits.request_receive_seconds, limits.result_retention_seconds) == (
            3,
            10,
            60,
        )
        assert (info.queue.open_calls, info.queue.max_open_calls) == (0, 64)
        assert (info.budget.device_memory_budget_bytes, info.budget.reserved_bytes, info.budget.tile_size) == (
            2**30,
            0,
            -1,
        )
        assert info.model.precision in ("float32", "bfloat16") and info.defaults.precision == info.model.precision
        assert info.defaults.output_bit_depth == 8 and info.defaults.background == "#ffffff"
