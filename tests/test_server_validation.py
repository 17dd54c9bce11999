"""Bad input on a real in-process server: every kind gets its status code and
a message naming the field and the limit, and the server keeps serving (the
next good request succeeds)."""

from __future__ import annotations

import math

import grpc
import pytest

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import bomb_png, garbage_bytes, png_bytes, truncated_png
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import running_server, small_request

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _style(data: bytes, weight: float | None = None) -> pb.StyleImage:
    style = pb.StyleImage(image=pb.Image(data=data))
    if weight is not None:
        style.blend_weight = weight
    return style


def _no_content() -> pb.StylizeRequest:
    request = small_request()
    request.ClearField("content")
    return request


# (id, request factory, code, substrings the message must contain: field and limit)
CASES = [
    ("no-content", _no_content, INVALID, ["content", "required"]),
    (
        "garbage-content",
        lambda: small_request(content=pb.Image(data=garbage_bytes())),
        INVALID,
        ["content", "cannot decode"],
    ),
    ("truncated-content", lambda: small_request(content=pb.Image(data=truncated_png())), INVALID, ["content"]),
    ("no-styles", lambda: small_request(styles=[]), INVALID, ["styles", "at least one"]),
    ("empty-style", lambda: small_request(styles=[_style(b"")]), INVALID, ["styles[0].image"]),
    (
        "too-many-styles",
        lambda: small_request(styles=[_style(png_bytes(32, 32, seed=i)) for i in range(4)]),
        INVALID,
        ["styles", "limit of 3"],
    ),
    ("zero-blend-weights", lambda: small_request(styles=[_style(png_bytes(32, 32), 0.0)]), INVALID, ["blend_weight"]),
    # Headers that declare far more pixels than any limit (10^10, 4x10^8), a few bytes of data.
    ("bomb-content", lambda: small_request(content=pb.Image(data=bomb_png())), EXHAUSTED, ["content", "pixels"]),
    (
        "bomb-style",
        lambda: small_request(styles=[_style(bomb_png(20_000, 20_000))]),
        EXHAUSTED,
        ["styles[0].image", "pixels"],
    ),
    # Over the server's --max-input-pixels (262144 in tests), found from the header.
    (
        "input-pixels-content",
        lambda: small_request(content=pb.Image(data=bomb_png(2000, 2000))),
        EXHAUSTED,
        ["content", "2000x2000", "limit of 262144 pixels"],
    ),
    (
        "input-pixels-init-image",
        lambda: small_request(init=pb.INIT_IMAGE, init_image=pb.Image(data=bomb_png(600, 600))),
        EXHAUSTED,
        ["init_image", "limit of 262144 pixels"],
    ),
    ("too-many-pixels", lambda: small_request(size=200), INVALID, ["size", "16384 pixels"]),
    ("size-too-small", lambda: small_request(size=8), INVALID, ["size", "[16, 256]"]),
    ("size-over-max-side", lambda: small_request(size=300), INVALID, ["size", "[16, 256]"]),
    ("zero-iterations", lambda: small_request(iterations=0), INVALID, ["iterations", "[1, 5000]"]),
    ("too-many-iterations", lambda: small_request(iterations=5001), INVALID, ["iterations", "[1, 5000]"]),
    ("negative-weight", lambda: small_request(content_weight=-1.0), INVALID, ["content_weight", "[0,"]),
    ("nan-weight", lambda: small_request(style_weight=math.nan), INVALID, ["style_weight", "finite"]),
    ("inf-tv-weight", lambda: small_request(tv_weight=math.inf), INVALID, ["tv_weight", "finite"]),
    ("learning-rate-zero", lambda: small_request(learning_rate=0.0), INVALID, ["learning_rate"]),
    (
        "unknown-style-layer",
        lambda: small_request(style_layers=[pb.LayerWeight(layer="relu9_9")]),
        INVALID,
        ["style_layers", "relu9_9", "relu1_1..relu5_4"],
    ),
    (
        "unknown-content-layer",
        lambda: small_request(content_layers=[pb.LayerWeight(layer="pool4")]),
        INVALID,
        ["content_layers", "pool4"],
    ),
    (
        "negative-layer-weight",
        lambda: small_request(style_layers=[pb.LayerWeight(layer="relu1_1", weight=-2.0)]),
        INVALID,
        ["style_layers[relu1_1].weight"],
    ),
    ("unknown-optimizer", lambda: small_request(optimizer=7), INVALID, ["optimizer", "OPTIMIZER_ADAM"]),
    ("unknown-pooling", lambda: small_request(pooling=9), INVALID, ["pooling", "POOLING_MAX"]),
    ("unknown-format", lambda: small_request(output_format=5), INVALID, ["output_format", "OUTPUT_FORMAT_WEBP"]),
    ("quality-zero", lambda: small_request(quality=0), INVALID, ["quality", "[1, 100]"]),
    ("style-scale-high", lambda: small_request(style_scale=10.0), INVALID, ["style_scale", "[0.1, 4]"]),
    ("init-image-missing", lambda: small_request(init=pb.INIT_IMAGE), INVALID, ["init_image", "INIT_IMAGE"]),
    (
        "init-image-without-init",
        lambda: small_request(init_image=pb.Image(data=png_bytes(32, 32))),
        INVALID,
        ["init_image", "INIT_IMAGE"],
    ),
    (
        "init-image-garbage",
        lambda: small_request(init=pb.INIT_IMAGE, init_image=pb.Image(data=garbage_bytes())),
        INVALID,
        ["init_image", "cannot decode"],
    ),
    ("progress-interval-zero", lambda: small_request(progress_interval=0), INVALID, ["progress_interval", "[1, 5000]"]),
    ("preview-too-big", lambda: small_request(preview_max_side=1000), INVALID, ["preview_max_side", "[0, 256]"]),
    ("request-id-too-long", lambda: small_request(request_id="x" * 200), INVALID, ["request_id", "128"]),
    ("request-id-control-chars", lambda: small_request(request_id="a\nb"), INVALID, ["request_id"]),
    (
        "multiscale-min-too-small",
        lambda: small_request(multiscale_min_size=8),
        INVALID,
        ["multiscale_min_size", "[32,"],
    ),
]


