"""The Python client (sync and asyncio) against a real in-process server on
127.0.0.1 with random weights, at 32-48 px: events, image inputs, errors,
deadlines, cancellation, dns:/// targets, a token. Retries and a busy server
are in test_client_api_retry.py.
"""

from __future__ import annotations

import asyncio
import io
import threading

import grpc
import numpy as np
import pytest
from PIL import Image

from stylize import (
    AsyncStyleTransferClient,
    Cancelled,
    DeadlineExceeded,
    ErrorReason,
    InvalidArgument,
    NotFound,
    Progress,
    Result,
    Started,
    StopReason,
    Style,
    StyleTransferClient,
    TooLarge,
    Unauthenticated,
)
from tests.support.client import CONTENT, FAST, STYLE, kinds
from tests.support.images import bomb_png, encode, garbage_bytes, image_array
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import running_server

_LEFT = np.zeros((32, 40), np.uint8)
_LEFT[:, :20] = 255
MASK_LEFT, MASK_RIGHT = encode(_LEFT), encode(255 - _LEFT)


@pytest.fixture(scope="module")
def server():
    with running_server(max_concurrent_jobs=2, queue_size=4) as srv:
        yield srv


@pytest.fixture()
def client(server):
    with StyleTransferClient(server.address, timeout=120) as c:
        yield c


def test_sync_stream_yields_typed_events_in_order(client):
    events = list(client.stylize(CONTENT, [STYLE], **FAST))
    names = kinds(events)
    assert names[0] == "Started"
    assert names[-1] == "Result"
    assert set(names[1:-1]) == {"Progress"}
    started, result = events[0], events[-1]
    assert isinstance(started, Started) and isinstance(result, Result)
    assert (started.width, started.height) == (32, 26)
    assert started.total_iterations == 4 and started.scale_sizes == (32,)
    progress = [e for e in events if isinstance(e, Progress)]
    # The server may coalesce progress frames a slow reader has not taken yet,
    # but they stay in order and the last iteration is always reported.
    iterations = [p.iteration for p in progress]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 4
    assert all(p.total_iterations == 4 and p.preview is None for p in progress)
    assert result.iterations == 4 and result.mime_type == "image/png"
    img = result.to_pil()
    assert img.format == "PNG" and img.size == (32, 26)


def test_images_as_path_pil_and_array_with_previews(client, tmp_path):
    content_path = tmp_path / "content.png"
    content_path.write_bytes(CONTENT)
    style_pil = Image.fromarray(image_array(32, 32, seed=3))
    style_array = image_array(24, 32, seed=4)
    events = list(
        client.stylize(content_path, [style_pil, style_array], style_weights=[0.7, 0.3], preview_max_side=16, **FAST)
    )
    started = events[0]
    assert isinstance(started, Started)
    assert started.options["style_blend_weights"] == pytest.approx([0.7, 0.3], abs=1e-6)
    previews = [e for e in events if isinstance(e, Progress) and e.preview is not None]
    assert previews, "previews were asked for"
    assert max(previews[0].preview_image().size) <= 16


def test_stylize_to_file_takes_the_format_from_the_extension(client, tmp_path):
    seen: list[object] = []
    out = tmp_path / "out.jpg"
    result = client.stylize_to_file(CONTENT, STYLE, out, on_event=seen.append, **FAST)
    assert result.mime_type == "image/jpeg"
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (32, 26)
    assert isinstance(seen[-1], Result) and kinds(seen).count("Progress") >= 1


def test_asyncio_client_streams_the_same_events_as_the_sync_one(server, client):
    opts = dict(FAST, init="noise", seed=7)
    sync_events = list(client.stylize(CONTENT, [STYLE], **opts))

    async def collect():
        async with AsyncStyleTransferClient(server.address, timeout=120) as aclient:
            assert await aclient.health() == "SERVING"
            return [e async for e in aclient.stylize(CONTENT, [STYLE], **opts)]

    async_events = asyncio.run(collect())

    def squeeze(names):  # one entry per run of equal kinds
        return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]

    assert squeeze(kinds(async_events)) == squeeze(kinds(sync_events)) == ["Started", "Progress", "Result"]

    def shape(e):  # what must agree between two runs of one job (not timings, ids)
        if isinstance(e, Started):
            return (e.width, e.height, e.total_iterations, e.scale_sizes, e.scale_iterations)
        if isinstance(e, Progress):
            return ("progress",)  # which iterations arrive depends on coalescing
        if isinstance(e, Result):
            return (e.width, e.height, e.iterations, e.mime_type)
        return ()

    assert squeeze([shape(e) for e in async_events]) == squeeze([shape(e) for e in sync_events])
    assert async_events[-2].iteration == sync_events[-2].iteration == 4
    assert async_events[-1].losses.total == pytest.approx(sync_events[-1].losses.total, rel=0.05)


def test_server_info_and_health(client):
    info = client.server_info()
    assert info.model.name == "vgg19"
    assert info.model.random_weights is True
    assert 16 <= info.limits.max_side < 4096 and info.limits.max_styles >= 1
    assert client.health() == "SERVING"
    assert client.health("stylize.v1.StyleTransfer") == "SERVING"


def test_invalid_argument_names_the_field_and_is_not_retried(client):
    max_side = client.server_info().limits.max_side
    stream = client.stylize(CONTENT, STYLE, **dict(FAST, size=4096))
    with pytest.raises(InvalidArgument) as info:
        list(stream)
    assert info.value.details.startswith("size") and str(max_side) in info.value.details
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.reason, info.value.field) == (ErrorReason.INVALID_OPTION, "size")
    assert stream.attempts == 1


