"""One admitted job as the serving layer sees it, and the streams attached to it.

A `Job` lives on the event loop. The engine's thread reaches it only through
`stop_reason` (a lock-guarded, first-reason-wins flag it polls) and through
its `ProgressMailbox`, which keeps only the newest progress and wakes the loop
once, however fast the engine iterates. The job remembers what a stream that
attaches late needs (its queue position, that it started, its latest progress,
its outcome) and fans every event out to its `Subscriber`s: one per attached
stream, each an async queue in which runs of `queued` or `progress` events
collapse to the newest, so a slow stream costs frames, never memory or the
optimization's time. A job has at most --max-streams-per-job streams, and its
progress frames with a preview are rendered once per report and preview side
(`SharedFrames`), however many streams send them.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.delivery import DeliveryOptions
from stylize_server.job.errors import JobStreamLimit, StylizeError
from stylize_server.job.options import Inputs, JobOptions
from stylize_server.job.plan import JobPlan
from stylize_server.job.types import Estimate, Progress, Result, StopReason
from stylize_server.wire.admission import RequestHead
from stylize_server.wire.output import Output

Outcome = Output | StylizeError
_seq = itertools.count(1)


class JobState(str, enum.Enum):
    QUEUED = "queued"
    STARTING = "starting"  # has a slot; its images are being decoded
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class InQueue:
    """The job's place in the fair queue changed."""

    position: int
    depth: int


@dataclass(frozen=True)
class OnDevice:
    """The job has its slot and runs, after `queue_wait` seconds in the queue."""

    queue_wait: float


@dataclass(frozen=True)
class Finished:
    outcome: Outcome


# What a job tells its streams, in this order: InQueue*, OnDevice, Progress*, Finished.
Event = InQueue | OnDevice | Progress | Finished


class Subscriber:
    """One attached stream's view of a job (loop only)."""

    # Only the newest of a run of these matters to a stream that is behind.
    _COALESCE = (InQueue, Progress)

    def __init__(self, reattached: bool) -> None:
        self.reattached = reattached
        self._items: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()
        self.coalesced = 0

    def put(self, event: Event) -> None:
        if isinstance(event, self._COALESCE) and self._items and type(self._items[-1]) is type(event):
            self._items[-1] = event
            self.coalesced += 1
        else:
            self._items.append(event)
        self._ready.set()

    async def get(self) -> Event:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def newer_waiting(self, kind: type[Event]) -> bool:
        return any(isinstance(e, kind) for e in self._items)


class SharedFrames:
    """A job's progress frames with a preview, by (report, preview side): the
    first stream that sends one renders it (on the encode executor), the others
    await the same future. Rendering per stream made every extra stream slow
    the job (+26% with 16 streams). Only the newest `KEEP` frames are kept,
    keyed by numbers: a Progress (which holds the engine's image) is never
    kept alive here (loop only)."""

    KEEP = 4  # two reports, two preview sides: --max-streams-per-job's default out of step

    def __init__(self) -> None:
        self._frames: collections.OrderedDict[tuple[int, int, int], asyncio.Future[pb.StylizeResponse]] = (
            collections.OrderedDict()
        )

    def frame(
        self, progress: Progress, side: int, render: Callable[[], asyncio.Future[pb.StylizeResponse]]
    ) -> asyncio.Future[pb.StylizeResponse]:
        """The frame of `progress` at `side`, from `render()` if no stream asked for it yet.
        Await it shielded: a stream that goes away must not cancel the others' frame."""
        key = (progress.scale_index, progress.iteration, side)
        future = self._frames.get(key)
        if future is None:
            future = self._frames[key] = render()
            future.add_done_callback(_consume)
            while len(self._frames) > self.KEEP:
                self._frames.popitem(last=False)
        return future

    def clear(self) -> None:
        self._frames.clear()


def _consume(future: asyncio.Future[pb.StylizeResponse]) -> None:
    # A render whose every stream went away still has its error retrieved (no "never retrieved" warning).
    if not future.cancelled():
        future.exception()


