"""The input side of a StylizeVideo call: its frames, read one ahead of the
frame being optimized, checked (order, count, size, header limits), decoded
and given their optical flow on the decode executor, so that the flow of
frame t+1 is computed while frame t is optimized. A queue of one prepared
frame between this reader and the call is all the buffering there is: gRPC's
flow control holds a faster sender back. The resumable state of videos, and
the video metrics.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from dataclasses import dataclass

import numpy as np
from grpc import aio
from prometheus_client import Counter, Gauge, Histogram

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import flow, images
from stylize_server.job.video import VideoFrameOrder, VideoFrameSize, VideoState, VideoTooLong
from stylize_server.serving import calls

FRAMES = Counter("stylize_video_frames", "Video frames stylized and delivered (StylizeVideo).")
FRAME_SECONDS = Histogram(
    "stylize_video_frame_seconds",
    "Time from a video frame's admission to its delivery (queue, optimization, encoding).",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, float("inf")),
)
FLOW_SECONDS = Counter("stylize_video_flow_seconds", "Seconds of optical flow computed for video frames.")
FLOW_HIDDEN_SECONDS = Counter(
    "stylize_video_flow_hidden_seconds",
    "Of stylize_video_flow_seconds, the seconds that ran while a frame was optimized.",
)
VIDEO_CALLS = Gauge("stylize_video_calls_in_progress", "StylizeVideo calls open now.")


@dataclass(frozen=True)
class Prepared:
    """A frame ready to be stylized."""

    index: int
    content: np.ndarray  # at the output size, uint8 RGB
    flow: flow.Flow | None  # from the previous frame; None for the video's first
    flow_span: tuple[float, float] | None  # (start, end) on time.monotonic()


@dataclass(frozen=True)
class End:
    """The client closed its side after `frames` frames."""

    frames: int


Item = Prepared | End | BaseException


def decode_frame(data: bytes, field: str, max_pixels: int, out_hw: tuple[int, int]) -> np.ndarray:
    """A frame's RGB at the output size."""
    rgb = images.decode(data, field, max_pixels, at_least=out_hw).rgb
    return images.resize(rgb, out_hw)


async def _next_message(context: aio.ServicerContext[object, object]) -> pb.VideoRequest | None:
    message = await context.read()
    if message is aio.EOF or not isinstance(message, bytes):
        return None
    return calls.parse(pb.VideoRequest, message)


@dataclass
class Reader:
    """Reads, checks and prepares the frames of one call into `queue`."""

    context: aio.ServicerContext[object, object]
    state: VideoState
    previous: np.ndarray | None  # the content frame before the first this reader reads
    first_frame: int
    max_frames: int
    max_pixels: int
    out_hw: tuple[int, int]
    decode: concurrent.futures.Executor
    queue: asyncio.Queue[Item]
    with_flow: bool = True  # False for frames stylized alone (temporal_weight 0)
    count: int = 0  # frames prepared

    async def run(self) -> None:
        """Never raises: a bad frame (or a failed read) is queued after the good ones before it."""
        try:
            await self._read()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # delivered in order: the frames before it are sent first
            await self.queue.put(exc)

    async def _read(self) -> None:
        while True:
            message = await _next_message(self.context)
            if message is None:
                await self.queue.put(End(self.count))
                return
            await self.queue.put(await self.prepare(message))

    async def prepare(self, message: pb.VideoRequest) -> Prepared:
        """Check a frame message, decode it, compute its flow from the previous frame."""
        loop = asyncio.get_running_loop()
        expected = self.first_frame + self.count
        kind = message.WhichOneof("message")
        if kind != "frame":
            raise VideoFrameOrder(f"frames[{expected}]", f"expected frame {expected}, got a {kind or 'empty'} message")
        frame = message.frame
        if frame.index != expected:
            raise VideoFrameOrder(
                f"frames[{frame.index}].index",
                f"frame {frame.index} came where frame {expected} was expected: indices are consecutive from "
                f"first_frame {self.first_frame}, without repeats",
            )
        if self.count >= self.max_frames:
            raise VideoTooLong(
                f"frames[{frame.index}]",
                f"frame {frame.index} is past this server's limit of {self.max_frames} frames per call "
                "(--max-video-frames); the frames before it were delivered: resume from it by request_id",
            )
        field = f"frames[{frame.index}].image"
        shape = images.probe(frame.image.data, field, self.max_pixels).shape
        if self.state.frame_shape is None:
            self.state.frame_shape = shape
        elif shape != self.state.frame_shape:
            h, w = self.state.frame_shape
            raise VideoFrameSize(
                field, f"frame {frame.index} is {shape[1]}x{shape[0]}, not {w}x{h} as the video's first frame"
            )
        data = frame.image.data
        del message, frame
        content = await loop.run_in_executor(self.decode, decode_frame, data, field, self.max_pixels, self.out_hw)
        del data
        found, span = None, None
        if self.previous is not None and self.with_flow:
            start = time.monotonic()
            found = await loop.run_in_executor(self.decode, flow.between, self.previous, content)
            span = (start, time.monotonic())
            FLOW_SECONDS.inc(found.seconds)
        self.previous = content
        self.count += 1
        return Prepared(expected, content, found, span)


def overlap(span: tuple[float, float], busy: list[tuple[float, float]]) -> float:
    """Seconds of `span` inside the (disjoint) intervals `busy`."""
    return sum(max(0.0, min(span[1], b) - max(span[0], a)) for a, b in busy)


class VideoStore:
    """Videos that can be resumed, by (owner, request_id): the newest
    `max_entries` within `retention` seconds and `max_bytes` (loop only)."""

    def __init__(self, max_bytes: int, retention: float, max_entries: int = 256) -> None:
        self.max_bytes, self.retention, self.max_entries = max_bytes, retention, max_entries
        self._items: collections.OrderedDict[tuple[str, str], tuple[float, VideoState]] = collections.OrderedDict()

    def get(self, key: tuple[str, str]) -> VideoState | None:
        self._expire()
        found = self._items.get(key)
        return None if found is None else found[1]

    def put(self, key: tuple[str, str], state: VideoState) -> None:
        self._items.pop(key, None)
        self._items[key] = (time.monotonic() + self.retention, state)
        self._expire()

    def drop(self, key: tuple[str, str]) -> None:
        self._items.pop(key, None)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for _, s in self._items.values())

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (until, s) in self._items.items() if until <= now and not s.busy]:
            del self._items[key]
        while len(self._items) > self.max_entries or (self._items and self.nbytes > self.max_bytes):
            oldest = next(iter(self._items))
            if self._items[oldest][1].busy:
                break
            del self._items[oldest]
