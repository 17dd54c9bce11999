"""StylizeVideo: a video as a sequence of jobs, one per frame, each admitted
to the same scheduler as a Stylize job (cost model, budget, fair queue,
per-client quota, time per job), so that a long video holds a slot for one
frame at a time and another client's job starts between two of its frames.

Per call: the gate of open calls, the header (temporal options, request_id),
then, as frames arrive (`videoinput.Reader`, one ahead, flow on the decode
executor), one job per frame. A frame's job carries its decoded inputs (the
content, the styles, the previous stylized frame warped into it as its start
and as the temporal term's target) and hands its stylized pixels back before
they are encoded; the call sends that frame's queued/started/progress
messages, then the frame, then takes the next. The video's state (the last
content frame and its stylized frame) stays with the call, and, for a video
with a request_id, in the `VideoStore` after the call, for a resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.errors import (
    ClientQuota,
    Draining,
    InvalidArgument,
    QueueFull,
    ReceiveTimeout,
    RequestIdInUse,
    Stopped,
    StylizeError,
)
from stylize_server.job.options import InputShapes, StyleSource
from stylize_server.job.plan import JobPlan
from stylize_server.job.types import Progress, Result, StopReason
from stylize_server.job.video import (
    EarlyStop,
    VideoFrameOrder,
    VideoOptions,
    VideoResume,
    VideoState,
    frame_inputs,
)
from stylize_server.serving import calls, frames, ownership, videoinput
from stylize_server.serving.jobs import InQueue, Job, OnDevice
from stylize_server.serving.stream import gone
from stylize_server.wire import admission
from stylize_server.wire.output import Output, result_frames
from stylize_server.wire.status import status_for
from stylize_server.wire.video import frame_request, header_fingerprint, plan_frames, video_options

if TYPE_CHECKING:
    from stylize_server.serving.service import StyleTransferService

log = logging.getLogger("stylize.video")

ADMIT_RETRY_SECONDS = 120.0  # a later frame refused for capacity waits this long for room, then the call ends


async def _send(context: calls.Context, timeout: float, index: int, **frame: object) -> None:
    await calls.send(context, pb.VideoResponse(index=index, **frame), timeout)  # type: ignore[arg-type]


class VideoCall:
    """One StylizeVideo call."""

    def __init__(self, service: StyleTransferService, context: calls.Context) -> None:
        self.service, self.context, self.config = service, context, service.config
        self.t0 = time.monotonic()
        self.job: Job | None = None
        self.busy: list[tuple[float, float]] = []  # when this call's frames were optimized
        self.flow_seconds = self.flow_hidden = 0.0
        self.delivered = 0
        self.resumed = False
        self.plans: tuple[JobPlan, JobPlan] | None = None  # of the first frame, of the later ones
        self.shapes: tuple[InputShapes, InputShapes] | None = None
        self.head: admission.RequestHead | None = None
        self.out_hw: tuple[int, int] = (0, 0)
        self.styles: tuple[StyleSource, ...] = ()
        self.regions: tuple[int, ...] = ()
        self.reader: videoinput.Reader | None = None
        self.early_stop = 0.0

    async def run(self) -> None:
        service, context, cfg = self.service, self.context, self.config
        client = service.auth.client_of(context.invocation_metadata(), context.peer())
        scheduler, _ = service._ready()
        first = await calls.receive(context, cfg.request_receive_seconds, pb.VideoRequest)
        if first.WhichOneof("message") != "header":
            raise InvalidArgument("header", "the first message of a StylizeVideo call must be its header")
        header = first.header
        if header.options.content.data or header.options.init_image.data:
            raise InvalidArgument("header.options.content", "must be empty: the frames are the content")
        wanted = video_options(header)
        request_id = header.options.request_id
        owner = ownership.owner_of(service.auth.enabled, client, context.invocation_metadata())
        key = (owner, request_id) if request_id and owner else None
        state = self._state(key, header_fingerprint(header), wanted.first_frame)
        state.busy = True
        reader_task: asyncio.Task[None] | None = None
        stop, message = StopReason.NONE, ""
        try:
            # The first frame tells the options' and styles' checks the content's size.
            item = await self._first_item(state, header, wanted, client, key)
            assert self.plans is not None
            assert self.reader is not None
            queue = self.reader.queue
            reader_task = asyncio.ensure_future(self.reader.run())
            deadline = self.t0 + cfg.max_job_seconds
            while item is not None:
                if isinstance(item, videoinput.End):
                    break
                if isinstance(item, BaseException):
                    raise item
                if service.draining or scheduler.closed:
                    stop, message = StopReason.SHUTDOWN, "the server is shutting down"
                    break
                if time.monotonic() >= deadline:
                    stop = StopReason.TIME_LIMIT
                    message = (
                        f"the call reached the server's time limit of {cfg.max_job_seconds:g} s (--max-job-seconds)"
                    )
                    break
                try:
                    frame_stop = await self._frame(item, state, client, key)
                except Stopped as exc:  # its job ended before it ran (a drain closed the queue)
                    frame_stop = exc.stop_reason
                if frame_stop is not StopReason.NONE:
                    stop, message = frame_stop, f"frame {item.index} was stopped ({frame_stop.value})"
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), cfg.request_receive_seconds)
                except TimeoutError:
                    raise ReceiveTimeout(
                        f"no frame {state.next_frame} (and no end of the video) within "
                        f"{cfg.request_receive_seconds:g} s (--request-receive-seconds); the frames before it were "
                        "delivered" + (f": resume with first_frame {state.next_frame}" if key else ""),
                        field=f"frames[{state.next_frame}]",
                    ) from None
            summary = pb.VideoSummary(
                frames=self.delivered,
                next_frame=state.next_frame,
                stop_reason="STOP_REASON_" + stop.name,
                message=message,
                seconds=time.monotonic() - self.t0,
                flow_seconds=self.flow_seconds,
                flow_hidden_seconds=self.flow_hidden,
                resumed=self.resumed,
            )
            await _send(context, cfg.send_timeout_seconds, state.next_frame, summary=summary)
            if stop is StopReason.NONE and key is not None:
                service.videos.put(key, state)  # finished videos, too, can be continued with more frames
        finally:
            state.busy = False
            if reader_task is not None:
                reader_task.cancel()
            if self.job is not None and self.job.outcome is None and service.scheduler is not None:
                service.scheduler.stop(self.job, StopReason.CLIENT)
            if key is not None and state.next_frame > 0:
                service.videos.put(key, state)

    def _state(self, key: tuple[str, str] | None, fingerprint: str, first_frame: int) -> VideoState:
        if key is None:
            if first_frame:
                raise VideoResume(
                    "first_frame",
                    "a video resumes by its request_id (with the job secret or token of the call that began it)",
                )
            return VideoState(fingerprint)
        found = self.service.videos.get(key)
        if found is None:
            if first_frame:
                raise VideoResume(
                    "first_frame",
                    f"request_id {key[1]!r} has no video to resume (none began, or it is older than "
                    f"{self.config.result_retention_seconds:g} s); send it from frame 0",
                )
            return VideoState(fingerprint)
        if found.fingerprint != fingerprint:
            raise RequestIdInUse(f"request_id {key[1]!r} belongs to another video of this client; send a new one")
        if found.busy:
            raise RequestIdInUse(f"the video of request_id {key[1]!r} is being stylized by another call")
        if first_frame == 0 and found.next_frame:
            return VideoState(fingerprint)  # from the start again
        if first_frame != found.next_frame:
            raise VideoResume(
                "first_frame",
                f"the video of request_id {key[1]!r} continues at frame {found.next_frame}, not {first_frame}; "
                f"send first_frame {found.next_frame} and the frames from there",
            )
        self.resumed = True
        return found

    async def _first_item(
        self, state: VideoState, header: pb.VideoHeader, wanted: VideoOptions, client: str, key: tuple[str, str] | None
    ) -> videoinput.Item | None:
        """Read the call's first frame, check the options and styles against
        it, decode the styles once, plan the first and later frames."""
        cfg, engine = self.config, self.service.engine
        scheduler = self.service.scheduler
        assert engine is not None and scheduler is not None
        message = await calls.receive(self.context, cfg.request_receive_seconds, pb.VideoRequest)
        if message.WhichOneof("message") != "frame":
            raise InvalidArgument(f"frames[{wanted.first_frame}]", "expected the first frame after the header")
        frame = message.frame
        if frame.index != wanted.first_frame:
            raise VideoFrameOrder(
                f"frames[{frame.index}].index", f"the first frame must have index first_frame = {wanted.first_frame}"
            )
        request = frame_request(header, frame)
        head = admission.read_request(request, cfg.limits)  # options, styles, the frame's header: every limit
        options = head.options
        wanted.check(options, cfg.max_video_frames, cfg.limits.max_iterations)
        self.early_stop = wanted.early_stop
        engine.check_options(wanted.frame_options(options, later=False))
        self.regions = head.style_regions
        self.plans, self.shapes = plan_frames(head, wanted, engine, scheduler.budget_bytes, cfg)
        self.head = head
        self.out_hw = self.plans[0].output_shape
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(
            self.service.pools.decode, admission.decode_inputs, request, head, cfg.limits
        )
        assert decoded is not None
        inputs, _ = decoded
        self.styles = inputs.styles
        del request, inputs, decoded
        # The first frame goes through the same reader as the others (checks, flow from a resumed state).
        self.reader = videoinput.Reader(
            self.context,
            state,
            state.content,
            wanted.first_frame,
            cfg.max_video_frames,
            cfg.limits.max_input_pixels,
            self.out_hw,
            self.service.pools.decode,
            asyncio.Queue(maxsize=1),
            with_flow=not wanted.alone,
        )
        return await self.reader.prepare(message)

    async def _frame(
        self, item: videoinput.Prepared, state: VideoState, client: str, key: tuple[str, str] | None
    ) -> StopReason:
        """Stylize one frame as a job of the scheduler; send its messages and the frame."""
        service, cfg, context = self.service, self.config, self.context
        scheduler = service.scheduler
        assert scheduler is not None and self.plans is not None and self.head is not None
        later = state.output is not None and item.flow is not None
        inputs = frame_inputs(item.content, self.styles, state.output, item.flow)
        plan = self.plans[1 if later else 0]
        kept: list[np.ndarray] = []

        def keep(result: Result) -> None:
            kept.append(result.pixels)

        remaining = context.time_remaining()
        assert self.shapes is not None
        shapes = self.shapes[1 if later else 0]
        head = admission.RequestHead(plan.options, self.head.delivery, shapes, False, self.regions)
        job = Job(
            client=client,
            request_id=f"{self.head.delivery.request_id or 'video'}#{item.index}",
            reattachable=False,
            fingerprint="",
            head=head,
            plan=plan,
            request=None,
            style_regions=self.regions,
            deadline=time.monotonic() + remaining if remaining is not None else None,
            owner=key[0] if key else "",
            inputs=inputs,
            on_result=keep,
        )
        subscriber = job.subscribe()
        admitted = time.monotonic()
        await self._admit(job, first=state.next_frame == 0 or not self.delivered)
        self.job = job
        timeout = cfg.send_timeout_seconds
        early = EarlyStop(self.early_stop)
        try:
            while True:
                event = await subscriber.get()
                if isinstance(event, InQueue):
                    queued = pb.Queued(position=event.position, queue_depth=event.depth)
                    await _send(context, timeout, item.index, queued=queued)
                elif isinstance(event, OnDevice):
                    started = frames.started_frame(
                        job, service.engine.model_info if service.engine else None, event.queue_wait, False
                    )
                    await _send(context, timeout, item.index, started=started.started)
                elif isinstance(event, Progress):
                    progress = event
                    if later and early.converged(progress.iteration, progress.losses.total):
                        job.request_stop(StopReason.NONE)  # settled: the engine returns it as it is
                    last = progress.iteration == progress.total_iterations
                    if progress.iteration % self.head.delivery.progress_interval and not last:
                        continue
                    await _send(context, timeout, item.index, progress=frames.progress_frame(job, progress, 0).progress)
                else:
                    outcome = event.outcome
                    break
        finally:
            job.unsubscribe(subscriber)
        if job.started_at is not None and job.finished_at is not None:
            self.busy.append((job.started_at, job.finished_at))
        if item.flow is not None and item.flow_span is not None:
            self.flow_seconds += item.flow.seconds
        if isinstance(outcome, Stopped):
            return outcome.stop_reason
        if not isinstance(outcome, Output):
            raise outcome
        for chunk in result_frames(outcome, job.request_id, job.queue_wait, cfg.max_message_bytes):
            stylized = pb.StylizedFrame(
                index=item.index, result=chunk.result, flow_seconds=item.flow.seconds if item.flow else 0.0
            )
            await _send(context, timeout, item.index, stylized=stylized)
        videoinput.FRAMES.inc()
        videoinput.FRAME_SECONDS.observe(time.monotonic() - admitted)
        self.delivered += 1
        state.content, state.output, state.next_frame = item.content, kept[0] if kept else None, item.index + 1
        self._account_hidden(item)
        return outcome.stop_reason if not outcome.complete else StopReason.NONE

    def _account_hidden(self, item: videoinput.Prepared) -> None:
        if item.flow_span is None:
            return
        hidden = videoinput.overlap(item.flow_span, self.busy)
        hidden = min(hidden, item.flow.seconds if item.flow else hidden)
        self.flow_hidden += hidden
        videoinput.FLOW_HIDDEN_SECONDS.inc(hidden)

    async def _admit(self, job: Job, first: bool) -> None:
        """The scheduler's admission; a later frame refused for capacity waits for room."""
        scheduler = self.service.scheduler
        assert scheduler is not None
        give_up = time.monotonic() + ADMIT_RETRY_SECONDS
        while True:
            try:
                scheduler.admit(job)
                return
            except (QueueFull, ClientQuota) as exc:
                if first or time.monotonic() >= give_up:
                    raise
                await asyncio.sleep(exc.retry_after or 1.0)
            except Draining:
                raise Stopped(StopReason.SHUTDOWN) from None


async def stylize_video(service: StyleTransferService, context: calls.Context) -> None:
    """The StylizeVideo handler: the gate of open calls, the call, its status."""
    client = "?"
    entered = False
    videoinput.VIDEO_CALLS.inc()
    try:
        client = service.auth.client_of(context.invocation_metadata(), context.peer())
        service._ready()
        service.gate.enter(client)
        entered = True
        await VideoCall(service, context).run()
    except calls.ClientGone:
        log.info("video call ended by its client", extra={"fields": {"client": client, "code": str(gone(context))}})
    except Exception as exc:
        if not isinstance(exc, StylizeError):
            log.exception("video call failed", extra={"fields": {"client": client}})
        await context.abort_with_status(status_for(exc).grpc_status())
    finally:
        videoinput.VIDEO_CALLS.dec()
        if entered:
            service.gate.leave(client)
