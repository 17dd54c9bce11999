"""Video on the client side: the StylizeVideo header and frame messages, and
the typed events of a video call (shared by the sync and async clients).

    with StyleTransferClient("localhost:50051") as client:
        for event in client.stylize_video(frames, "starry.jpg", size=256, iterations=200):
            if isinstance(event, VideoFrame):
                event.result.save(f"out/{event.index:05d}.png")

`frames` is any iterable of images (paths, bytes, PIL images, arrays); it is
read lazily, one frame as gRPC can send it, so a long video is never held in
memory. Events: `FrameEvent` (a frame's Queued/Started/Progress), one
`VideoFrame` per input frame in order, then the `VideoSummary`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from stylize_api.v1 import stylize_pb2

from .calls import ResultAssembler
from .errors import Failure, StylizeError, error_for, protocol_error
from .events import Progress, Queued, Result, Started, event_from_frame
from .images import ImageInput, image_bytes
from .request import StyleInput, build_request

# A stand-in content for build_request (which checks and converts every option); removed from the header.
_NO_CONTENT = b"\0"


@dataclass(frozen=True)
class FrameEvent:
    """Where frame `index` stands: queued, started, or its progress."""

    index: int
    event: Queued | Started | Progress


@dataclass(frozen=True)
class VideoFrame:
    """Stylized frame `index` (its `result` is a Stylize Result)."""

    index: int
    result: Result
    flow_seconds: float


@dataclass(frozen=True)
class VideoSummary:
    frames: int  # stylized by this call
    next_frame: int  # where a resume starts
    stop_reason: str  # "none", "time_limit", "shutdown", ...
    message: str
    seconds: float
    flow_seconds: float
    flow_hidden_seconds: float
    resumed: bool

    @property
    def complete(self) -> bool:
        return self.stop_reason == "none"


VideoEvent = FrameEvent | VideoFrame | VideoSummary


def build_header(
    styles: StyleInput | Sequence[StyleInput],
    *,
    temporal_weight: float | None = None,
    frame_iterations: int | None = None,
    frame_count: int = 0,
    first_frame: int = 0,
    early_stop: float | None = None,
    **options: Any,
) -> stylize_pb2.VideoRequest:
    """The header message: the Stylize options (by name, as `build_request`)
    and the temporal ones. None leaves an option to the server's default."""
    request = build_request(_NO_CONTENT, styles, **options)
    request.ClearField("content")
    header = stylize_pb2.VideoHeader(options=request, frame_count=frame_count, first_frame=first_frame)
    if temporal_weight is not None:
        header.temporal_weight = float(temporal_weight)
    if frame_iterations is not None:
        header.frame_iterations = int(frame_iterations)
    if early_stop is not None:
        header.early_stop = float(early_stop)
    return stylize_pb2.VideoRequest(header=header)


def messages(
    header: stylize_pb2.VideoRequest, frames: Iterable[ImageInput], first_frame: int = 0
) -> Iterator[stylize_pb2.VideoRequest]:
    """The header, then each frame encoded as it is asked for."""
    yield header
    for index, image in enumerate(frames, start=first_frame):
        data = image_bytes(image, f"frames[{index}]")
        yield stylize_pb2.VideoRequest(frame=stylize_pb2.VideoFrame(index=index, image=stylize_pb2.Image(data=data)))


class VideoEvents:
    """VideoResponse messages -> typed events, checking their order."""

    def __init__(self) -> None:
        self._assembler: ResultAssembler | None = None
        self._index = -1
        self.summary: VideoSummary | None = None

    def on_message(self, msg: stylize_pb2.VideoResponse) -> VideoEvent | None:
        kind = msg.WhichOneof("frame")
        if self.summary is not None:
            raise protocol_error(f"a {kind} message after the video's summary")
        if kind == "stylized":
            stylized = msg.stylized
            if self._assembler is None or self._index != stylized.index:
                if self._assembler is not None and self._assembler.receiving:
                    raise protocol_error(f"frame {stylized.index} began before frame {self._index} was whole")
                self._assembler, self._index = ResultAssembler(), stylized.index
            self._assembler.add(stylized.result)
            if not self._assembler.done:
                return None
            result = self._assembler.result()
            self._assembler = None
            return VideoFrame(stylized.index, result, stylized.flow_seconds)
        if kind == "summary":
            s = msg.summary
            self.summary = VideoSummary(
                frames=s.frames,
                next_frame=s.next_frame,
                stop_reason=stylize_pb2.StopReason.Name(s.stop_reason).removeprefix("STOP_REASON_").lower(),
                message=s.message,
                seconds=s.seconds,
                flow_seconds=s.flow_seconds,
                flow_hidden_seconds=s.flow_hidden_seconds,
                resumed=s.resumed,
            )
            return self.summary
        if kind in ("queued", "started", "progress"):
            frame = stylize_pb2.StylizeResponse()
            getattr(frame, kind).CopyFrom(getattr(msg, kind))
            return FrameEvent(msg.index, event_from_frame(frame))
        raise protocol_error(f"an unknown video message ({kind})")

    def finish(self) -> None:
        if self.summary is None:
            raise protocol_error("the video stream ended OK without its summary")


class VideoCall:
    """One StylizeVideo call, shared by the sync and the asyncio clients: they
    only move messages and failures between gRPC and this (as `StylizeCall`
    does for Stylize).

    The client sends `requests` (the header, then each frame as gRPC asks for
    it) -> `on_message()` per response (yield the events it returns) ->
    `finish()` when the stream closed OK, or raises `error(failure)` when it
    failed. No automatic retry: a caller resumes with `first_frame`."""

    def __init__(
        self, header: stylize_pb2.VideoRequest, frames: Iterable[ImageInput], *, target: str, timeout: float | None
    ) -> None:
        self.requests = messages(header, frames, header.header.first_frame)
        self.target = target
        self.timeout = timeout
        self._events = VideoEvents()

    def on_message(self, msg: stylize_pb2.VideoResponse) -> VideoEvent | None:
        """The event to hand to the caller for `msg` (None for part of a frame's result)."""
        return self._events.on_message(msg)

    def finish(self) -> None:
        """The stream closed OK: it must have ended with the summary."""
        self._events.finish()

    def error(self, failure: Failure) -> StylizeError:
        """The exception to raise for a call that ended with `failure`."""
        return error_for(failure, self.target)
