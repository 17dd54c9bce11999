"""The Stylize stream end to end on a real in-process server: frame order,
resolved options, result format and size, previews, GetServerInfo, and the
frame queue that keeps a slow client from stalling the optimization."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2

from stylize_api.losses import Losses
from stylize_api.schema import ErrorReason, StopReason
from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import errors
from stylize_server.job.errors import StylizeError
from stylize_server.job.types import Progress
from stylize_server.serving.jobs import Event, Finished, InQueue, OnDevice, Subscriber
from stylize_server.wire.status import status_for
from tests.support.images import decode
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import collapse, frame_kinds, running_server, small_request


def test_full_stream_order_and_result(server):
    frames = list(server.stub().Stylize(small_request(request_id="req-full", iterations=5), timeout=60))
    assert collapse(frame_kinds(frames)) == ["started", "progress", "result"]

    started = frames[0].started
    assert started.request_id == "req-full"
    assert (started.width, started.height) == (32, 26)  # 40x32 content at size 32
    assert started.options.iterations == 5
    assert list(started.options.scale_sizes) == [32] and list(started.options.scale_iterations) == [5]
    assert started.options.optimizer == pb.OPTIMIZER_LBFGS
    assert started.options.pooling == pb.POOLING_AVG
    assert [lw.layer for lw in started.options.style_layers] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]

    progress = [f.progress for f in frames if f.HasField("progress")]
    iterations = [p.iteration for p in progress]
    # Every iteration reports (progress_interval 1); a frame may be coalesced
    # into the next when this client reads slower than the job runs.
    assert iterations == sorted(set(iterations)) and set(iterations) <= {1, 2, 3, 4, 5} and iterations[-1] == 5
    assert all(p.total_iterations == 5 for p in progress)
    assert all(p.losses.total > 0 for p in progress)
    assert all(not p.HasField("preview") for p in progress)  # previews are off by default
    for p in progress:
        # The terms by name (a map: no order), and the deprecated fields still filled from them.
        assert sorted(p.losses.terms) == ["content", "style", "tv"]
        assert p.losses.total == pytest.approx(sum(p.losses.terms.values()), rel=1e-5)
        assert (p.losses.content, p.losses.style, p.losses.tv) == tuple(
            p.losses.terms[n] for n in ("content", "style", "tv")
        )

    result = frames[-1].result
    assert result.request_id == "req-full"
    assert result.iterations == 5 and result.compute_seconds > 0
    assert result.mime_type == "image/png"
    fmt, pixels = decode(result.image.data)
    assert fmt == "PNG"
    assert pixels.shape == (result.height, result.width, 3) == (26, 32, 3)


@pytest.mark.parametrize(
    ("output_format", "pil_format", "mime"),
    [(pb.OUTPUT_FORMAT_JPEG, "JPEG", "image/jpeg"), (pb.OUTPUT_FORMAT_WEBP, "WEBP", "image/webp")],
)
def test_result_in_requested_format(server, output_format, pil_format, mime):
    request = small_request(iterations=2, output_format=output_format, quality=80, size=48)
    frames = list(server.stub().Stylize(request, timeout=60))
    result = frames[-1].result
    assert result.mime_type == mime
    fmt, pixels = decode(result.image.data)
    assert fmt == pil_format
    assert pixels.shape == (result.height, result.width, 3) == (38, 48, 3)
    started = frames[0].started
    assert (started.width, started.height) == (48, 38)
    assert started.options.output_format == output_format and started.options.quality == 80


def test_previews_are_small_pngs(server):
    frames = list(server.stub().Stylize(small_request(iterations=4, preview_max_side=16), timeout=60))
    previews = [f.progress for f in frames if f.HasField("progress") and f.progress.HasField("preview")]
    assert previews, frame_kinds(frames)
    for p in previews:
        fmt, pixels = decode(p.preview.data)
        assert fmt == "PNG"
        assert pixels.shape[:2] == (p.preview_height, p.preview_width)
        assert max(pixels.shape[:2]) <= 16


def test_request_id_is_generated_when_absent(server):
    frames = list(server.stub().Stylize(small_request(iterations=1), timeout=60))
    assert frames[0].started.request_id
    assert frames[-1].result.request_id == frames[0].started.request_id


def test_server_info(server):
    info = server.stub().GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
    assert info.version
    assert info.model.name == "vgg19"
    assert info.model.weights_source == "random:0" and info.model.random_weights
    assert info.device.kind in ("CPU", "GPU") and info.device.name
    assert info.limits.max_pixels == 128 * 128
    assert info.limits.max_iterations == 5000 and info.limits.max_styles == 3
    assert info.limits.max_message_bytes == 2 * 1024 * 1024
    assert info.queue.max_concurrent_jobs == 2 and info.queue.capacity == 4
    assert info.queue.depth == 0 and info.queue.running == 0
    assert info.defaults.iterations == 500 and info.defaults.size == 512


def _progress(i: int) -> Progress:
    return Progress(i, 1000, Losses.of([("style", 1.0)]), 0.0, 0, 32, lambda: np.zeros((1, 1, 3), np.uint8))


def test_subscriber_coalesces_progress_but_keeps_the_rest():
    async def scenario() -> tuple[list[Event], Subscriber]:
        frames = Subscriber(reattached=False)
        frames.put(InQueue(2, 2))
        frames.put(InQueue(1, 1))
        frames.put(OnDevice(0.5))
        for i in range(1000):
            frames.put(_progress(i))
        frames.put(Finished(StylizeError("the end")))
        got = [await frames.get() for _ in range(4)]
        assert not frames.newer_waiting(Progress)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(frames.get(), 0.05)  # nothing more
        return got, frames

    got, frames = asyncio.run(scenario())
    queued, started, progress, finished = got
    assert queued == InQueue(1, 1) and started == OnDevice(0.5)
    assert isinstance(progress, Progress) and progress.iteration == 999
    assert isinstance(finished, Finished) and str(finished.outcome) == "the end"
    assert frames.coalesced == 1 + 999


def test_unread_stream_does_not_stall_the_job(engine):
    """A client that reads nothing while its job runs: the job still finishes
    (observed in the metrics), progress frames are coalesced, the result is kept.
    The client's HTTP/2 receive window is kept small so that unread frames push
    back on the server, as a slow client over a slow link would."""
    slow_link = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 4096)]
    with running_server(engine=engine) as srv:
        before = value(scrape(srv.metrics_port), "stylize_job_duration_seconds_count")
        stub = srv.stub(srv.channel(options=slow_link))
        call = stub.Stylize(small_request(iterations=100, preview_max_side=32, size=64), timeout=120)
        # Nothing is read from `call` until the server says the job is over.
        wait_for_value(srv.metrics_port, "stylize_job_duration_seconds_count", lambda v: v >= before + 1, timeout=120)
        frames = list(call)
        kinds = frame_kinds(frames)
        assert kinds[0] == "started" and kinds[-1] == "result"
        assert frames[-1].result.iterations == 100
        progress = [f.progress.iteration for f in frames if f.HasField("progress")]
        assert progress == sorted(progress) and progress[-1] == 100
        assert len(progress) < 100  # the frames the client was too slow for were coalesced


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (errors.InvalidArgument("size", "too big"), grpc.StatusCode.INVALID_ARGUMENT, ErrorReason.INVALID_OPTION),
        (errors.DecodeFailed("content", "not an image"), grpc.StatusCode.INVALID_ARGUMENT, ErrorReason.DECODE_FAILED),
        (errors.TooLarge("content", "too many pixels"), grpc.StatusCode.RESOURCE_EXHAUSTED, ErrorReason.TOO_LARGE),
        (errors.QueueFull("full", retry_after=1.0), grpc.StatusCode.RESOURCE_EXHAUSTED, ErrorReason.QUEUE_FULL),
        (errors.ClientQuota("yours"), grpc.StatusCode.RESOURCE_EXHAUSTED, ErrorReason.CLIENT_QUOTA),
        (errors.Draining("draining"), grpc.StatusCode.UNAVAILABLE, ErrorReason.DRAINING),
        (errors.Loading("loading"), grpc.StatusCode.UNAVAILABLE, ErrorReason.LOADING),
        (errors.Cancelled("gone"), grpc.StatusCode.CANCELLED, ErrorReason.CANCELLED),
        (errors.Stopped(StopReason.DEADLINE), grpc.StatusCode.DEADLINE_EXCEEDED, ErrorReason.DEADLINE),
        (errors.NumericalError("NaN at iteration 3"), grpc.StatusCode.INTERNAL, ErrorReason.NUMERICAL),
        (RuntimeError("bug"), grpc.StatusCode.INTERNAL, ErrorReason.INTERNAL),
    ],
)
def test_status_for_maps_every_error_to_a_code_and_a_reason(error, code, reason):
    reply = status_for(error)
    assert (reply.code, reply.reason) == (code, reason)
    assert reply.message
    details = {d.TypeName(): d for d in reply.proto().details}
    info = error_details_pb2.ErrorInfo()
    details["google.rpc.ErrorInfo"].Unpack(info)
    assert (info.reason, info.domain) == (reason.value, "stylize.v1")
    if isinstance(error, errors.InvalidArgument):
        assert reply.message.startswith(f"{error.field}:")
        violations = error_details_pb2.BadRequest()
        details["google.rpc.BadRequest"].Unpack(violations)
        assert violations.field_violations[0].field == error.field
    assert ("google.rpc.RetryInfo" in details) == isinstance(error, errors.QueueFull)
    if isinstance(error, RuntimeError):
        assert "bug" not in reply.message  # internals stay in the server log
