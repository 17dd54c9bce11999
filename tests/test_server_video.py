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
    with running_server(engine=engine, max_video_frames=3, request_receive_seconds=2.0) as handle:
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
    assert srv.stub().GetServerInfo(pb.GetServerInfoRequest()).limits.max_video_frames == 3


def test_temporal_weight_0_stylizes_every_frame_alone(srv) -> None:  # type: ignore[no-untyped-def]
    frames = [frame(i, f) for i, f in enumerate(scene(2))]
    out, error = collect(srv.stub().StylizeVideo(messages(header(temporal_weight=0.0), frames), timeout=60))
    assert error is None, error
    results = [r.stylized.result for r in out if r.WhichOneof("frame") == "stylized"]
    assert [r.iterations for r in results] == [4, 4] and all("temporal" not in r.losses.terms for r in results)
    assert out[-1].summary.flow_seconds == 0.0


def test_early_stop_ends_a_later_frame_once_its_loss_settles(srv) -> None:  # type: ignore[no-untyped-def]
    frames = [frame(i, f) for i, f in enumerate(scene(2))]
    head = header(frame_iterations=200, early_stop=0.5)  # any change under 50% per iteration counts as settled
    out, error = collect(srv.stub().StylizeVideo(messages(head, frames), timeout=60))
    assert error is None, error
    first, later = [r.stylized.result for r in out if r.WhichOneof("frame") == "stylized"]
    assert first.iterations == 4 and first.complete  # the first frame runs all of its iterations
    assert 2 <= later.iterations < 200 and not later.complete and later.stop_reason == pb.STOP_REASON_NONE
    assert out[-1].summary.stop_reason == pb.STOP_REASON_NONE and out[-1].summary.frames == 2


def _fails(srv, head: pb.VideoRequest, frames: list[pb.VideoRequest]) -> tuple[list[int], grpc.RpcError]:  # type: ignore[no-untyped-def]
    out, error = collect(srv.stub().StylizeVideo(messages(head, frames), timeout=120))
    assert error is not None, [r.WhichOneof("frame") for r in out]
    return stylized(out), error


@pytest.mark.parametrize(
    ("bad", "reason", "field", "code"),
    [
        (frame(1, np.zeros((40, 40, 3), np.uint8)), "VIDEO_FRAME_SIZE", "frames[1].image", "INVALID_ARGUMENT"),
        (frame(0, np.zeros((32, 40, 3), np.uint8)), "VIDEO_FRAME_ORDER", "frames[0].index", "INVALID_ARGUMENT"),
        (frame(1, b"\x89PNG\r\n\x1a\nnot really"), "DECODE_FAILED", "frames[1].image", "INVALID_ARGUMENT"),
    ],
    ids=["another size", "repeated index", "corrupt"],
)
def test_a_bad_frame_ends_the_call_naming_it_after_the_frames_before_it(srv, bad, reason, field, code) -> None:  # type: ignore[no-untyped-def]
    first = frame(0, scene(1)[0])
    delivered, error = _fails(srv, header(), [first, bad])
    assert delivered == [0]
    assert error.code().name == code and error_reason(error) == reason
    assert field in (error.details() or "")
    # The server goes on serving.
    assert stylized(collect(srv.stub().StylizeVideo(messages(header(), [first]), timeout=60))[0]) == [0]


def test_too_many_frames_are_refused_by_the_count_at_once_or_at_the_frame_past_the_limit(srv) -> None:  # type: ignore[no-untyped-def]
    frames = [frame(i, f) for i, f in enumerate(scene(4))]
    delivered, error = _fails(srv, header(frame_count=4), frames)
    assert delivered == [] and error_reason(error) == "VIDEO_TOO_LONG" and "frame_count" in (error.details() or "")
    delivered, error = _fails(srv, header(frame_iterations=1), frames)
    assert delivered == [0, 1, 2] and error_reason(error) == "VIDEO_TOO_LONG" and "frames[3]" in (error.details() or "")


def test_a_client_that_stops_sending_times_out_naming_the_frame_then_resumes_from_it(srv) -> None:  # type: ignore[no-untyped-def]
    frames = scene(3)
    release = threading.Event()

    def stalled() -> Iterator[pb.VideoRequest]:
        yield header(request_id="stalled", frame_iterations=2)
        yield frame(0, frames[0])
        release.wait(30)  # sends nothing more (and does not close its side)

    try:
        out, error = collect(srv.stub().StylizeVideo(stalled(), timeout=60))
    finally:
        release.set()
    assert stylized(out) == [0]
    assert error is not None and error_reason(error) == "RECEIVE_TIMEOUT"
    assert "frames[1]" in (error.details() or "") and "first_frame 1" in (error.details() or "")
    # Another job secret sees no such video (the same answer as for an id never used).
    head = header(request_id="stalled", frame_iterations=2, first_frame=1)
    stranger = srv.stub(srv.channel(job_secret="another-callers-secret-0123"))
    _, error = collect(stranger.StylizeVideo(messages(head, [frame(1, frames[1])]), timeout=60))
    assert error is not None and error_reason(error) == "VIDEO_RESUME" and "no video" in (error.details() or "")
    # Resume: the same header from frame 1; the server kept frame 0's content and output for the flow.
    out, error = collect(
        srv.stub().StylizeVideo(messages(head, [frame(1, frames[1]), frame(2, frames[2])]), timeout=60)
    )
    assert error is None, error
    assert stylized(out) == [1, 2]
    summary = out[-1].summary
    assert summary.resumed and summary.next_frame == 3
    first = next(r.stylized.result for r in out if r.WhichOneof("frame") == "stylized")
    assert first.losses.terms["temporal"] > 0 and first.iterations == 2  # a later frame, not a new video
    # A resume from a frame the video is not at names the one it is at.
    head = header(request_id="stalled", frame_iterations=2, first_frame=1)
    _, error = _fails(srv, head, [frame(1, frames[1])])
    assert error_reason(error) == "VIDEO_RESUME" and "first_frame 3" in (error.details() or "")


