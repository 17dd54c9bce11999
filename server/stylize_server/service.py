"""The StyleTransfer servicer: a thin layer between gRPC and the scheduler.

It owns two things (errors become statuses in `status`):

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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from stylize import schema
from stylize.schema import StopReason
from stylize.v1 import stylize_pb2 as pb
from stylize.v1 import stylize_pb2_grpc as pb_grpc

from . import admission, convert, cost, images, metrics
from .delivery import DeliveryOptions
from .errors import Draining, Loading, NotFound, StylizeError
from .options import JobOptions, Limits, Pooling, resolve
from .plan import JobPlan
from .scheduler import Job, Scheduler
from .status import status_for
from .types import Progress, Result

log = logging.getLogger("stylize.jobs")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StyleTransfer"].full_name  # "stylize.v1.StyleTransfer"


def server_version() -> str:
    try:
        return importlib.metadata.version("stylize-grpc")
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

    def progress(self, progress: Progress) -> None:
        self._frames.put("progress", progress)

    def finished(self, result: Result | None, error: BaseException | None) -> None:
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
        outcome: dict[str, Any] = {
            "code": grpc.StatusCode.OK,
            "reply": None,
            "request_id": request.request_id,
            "job": None,
        }
        try:
            scheduler, engine = self._ready()
            scheduler.check_room()  # a full pod answers before reading any image
            head = admission.read_request(request, self._state.limits)  # headers only
            inputs, _alpha = admission.decode_inputs(request, head, self._state.limits)
            plan = engine.plan(head.options, inputs, limits=self._state.limits)
            delivery = head.delivery.replace(request_id=head.delivery.request_id or uuid.uuid4().hex[:16])
            outcome["request_id"] = delivery.request_id
            yield from self._run_job(plan, delivery, scheduler, context, outcome)
        except Exception as exc:
            if not isinstance(exc, StylizeError):
                log.exception("request %s failed", outcome["request_id"])
            reply = status_for(exc)
            outcome["code"], outcome["reply"] = reply.code, reply
        finally:
            # GeneratorExit (client gone while we were yielding) lands here too.
            self._log_end(outcome, time.monotonic() - t0)
        if outcome["reply"] is not None:
            context.abort_with_status(outcome["reply"].grpc_status())

    def _ready(self) -> tuple[Scheduler, Any]:
        state = self._state
        if state.draining:
            raise Draining("the server is shutting down")
        if state.scheduler is None or state.engine is None:
            raise Loading("the server is still loading the model")
        return state.scheduler, state.engine

    def _run_job(
        self,
        plan: JobPlan,
        delivery: DeliveryOptions,
        scheduler: Scheduler,
        context: grpc.ServicerContext,
        outcome: dict[str, Any],
    ) -> Iterator[pb.StylizeResponse]:
        frames = FrameQueue()
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        job = scheduler.submit(plan, delivery, _Events(frames), deadline)
        outcome["job"] = job

        def on_done() -> None:
            # Runs when the call ends for any reason; a finished job ignores it.
            past_deadline = deadline is not None and time.monotonic() >= deadline - 0.05
            scheduler.cancel(job, StopReason.DEADLINE if past_deadline else StopReason.CLIENT)

        if not context.add_callback(on_done):
            on_done()  # the call had already ended
        height, width = plan.output_shape
        engine = self._state.engine
        while True:
            item = frames.get()
            assert item is not None
            kind, payload = item
            if kind == "queued":
                position, depth = payload
                yield pb.StylizeResponse(queued=pb.Queued(position=position, queue_depth=depth))
            elif kind == "started":
                self._log_start(job, width, height, payload)
                yield pb.StylizeResponse(
                    started=pb.Started(
                        request_id=delivery.request_id,
                        width=width,
                        height=height,
                        options=_resolved(plan, delivery),
                        queue_wait_seconds=payload,
                        estimate=convert.estimate_to_proto(plan.estimate),
                        random_weights=bool(engine is not None and engine.model_info.random_weights),
                    )
                )
            elif kind == "progress":
                progress: Progress = payload
                last = progress.iteration == progress.total_iterations
                if progress.iteration % delivery.progress_interval and not last:
                    continue
                # A preview that a newer one already supersedes is not worth encoding.
                side = 0 if frames.newer_waiting("progress") else delivery.preview_max_side
                preview = images.shrink(progress.image, side) if side else None
                png = images.encode(preview, "png") if preview is not None else None
                eta = _eta(plan, progress)
                yield pb.StylizeResponse(progress=convert.progress_to_proto(progress, eta, preview, png))
            else:
                result, error = payload
                if error is not None:
                    raise error
                outcome["result"] = result
                yield pb.StylizeResponse(result=_result_frame(result, delivery, job))
                return

    def _log_start(self, job: Job, width: int, height: int, queue_wait: float) -> None:
        options = job.plan.options
        log.info(
            "job started",
            extra={
                "fields": {
                    "request_id": job.delivery.request_id,
                    "width": width,
                    "height": height,
                    "styles": len(job.plan.inputs.styles),
                    "iterations": options.iterations,
                    "optimizer": options.optimizer.value,
                    "queue_wait_s": round(queue_wait, 4),
                    "estimate_bytes": job.plan.estimate.device_memory_bytes,
                    "estimate_s": round(job.plan.estimate.seconds, 3),
                }
            },
        )

    def _log_end(self, outcome: dict[str, Any], seconds: float) -> None:
        code: grpc.StatusCode = outcome["code"]
        job: Job | None = outcome.get("job")
        result: Result | None = outcome.get("result")
        if code is grpc.StatusCode.OK and result is None:
            # The generator was closed early: the client went away mid-stream.
            reason = job.stop_reason if job is not None else None
            code = grpc.StatusCode.DEADLINE_EXCEEDED if reason is StopReason.DEADLINE else grpc.StatusCode.CANCELLED
        metrics.REQUESTS.labels(code=code.name).inc()
        fields: dict[str, object] = {
            "request_id": outcome["request_id"],
            "code": code.name,
            "seconds": round(seconds, 4),
        }
        reply = outcome.get("reply")
        if reply is not None:
            fields.update(reason=reply.reason.value, message=reply.message)
        if job is not None:
            h, w = job.plan.output_shape
            fields.update(
                width=w,
                height=h,
                iterations_requested=job.plan.total_iterations,
                queue_wait_s=round(job.queue_wait, 4),
                iterations_done=job.iterations_done,
                stop_reason=(job.stop_reason or StopReason.NONE).value,
            )
            if job.started_at is not None and job.finished_at is not None:
                fields["compute_s"] = round(job.finished_at - job.started_at, 4)
        if result is not None:
            fields["loss_total"] = float(result.losses.total)
            fields["complete"] = result.complete
        level = logging.ERROR if code is grpc.StatusCode.INTERNAL else logging.INFO
        log.log(level, "job ended", extra={"fields": fields})

    # ------------------------------------------------------------- Cancel
    def Cancel(self, request: pb.CancelRequest, context: grpc.ServicerContext) -> pb.CancelResponse:
        scheduler = self._state.scheduler
        job = scheduler.find(request.request_id) if scheduler is not None else None
        if job is None:
            reply = status_for(
                NotFound(f"no queued or running job has request_id {request.request_id!r}", field="request_id")
            )
            context.abort_with_status(reply.grpc_status())
        assert scheduler is not None and job is not None
        scheduler.cancel(job, StopReason.CLIENT)
        return pb.CancelResponse(stopped=True)

    # ------------------------------------------------------ GetServerInfo
    def GetServerInfo(self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:
        state = self._state
        limits = state.limits
        defaults = resolve(JobOptions(), state.default_pooling)
        info = pb.ServerInfo(
            version=server_version(),
            limits=pb.Limits(
                max_pixels=limits.max_pixels,
                max_side=limits.max_side,
                max_iterations=limits.max_iterations,
                max_styles=limits.max_styles,
                max_message_bytes=state.max_message_bytes,
                max_input_pixels=limits.max_input_pixels,
                max_request_pixels=limits.max_request_pixels,
            ),
            defaults=convert.resolved_to_proto(defaults, DeliveryOptions()),
        )
        engine = state.engine
        if engine is not None:
            model = engine.model_info
            info.model.CopyFrom(
                pb.ModelInfo(
                    name=model.name,
                    weights_source=str(model.weights_source),
                    random_weights=bool(model.random_weights),
                    default_pooling=schema.BY_NAME["pooling"].enum_number(model.default_pooling),
                    load_seconds=float(model.load_seconds),
                    precision=model.precision,
                    precision_reason=model.precision_reason,
                    xla=model.xla,
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


def _resolved(plan: JobPlan, delivery: DeliveryOptions) -> pb.ResolvedOptions:
    weights = [s.weight for s in plan.inputs.styles]
    total = sum(weights) or 1.0
    return convert.resolved_to_proto(
        plan.options,
        delivery,
        scales=[(s.size, s.iterations) for s in plan.scales],
        blend_weights=[w / total for w in weights],
    )


def _eta(plan: JobPlan, progress: Progress) -> float:
    """Seconds left: the cost model's remaining work, scaled by this job's
    measured speed against the model's prediction so far."""
    done_before = sum(s.iterations for s in plan.scales[: progress.scale_index])
    in_scale = progress.iteration - done_before
    predicted = sum(s.iterations * s.seconds_per_iteration for s in plan.scales[: progress.scale_index])
    predicted += in_scale * plan.scales[progress.scale_index].seconds_per_iteration
    return cost.eta_seconds(plan.estimate, progress.scale_index, in_scale, progress.elapsed_seconds, predicted)


def _result_frame(result: Result, delivery: DeliveryOptions, job: Job) -> pb.Result:
    fmt = delivery.output_format.value
    data = images.encode(result.image, fmt, delivery.quality)
    height, width = result.shape
    return pb.Result(
        image=pb.Image(data=data),
        mime_type=images.MIME_TYPES[fmt],
        width=width,
        height=height,
        losses=convert.losses_to_proto(result.losses),
        iterations=result.iterations,
        iterations_requested=result.iterations_requested,
        queue_wait_seconds=job.queue_wait,
        compute_seconds=result.compute_seconds,
        request_id=delivery.request_id,
        complete=result.complete,
        stop_reason=result.stop_reason.number,
        chunk_index=0,
        chunk_count=1,
        total_bytes=len(data),
        bit_depth=8,
    )


def add_to_server(servicer: StyleTransferServicer, server: grpc.Server) -> None:
    pb_grpc.add_StyleTransferServicer_to_server(servicer, server)