@pytest.fixture(scope="module")
def validating_server():
    with running_server() as srv:
        yield srv


@pytest.mark.parametrize(("make_request", "code", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_the_server_keeps_serving(validating_server, make_request, code, needles):
    stub = validating_server.stub()
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Stylize(make_request(), timeout=30))
    assert caught.value.code() == code, caught.value.details()
    details = caught.value.details()
    for needle in needles:
        assert needle in details, (needle, details)

    frames = list(stub.Stylize(small_request(iterations=1), timeout=60))
    assert frames[-1].HasField("result")


def test_message_over_the_limit_is_resource_exhausted(engine):
    with running_server(engine=engine, max_message_mb=0.25) as srv:
        stub = srv.stub()
        big = small_request(content=pb.Image(data=garbage_bytes(400_000)))
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Stylize(big, timeout=30))
        assert caught.value.code() == EXHAUSTED
        assert "262144" in caught.value.details()  # gRPC names the limit in bytes
        frames = list(stub.Stylize(small_request(iterations=1), timeout=60))
        assert frames[-1].HasField("result")


def test_invalid_requests_are_counted(engine):
    with running_server(engine=engine) as srv:
        before = value(scrape(srv.metrics_port), "stylize_requests_total", code="INVALID_ARGUMENT")
        with pytest.raises(grpc.RpcError):
            list(srv.stub().Stylize(small_request(iterations=0), timeout=30))
        wait_for_value(srv.metrics_port, "stylize_requests_total", lambda v: v == before + 1, code="INVALID_ARGUMENT")