def test_every_error_the_server_raises_carries_its_reason_and_field(client):
    cases = [
        ({"content": garbage_bytes(200)}, InvalidArgument, ErrorReason.DECODE_FAILED, "content"),
        (
            {"styles": [Style(STYLE, mask=garbage_bytes(200))]},
            InvalidArgument,
            ErrorReason.DECODE_FAILED,
            "styles[0].mask",
        ),
        ({"content": bomb_png(100_000, 100_000)}, TooLarge, ErrorReason.TOO_LARGE, "content"),
        ({"background": "plaid"}, InvalidArgument, ErrorReason.INVALID_OPTION, "background"),
        ({"output_bit_depth": 12}, InvalidArgument, ErrorReason.INVALID_OPTION, "output_bit_depth"),
    ]
    for change, cls, reason, field in cases:
        args = {"content": CONTENT, "styles": STYLE, **FAST, **change}
        stream = client.stylize(args.pop("content"), args.pop("styles"), **args)
        with pytest.raises(cls) as info:
            list(stream)
        assert (info.value.reason, info.value.field, stream.attempts) == (reason, field, 1), change
    with pytest.raises(NotFound) as info:
        client.cancel("no-such-job")
    assert info.value.reason is ErrorReason.NOT_FOUND


def test_results_say_how_the_job_went_and_carry_the_request_id(client):
    events = list(client.stylize(CONTENT, [(STYLE, MASK_LEFT), Style(STYLE, weight=2.0, mask=MASK_RIGHT)], **FAST))
    started, result = events[0], events[-1]
    assert isinstance(started, Started) and isinstance(result, Result)
    assert len(started.request_id) == 32 and result.request_id == started.request_id  # named by the client
    assert started.random_weights is True and started.reattached is False
    assert started.estimate.device_memory_bytes > 0 and started.estimate.scales[0].iterations == 4
    assert (result.complete, result.stop_reason, result.iterations_requested) == (True, StopReason.NONE, 4)
    assert (result.chunks, result.bit_depth, result.alpha, result.flattened_on) == (1, 8, False, "")


def test_unknown_option_and_mismatched_style_weights_fail_locally(client):
    with pytest.raises(TypeError, match="colour"):
        client.stylize(CONTENT, STYLE, colour=True)
    with pytest.raises(ValueError, match="style_weights"):
        client.stylize(CONTENT, [STYLE, STYLE], style_weights=[1.0])
    with pytest.raises(FileNotFoundError, match="content"):
        client.stylize("/nonexistent/content.png", STYLE)


def test_deadline_exceeded_stops_a_long_job(client):
    stream = client.stylize(CONTENT, STYLE, timeout=1.0, **dict(FAST, iterations=4000))
    with pytest.raises(DeadlineExceeded):
        list(stream)


def test_cancel_from_another_thread_stops_the_job_on_the_server(server, client):
    before = value(scrape(server.metrics_port), "stylize_jobs_stopped_total", reason="client")
    stream = client.stylize(CONTENT, STYLE, **dict(FAST, iterations=4000))
    with pytest.raises(Cancelled):
        for event in stream:
            if isinstance(event, Progress):
                threading.Thread(target=stream.cancel).start()
    wait_for_value(server.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 1, reason="client")


def test_dns_target_with_round_robin(server):
    with StyleTransferClient(f"dns:///localhost:{server.port}", timeout=120) as client:
        assert client.health() == "SERVING"
        events = list(client.stylize(CONTENT, STYLE, **FAST))
    assert isinstance(events[-1], Result)


def test_token_is_sent_and_a_wrong_one_is_refused(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with running_server(auth_token_file=str(token_file)) as srv:
        with StyleTransferClient(srv.address, token="s3cret-token", timeout=60) as good:
            assert good.server_info().model.name == "vgg19"
            assert isinstance(list(good.stylize(CONTENT, STYLE, **FAST))[-1], Result)
        with StyleTransferClient(srv.address, token="wrong", timeout=60) as bad, pytest.raises(Unauthenticated):
            list(bad.stylize(CONTENT, STYLE, **FAST))
        with StyleTransferClient(srv.address, timeout=60) as anonymous, pytest.raises(Unauthenticated):
            anonymous.server_info()


def test_asyncio_cancellation_and_errors(server):
    async def main():
        async with AsyncStyleTransferClient(server.address, timeout=120) as aclient:
            with pytest.raises(InvalidArgument):
                async for _ in aclient.stylize(CONTENT, STYLE, **dict(FAST, iterations=0)):
                    pass
            before = value(scrape(server.metrics_port), "stylize_jobs_stopped_total", reason="client")
            seen = asyncio.Event()

            async def consume():
                async for event in aclient.stylize(CONTENT, STYLE, **dict(FAST, iterations=4000)):
                    if isinstance(event, Progress):
                        seen.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(seen.wait(), 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return before

    before = asyncio.run(main())
    wait_for_value(server.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 1, reason="client")


def test_in_memory_images_are_sent_as_lossless_png():
    from stylize import build_request

    array = image_array(20, 10, seed=5)
    request = build_request(array, [Image.fromarray(array).convert("RGBA")], init=Image.fromarray(array))
    for data in (request.content.data, request.styles[0].image.data, request.init_image.data):
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "PNG"
            assert np.array_equal(np.asarray(img.convert("RGB")), array)
    assert request.init == 4  # INIT_IMAGE
    assert not request.HasField("size")  # unset options stay unset: the server's defaults apply
