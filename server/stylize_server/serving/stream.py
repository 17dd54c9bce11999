"""The frames of one Stylize call: a job's events, as its subscriber sees
them, turned into response frames and written with a send timeout, until the
job's result (or its error). Previews are rendered on the encode executor,
once per job and shared by its streams (`Job.frames`), never on the loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.errors import Stopped
from stylize_server.job.types import ModelInfo, Progress, StopReason
from stylize_server.serving import calllog, calls, frames, metrics
from stylize_server.serving.jobs import InQueue, Job, OnDevice, Subscriber
from stylize_server.wire import admission
from stylize_server.wire.output import Output, result_frames


@dataclass(frozen=True)
class StreamSettings:
    send_timeout: float  # --send-timeout-seconds
    max_message_bytes: int  # result chunks fit it
    encode: concurrent.futures.Executor  # previews are rendered there
    model: Callable[[], ModelInfo | None]  # the loaded model, for the `started` frame


async def send_frames(
    job: Job, subscriber: Subscriber, head: admission.RequestHead, context: calls.Context, settings: StreamSettings
) -> Output:
    """Send the job's frames until its result; raise its error. `head` is
    this call's: a reattached call has its own progress and preview settings."""
    delivery = head.delivery
    timeout = settings.send_timeout
    loop = asyncio.get_running_loop()
    while True:
        event = await subscriber.get()
        if isinstance(event, InQueue):
            queued = pb.Queued(position=event.position, queue_depth=event.depth)
            await calls.send(context, pb.StylizeResponse(queued=queued), timeout)
        elif isinstance(event, OnDevice):
            if not subscriber.reattached:
                calllog.log_start(job)
            started = frames.started_frame(job, settings.model(), event.queue_wait, subscriber.reattached)
            await calls.send(context, started, timeout)
        elif isinstance(event, Progress):
            progress = event
            last = progress.iteration == progress.total_iterations
            if progress.iteration % delivery.progress_interval and not last:
                continue
            # A preview that a newer one already supersedes is not worth encoding.
            side = 0 if subscriber.newer_waiting(Progress) else delivery.preview_max_side
            if side:  # rendering and encoding the image is the only costly part: once per job
                render = functools.partial(_render, settings.encode, loop, job, progress, side)
                frame = await asyncio.shield(job.frames.frame(progress, side, render))
            else:
                frame = frames.progress_frame(job, progress, 0)
            await calls.send(context, frame, timeout)
        else:
            outcome = event.outcome
            if not isinstance(outcome, Output):
                raise outcome
            for chunk in result_frames(outcome, job.request_id, job.queue_wait, settings.max_message_bytes):
                await calls.send(context, chunk, timeout)
            return outcome


def _render(
    encode: concurrent.futures.Executor, loop: asyncio.AbstractEventLoop, job: Job, progress: Progress, side: int
) -> asyncio.Future[pb.StylizeResponse]:
    metrics.PREVIEW_RENDERS.inc()
    return loop.run_in_executor(encode, frames.progress_frame, job, progress, side)


def gone(context: calls.Context) -> grpc.StatusCode:
    """How a call whose client left ended."""
    return grpc.StatusCode.DEADLINE_EXCEEDED if calls.deadline_passed(context) else grpc.StatusCode.CANCELLED


def stopped(job: Job) -> Stopped:
    """The error a stream of a job stopped before its result ends with."""
    reason = job.stop_reason or StopReason.CLIENT
    if reason is StopReason.DEADLINE:
        return Stopped(
            reason,
            f"the call's deadline passed after {time.monotonic() - job.submitted_at:.1f} s; the job was stopped "
            f"after {job.iterations_done} of {job.total_iterations} iterations",
        )
    if reason is StopReason.SHUTDOWN:
        return Stopped(reason, "the server is shutting down; the queued job was not started")
    if reason is StopReason.TIME_LIMIT:
        return Stopped(reason, "the server's time limit per job (--max-job-seconds) passed before it began")
    return Stopped(StopReason.CLIENT, "the client cancelled the call; the job was stopped")
