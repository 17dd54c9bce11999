"""The StyleTransfer servicer: a thin layer between gRPC and the scheduler.

It owns three things:

* `status_for`, the one place where the server's typed errors become gRPC
  status codes and messages;
* the per-call `FrameQueue` between the engine's thread and the call's
  handler thread. The engine only appends (never blocks); consecutive
  `queued` or `progress` items are coalesced (only the newest is kept), so a
  slow client costs progress frames, never optimization time, and never the
  `started` frame or the result. Previews are rendered and encoded on the
  handler thread, and skipped when a newer progress frame is already waiting;
* cancellation: the call's done-callback stops the job (client gone, or the
  deadline passed), and the call's deadline is handed to the scheduler so the
  job stops within one iteration of it.
"""
from __future__ import annotations

import collections
import importlib.metadata
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import grpc

from stylize.v1 import stylize_pb2 as pb
from stylize.v1 import stylize_pb2_grpc as pb_grpc

from . import convert, metrics
from .errors import (
    Cancelled,
    DeadlineExceeded,
    InvalidArgument,
    NumericalError,
    QueueFull,
    StylizeError,
    TooLarge,
    Unavailable,
    WeightsError,
)
from .options import JobOptions, Limits, Pooling
from .scheduler import Scheduler

log = logging.getLogger("stylize.jobs")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StyleTransfer"].full_name  # "stylize.v1.StyleTransfer"

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (QueueFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Cancelled, grpc.StatusCode.CANCELLED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (WeightsError, grpc.StatusCode.UNAVAILABLE),
    (NumericalError, grpc.StatusCode.INTERNAL),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and message a caller gets for an exception."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            message = str(exc) or kind.__name__
            if isinstance(exc, NumericalError):
                message = (
                    f"numerical failure: {message}. Lower the learning rate or the style/TV weights, "
                    f"or use the L-BFGS optimizer"
                )
            return code, message
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server log has the details"


def server_version() -> str:
    try:
        return importlib.metadata.version("stylize")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class FrameQueue:
    """Engine thread -> handler thread. Never blocks the producer; bounded
    because runs of `queued` or `progress` items collapse to the newest one."""

    _COALESCE = frozenset({"queued", "progress"})

    def __init__(self) -> None:
        self._items: collections.deque[tuple[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self.coalesced = 0

    def put(self, kind: str, payload: Any) -> None:
        with self._cond:
            if kind in self._COALESCE and self._items and self._items[-1][0] == kind:
                self._items[-1] = (kind, payload)
                self.coalesced += 1
            else:
                self._items.append((kind, payload))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()

    def newer_waiting(self, kind: str) -> bool:
        """Whether an item of `kind` is already waiting behind the one taken."""
        with self._cond:
            return any(k == kind for k, _ in self._items)


class _Events:
    """JobEvents of one call: everything goes into its FrameQueue."""

    def __init__(self, frames: FrameQueue) -> None:
        self._frames = frames

    def queued(self, position: int, depth: int) -> None:
        self._frames.put("queued", (position, depth))

    def started(self, queue_wait: float) -> None:
        self._frames.put("started", queue_wait)

    def progress(self, progress: Any) -> None:
        self._frames.put("progress", progress)

    def finished(self, result: Any | None, error: BaseException | None) -> None:
        self._frames.put("finished", (result, error))


@dataclass
class ServiceState:
    """What the servicer needs from the Server; `scheduler` is None while loading."""

    limits: Limits
    max_message_bytes: int
    scheduler: Scheduler | None = None
    engine: Any | None = None
    default_pooling: Pooling = Pooling.AVG
    draining: bool = False


class StyleTransferServicer(pb_grpc.StyleTransferServicer):
    def __init__(self, state: ServiceState) -> None:
        self._state = state

    # ------------------------------------------------------------ Stylize
    def Stylize(self, request: pb.StylizeRequest, context: grpc.ServicerContext) -> Iterator[pb.StylizeResponse]:
        t0 = time.monotonic()
        outcome = {"code": grpc.StatusCode.OK, "message": "", "request_id": request.request_id, "job": None}
        options: JobOptions | None = None
        try:
            scheduler = self._ready_scheduler()
            scheduler.check_room()  # a full pod answers before decoding any image
            options = convert.request_to_options(request, self._state.limits)
            outcome["request_id"] = options.request_id
            yield from self._run_job(options, scheduler, context, outcome)
        except StylizeError as exc:
            code, message = status_for(exc)
            outcome["code"], outcome["message"] = code, message
        except Exception as exc:  # noqa: BLE001 - a bug must become INTERNAL, not a dropped stream
            log.exception("request %s failed", outcome["request_id"])
            outcome["code"], outcome["message"] = status_for(exc)
        finally:
            # GeneratorExit (client gone while we were yielding) lands here too.
            self._log_end(options, outcome, time.monotonic() - t0, context)
        if outcome["code"] is not grpc.StatusCode.OK:
            context.abort(outcome["code"], outcome["message"])

    def _ready_scheduler(self) -> Scheduler:
        state = self._state
        if state.draining:
            raise Unavailable("the server is shutting down; retry on another replica")
        if state.scheduler is None:
            raise Unavailable("the server is still loading the model; retry shortly")
        return state.scheduler

    def _run_job(
        self, options: JobOptions, scheduler: Scheduler, context: grpc.ServicerContext, outcome: dict
    ) -> Iterator[pb.StylizeResponse]:
        frames = FrameQueue()
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        job = scheduler.submit(options, _Events(frames), deadline)
        outcome["job"] = job

        def on_done() -> None:
            # Runs when the call ends for any reason; a finished job ignores it.
            past_deadline = deadline is not None and time.monotonic() >= deadline - 0.05
            scheduler.cancel(job, "deadline" if past_deadline else "client")

        if not context.add_callback(on_done):
            on_done()  # the call had already ended
        height, width = options.output_shape
        preview_side = options.preview_max_side
        while True:
            item = frames.get()
            assert item is not None
            kind, payload = item
            if kind == "queued":
                position, depth = payload
                yield pb.StylizeResponse(queued=pb.Queued(position=position, queue_depth=depth))
            elif kind == "started":
                self._log_start(options, width, height, payload)
                yield pb.StylizeResponse(
                    started=pb.Started(
                        request_id=options.request_id,
                        width=width,
                        height=height,
                        options=convert.resolved_to_proto(options, self._state.default_pooling),
                        queue_wait_seconds=payload,
                    )
                )
            elif kind == "progress":
                # A preview that a newer one already supersedes is not worth encoding.
                side = 0 if frames.newer_waiting("progress") else preview_side
                yield pb.StylizeResponse(progress=convert.progress_to_proto(payload, side))
            else:
                result, error = payload
                if error is not None:
                    raise error
                frame = convert.result_to_proto(result, options, job.queue_wait)
                outcome["result"] = result
                yield pb.StylizeResponse(result=frame)
                return

    def _log_start(self, options: JobOptions, width: int, height: int, queue_wait: float) -> None:
        log.info(
            "job started",
            extra={
                "fields": {
                    "request_id": options.request_id,
                    "width": width,
                    "height": height,
                    "styles": len(options.styles),
                    "iterations": options.iterations,
                    "optimizer": options.optimizer.value,
                    "queue_wait_s": round(queue_wait, 4),
                }
            },
        )

    def _log_end(self, options: JobOptions | None, outcome: dict, seconds: float, context) -> None:
        code: grpc.StatusCode = outcome["code"]
        if code is grpc.StatusCode.OK and outcome.get("result") is None:
            # The generator was closed early: the client went away mid-stream.
            job = outcome.get("job")
            reason = job.stop_reason if job is not None else None
            code = grpc.StatusCode.DEADLINE_EXCEEDED if reason == "deadline" else grpc.StatusCode.CANCELLED
            outcome["code"] = code
            outcome["closed"] = True
        metrics.REQUESTS.labels(code=code.name).inc()
        job = outcome.get("job")
        result = outcome.get("result")
        fields: dict[str, object] = {
            "request_id": outcome["request_id"],
            "code": code.name,
            "seconds": round(seconds, 4),
        }
        if options is not None:
            h, w = options.output_shape
            fields.update(width=w, height=h, iterations_requested=options.iterations)
        if job is not None:
            fields.update(
                queue_wait_s=round(job.queue_wait, 4),
                iterations_done=job.iterations_done,
                stop_reason=job.stop_reason,
            )
            if job.started_at is not None and job.finished_at is not None:
                fields["compute_s"] = round(job.finished_at - job.started_at, 4)
        if result is not None:
            fields["loss_total"] = float(result.losses.total)
        if outcome["message"]:
            fields["message"] = outcome["message"]
        level = logging.ERROR if code is grpc.StatusCode.INTERNAL else logging.INFO
        log.log(level, "job ended", extra={"fields": fields})

    # ------------------------------------------------------ GetServerInfo
    def GetServerInfo(self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:
        state = self._state
        limits = state.limits
        info = pb.ServerInfo(
            version=server_version(),
            limits=pb.Limits(
                max_pixels=limits.max_pixels,
                max_side=limits.max_side,
                max_iterations=limits.max_iterations,
                max_styles=limits.max_styles,
                max_message_bytes=state.max_message_bytes,
                max_input_pixels=limits.max_input_pixels,
            ),
            defaults=convert.resolved_to_proto(convert.default_options(), state.default_pooling),
        )
        engine = state.engine
        if engine is not None:
            model = engine.model_info
            info.model.CopyFrom(
                pb.ModelInfo(
                    name=model.name,
                    weights_source=str(model.weights_source),
                    random_weights=bool(model.random_weights),
                    default_pooling=convert.pooling_to_proto(model.default_pooling),
                    load_seconds=float(model.load_seconds),
                )
            )
            memory = engine.device_memory_bytes()
            info.device.CopyFrom(
                pb.DeviceInfo(kind=model.device_kind, name=model.device_name, memory_bytes=int(memory or 0))
            )
        scheduler = state.scheduler
        if scheduler is not None:
            info.queue.CopyFrom(
                pb.QueueInfo(
                    max_concurrent_jobs=scheduler.max_concurrent,
                    capacity=scheduler.queue_size,
                    depth=scheduler.depth,
                    running=scheduler.running,
                )
            )
        return info


def add_to_server(servicer: StyleTransferServicer, server: grpc.Server) -> None:
    pb_grpc.add_StyleTransferServicer_to_server(servicer, server)