def test_the_time_limit_ends_the_call_ok_with_its_stop_reason_after_delivering_the_frame(engine) -> None:  # type: ignore[no-untyped-def]
    from stylize_server.job.options import StyleSource

    # Compiled beforehand: admission counts compiling against the limit (and would refuse the call).
    image = scene(1)[0]
    engine.stylize(image, [StyleSource(image)], size=SIZE, iterations=1, term_options=(("temporal_weight", 1e3),))
    with running_server(engine=engine, max_job_seconds=0.5) as srv:
        frames = [frame(i, f) for i, f in enumerate(scene(3))]
        head = header()
        head.header.options.iterations, head.header.options.accept_partial = 2000, True
        out, error = collect(srv.stub().StylizeVideo(messages(head, frames), timeout=60))
    assert error is None, error
    summary = out[-1].summary
    assert summary.stop_reason == pb.STOP_REASON_TIME_LIMIT and "time_limit" in summary.message
    assert stylized(out) == [0] and summary.frames == 1 and summary.next_frame == 1
    result = out[-2].stylized.result
    assert not result.complete and result.stop_reason == pb.STOP_REASON_TIME_LIMIT and 0 < result.iterations < 2000


def test_another_job_runs_between_two_frames_of_a_video(engine) -> None:  # type: ignore[no-untyped-def]
    from tests.support.server import small_request

    frames = scene(4)
    other_admitted = threading.Event()
    seen: list[tuple[str, str, int]] = []  # (stream, message, frame index) in order of arrival
    lock = threading.Lock()

    def note(stream: str, kind: str, index: int = -1) -> None:
        with lock:
            seen.append((stream, kind, index))

    def video_messages() -> Iterator[pb.VideoRequest]:
        yield header(frame_iterations=3)
        yield frame(0, frames[0])
        yield frame(1, frames[1])
        other_admitted.wait(30)
        yield frame(2, frames[2])
        yield frame(3, frames[3])

    with running_server(engine=engine, max_concurrent_jobs=1) as srv:

        def video() -> None:
            for response in srv.stub().StylizeVideo(video_messages(), timeout=60):
                note("video", response.WhichOneof("frame"), response.index)
                if response.WhichOneof("frame") == "stylized" and response.index == 0:
                    threading.Thread(target=other, daemon=True).start()

        def other() -> None:
            for response in srv.stub().Stylize(small_request(iterations=20, progress_interval=100), timeout=60):
                note("stylize", response.WhichOneof("frame"))
                other_admitted.set()

        runner = threading.Thread(target=video)
        runner.start()
        runner.join(60)
    kinds = [(s, k, i) for s, k, i in seen if k in ("started", "queued", "result", "stylized")]
    other_started = kinds.index(("stylize", "started", -1))
    frame2_started = kinds.index(("video", "started", 2))
    assert other_started < frame2_started, kinds  # one slot: the other job ran between frames 1 and 2
    assert ("video", "queued", 2) in kinds  # frame 2 waited in the fair queue for it
    assert [i for s, k, i in kinds if k == "stylized"] == [0, 1, 2, 3]


def test_a_drain_ends_the_call_ok_with_shutdown_after_the_finished_frames(engine) -> None:  # type: ignore[no-untyped-def]
    frames = scene(3)
    first_done = threading.Event()

    def video_messages() -> Iterator[pb.VideoRequest]:
        yield header(frame_iterations=2)
        yield frame(0, frames[0])
        first_done.wait(30)
        yield frame(1, frames[1])
        yield frame(2, frames[2])

    out: list[pb.VideoResponse] = []
    with running_server(engine=engine, grace_seconds=30.0) as srv:
        stub = srv.stub()

        def read() -> None:
            for response in stub.StylizeVideo(video_messages(), timeout=60):
                out.append(response)
                if response.WhichOneof("frame") == "stylized":
                    first_done.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert first_done.wait(60)
        srv.server.stop(grace=30)  # drains: the call sees it before its next frame
        reader.join(30)
    summary = out[-1].summary
    assert out[-1].WhichOneof("frame") == "summary" and summary.stop_reason == pb.STOP_REASON_SHUTDOWN
    assert stylized(out) == list(range(summary.frames)) and summary.frames >= 1
