"""StylizeVideo on a real in-process server (random weights, 32-48 px, few
iterations): frames come back in order as each finishes, each frame is a job
of the fair queue, bad input ends the call with an error that names the frame
after the frames before it were delivered, the limits end a call with its
stop reason, a video with a request_id resumes where it stopped, and the
video metrics count it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import encode, png_bytes
from tests.support.metrics import scrape, value
from tests.support.scenes import pan
from tests.support.server import running_server
from tests.support.streams import error_reason

SIZE = 32


def header(**fields: object) -> pb.VideoRequest:
    options = pb.StylizeRequest(
        styles=[pb.StyleImage(image=pb.Image(data=png_bytes(32, 32, seed=2)))],
        size=SIZE,
        iterations=4,
        progress_interval=1,
    )
    request_id = fields.pop("request_id", "")
    if request_id:
        options.request_id = str(request_id)
    return pb.VideoRequest(header=pb.VideoHeader(options=options, **fields))  # type: ignore[arg-type]


def frame(index: int, image: np.ndarray | bytes) -> pb.VideoRequest:
    data = image if isinstance(image, bytes) else encode(image)
    return pb.VideoRequest(frame=pb.VideoFrame(index=index, image=pb.Image(data=data)))


def scene(count: int) -> list[np.ndarray]:
    frames, _ = pan(40, 32, count=count, step=2)
    return frames


def messages(head: pb.VideoRequest, frames: list[pb.VideoRequest]) -> Iterator[pb.VideoRequest]:
    yield head
    yield from frames


def stylized(responses: list[pb.VideoResponse]) -> list[int]:
    return [r.stylized.index for r in responses if r.WhichOneof("frame") == "stylized"]


def collect(call: Iterator[pb.VideoResponse]) -> tuple[list[pb.VideoResponse], grpc.RpcError | None]:
    out: list[pb.VideoResponse] = []
    try:
        for response in call:
            out.append(response)
    except grpc.RpcError as exc:
        return out, exc
    return out, None


@pytest.fixture(scope="module")
def srv(engine):  # type: ignore[no-untyped-def]
    with running_server(engine=engine, max_video_frames=6, request_receive_seconds=2.0) as handle:
        yield handle


def test_every_frame_comes_back_in_order_with_the_temporal_term_and_a_summary(srv) -> None:  # type: ignore[no-untyped-def]
    before = value(scrape(srv.metrics_port), "stylize_video_frames_total")
    frames = [frame(i, f) for i, f in enumerate(scene(3))]
    out, error = collect(srv.stub().StylizeVideo(messages(header(frame_iterations=2), frames), timeout=120))
    assert error is None, error
    kinds = [r.WhichOneof("frame") for r in out]
    assert stylized(out) == [0, 1, 2]
    assert kinds[-1] == "summary" and kinds[0] in ("queued", "started")
    results = [r.stylized.result for r in out if r.WhichOneof("frame") == "stylized"]
    assert [r.iterations for r in results] == [4, 2, 2]  # later frames: frame_iterations
    assert all("temporal" in r.losses.terms for r in results)
    assert results[0].losses.terms["temporal"] == 0.0 and results[1].losses.terms["temporal"] > 0
    assert (results[0].width, results[0].height) == (SIZE, 26)
    summary = out[-1].summary
    assert summary.frames == 3 and summary.next_frame == 3 and summary.stop_reason == pb.STOP_REASON_NONE
    assert summary.flow_seconds > 0 and 0 <= summary.flow_hidden_seconds <= summary.flow_seconds
    # Each frame's messages come before its frame: started, then progress, then the frame.
    first_started = kinds.index("started")
    assert out[first_started].index == 0 and kinds.index("stylized") > first_started
    after = scrape(srv.metrics_port)
    assert value(after, "stylize_video_frames_total") - before == 3
    assert value(after, "stylize_video_calls_in_progress") == 0