class ProgressMailbox:
    """Engine thread -> event loop: the newest progress, one wake-up at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Progress], None]) -> None:
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._latest: Progress | None = None
        self._scheduled = False

    def post(self, progress: Progress) -> None:
        with self._lock:
            self._latest = progress
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop is closed: the server is gone
            pass

    def _flush(self) -> None:
        with self._lock:
            progress, self._latest, self._scheduled = self._latest, None, False
        if progress is not None:
            self._deliver(progress)


@dataclass(eq=False)
class Job:
    """An admitted request. Times are on the time.monotonic() clock."""

    client: str
    request_id: str
    reattachable: bool  # the client chose the request_id: the job outlives its stream a while
    fingerprint: str
    head: RequestHead  # the options as asked, the delivery options, the images' shapes
    plan: JobPlan  # admission's: resolved options and the estimate; the decoded images while it runs
    request: pb.StylizeRequest | None  # the encoded images, until they are decoded
    style_regions: tuple[int, ...] = ()  # each style's region of the loss
    deadline: float | None = None
    seq: int = field(default_factory=lambda: next(_seq))
    overtaken: int = 0
    state: JobState = JobState.QUEUED
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    iterations_done: int = 0
    alpha: np.ndarray | None = None  # the content's alpha at the output size
    position: tuple[int, int] | None = None  # (position, depth) while queued
    latest: Progress | None = None
    outcome: Outcome | None = None
    subscribers: list[Subscriber] = field(default_factory=list)
    frames: SharedFrames = field(default_factory=SharedFrames)
    detach_timer: asyncio.TimerHandle | None = None
    owner: str = ""  # whose request_ids it is among (`ownership`); "" is `client`
    # A video frame (serving/video.py): its images are decoded already, and
    # its stylized pixels are handed on before they are encoded.
    inputs: Inputs | None = None
    on_result: Callable[[Result], None] | None = None
    _stop: StopReason | None = None
    _stop_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> tuple[str, str]:
        return self.owner or self.client, self.request_id

    @property
    def delivery(self) -> DeliveryOptions:
        return self.head.delivery

    @property
    def options(self) -> JobOptions:
        return self.plan.options

    @property
    def estimate(self) -> Estimate:
        return self.plan.estimate

    @property
    def memory(self) -> int:
        return self.estimate.device_memory_bytes

    @property
    def total_iterations(self) -> int:
        return self.estimate.total_iterations

    @property
    def output_shape(self) -> tuple[int, int]:
        return self.estimate.output_shape

    @property
    def queue_wait(self) -> float:
        end = self.started_at if self.started_at is not None else (self.finished_at or time.monotonic())
        return end - self.submitted_at

    # ------------------------------------------------------------- stopping
    @property
    def stop_reason(self) -> StopReason | None:
        return self._stop

    def request_stop(self, reason: StopReason) -> bool:
        """Ask the job to stop (any thread); the first reason wins. True if this one did."""
        with self._stop_lock:
            if self._stop is not None:
                return False
            self._stop = reason
            return True

    # --------------------------------------------------------------- events
    def subscribe(self, reattached: bool = False, limit: int = 0) -> Subscriber:
        """A new stream attaches: it first hears where the job stands. With
        `limit`, a job that has that many streams already refuses it."""
        if limit and len(self.subscribers) >= limit:
            raise JobStreamLimit(
                f"the job of request_id {self.request_id!r} has {len(self.subscribers)} streams attached, its limit "
                f"(--max-streams-per-job {limit})",
                retry_after=1.0,
            )
        subscriber = Subscriber(reattached)
        if self.outcome is not None:
            if self.started_at is not None:
                subscriber.put(OnDevice(self.queue_wait))
            subscriber.put(Finished(self.outcome))
        elif self.state in (JobState.RUNNING, JobState.DONE):
            subscriber.put(OnDevice(self.queue_wait))
            if self.latest is not None:
                subscriber.put(self.latest)
        elif self.position is not None:
            subscriber.put(InQueue(*self.position))
        self.subscribers.append(subscriber)
        if self.detach_timer is not None:
            self.detach_timer.cancel()
            self.detach_timer = None
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

    def publish(self, event: Event) -> None:
        if isinstance(event, InQueue):
            self.position = (event.position, event.depth)
        elif isinstance(event, Progress):
            self.latest = event
        elif isinstance(event, Finished):
            self.outcome = event.outcome
            self.latest = None  # it holds the engine's last image
            self.frames.clear()
        for subscriber in self.subscribers:
            subscriber.put(event)
