"""The StyleTransfer servicer on grpc.aio: admission of a Stylize call, in
order of cost, and the stream of one job's frames.

Admission refuses as early and as cheaply as it can, and decodes nothing
before the job is admitted:

    draining / loading -> open calls of the client (CLIENT_CALL_LIMIT) and of the
    pod (CALL_LIMIT) -> read the request (RECEIVE_TIMEOUT)
    -> a full pod (QUEUE_FULL) -> headers and options (admission.read_request)
    -> request_id in use among the caller's (`ownership`): attach (JOB_STREAM_LIMIT), replay a kept
       outcome, or REQUEST_ID_IN_USE
    -> cost model and budget (TOO_LARGE) -> time per job (OVER_TIME_LIMIT)
    -> per-client quota (CLIENT_QUOTA)
    -> the fair queue (QUEUE_FULL) -> decode (bounded executor) -> run

A stream is a `Subscriber` of its job: the frames it sends are rendered on the
encode executor (previews, results), never on the loop, and written with a
send timeout; a preview is rendered once per job and shared by its streams.
A job with a client-chosen request_id (and, without auth, a job secret:
`ownership`) outlives a lost stream by `--detach-grace-seconds` (the call
counts as DETACHED); without one it stops at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from dataclasses import dataclass

import grpc
from grpc import aio

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.config import ServerConfig
from stylize_server.job.errors import Draining, InternalError, Loading, NotFound, RequestIdInUse, Stopped, StylizeError
from stylize_server.job.plan import JobPlan, plan_job
from stylize_server.job.port import EnginePort
from stylize_server.job.types import Result, StopReason
from stylize_server.serving import calllog, calls, metrics, ownership, stream, video, videoinput
from stylize_server.serving.auth import Authenticator
from stylize_server.serving.calllog import CallRecord
from stylize_server.serving.info import server_info
from stylize_server.serving.jobs import Finished, Job, JobState, Outcome
from stylize_server.serving.registry import Registry
from stylize_server.serving.scheduler import Scheduler
from stylize_server.wire import admission
from stylize_server.wire.output import encode_output
from stylize_server.wire.status import status_for

log = logging.getLogger("stylize.jobs")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["StyleTransfer"].full_name  # "stylize.v1.StyleTransfer"


@dataclass
class Pools:
    """The executors the loop hands blocking work to."""

    engine: concurrent.futures.ThreadPoolExecutor  # engine.run: one thread per slot
    decode: concurrent.futures.ThreadPoolExecutor  # --max-concurrent-decodes
    encode: concurrent.futures.ThreadPoolExecutor  # previews, results, fingerprints

    def shutdown(self) -> None:
        for pool in (self.engine, self.decode, self.encode):
            pool.shutdown(wait=False, cancel_futures=True)


class StyleTransferService:
    def __init__(self, config: ServerConfig, pools: Pools, authenticator: Authenticator) -> None:
        self.config = config
        self.pools = pools
        self.auth = authenticator
        self.gate = calls.CallGate(config.max_open_calls, config.max_calls_per_client, config.call_reserve)
        self.registry = Registry(config.result_store_bytes, config.result_retention_seconds)
        self.videos = videoinput.VideoStore(config.result_store_bytes, config.result_retention_seconds)
        self.engine: EnginePort | None = None
        self.scheduler: Scheduler | None = None
        self.draining = False

    @property
    def _stream_settings(self) -> stream.StreamSettings:
        return stream.StreamSettings(
            send_timeout=self.config.send_timeout_seconds,
            max_message_bytes=self.config.max_message_bytes,
            encode=self.pools.encode,
            model=lambda: self.engine.model_info if self.engine is not None else None,
        )

    def attach_engine(self, engine: EnginePort, budget_bytes: int) -> Scheduler:
        """The model is loaded: jobs may run (loop)."""
        cfg = self.config
        self.engine = engine
        self.scheduler = Scheduler(
            engine,
            self.pools.engine,
            prepare=self._prepare,
            finish=self._finish,
            max_concurrent=cfg.max_concurrent_jobs,
            queue_size=cfg.queue_size,
            max_jobs_per_client=cfg.max_jobs_per_client,
            budget_bytes=budget_bytes,
            max_job_seconds=cfg.max_job_seconds,
        )
        return self.scheduler

    def _ready(self) -> tuple[Scheduler, EnginePort]:
        if self.draining:
            raise Draining("the server is shutting down")
        if self.scheduler is None or self.engine is None:
            raise Loading("the server is still loading the model")
        return self.scheduler, self.engine

    # ------------------------------------------------------------ Stylize
    async def Stylize(self, request_iterator: object, context: calls.Context) -> None:
        t0 = time.monotonic()
        call = CallRecord()
        entered = False
        try:
            # Counted from the metadata (the interceptor checked the token), before the request is read.
            call.client = client = self.auth.client_of(context.invocation_metadata(), context.peer())
            scheduler, engine = self._ready()
            self.gate.enter(client)
            entered = True
            request = await calls.receive(context, self.config.request_receive_seconds, pb.StylizeRequest)
            call.request_id = request.request_id
            owner = ownership.owner_of(self.auth.enabled, client, context.invocation_metadata())
            if not (request.request_id and owner and self.registry.find((owner, request.request_id))):
                scheduler.check_room()  # a reattaching call needs no room
            head = admission.read_request(request, self.config.limits)
            await self._admit(request, head, client, context, scheduler, engine, call, owner=owner)
            del request  # a queued job keeps its own reference until its images are decoded
            assert call.job is not None and call.subscriber is not None
            call.output = await stream.send_frames(call.job, call.subscriber, head, context, self._stream_settings)
        except asyncio.CancelledError:
            call.code = stream.gone(context)
            raise
        except calls.ClientGone:
            call.code = stream.gone(context)  # nobody to tell: no status is sent
        except Exception as exc:
            if not isinstance(exc, StylizeError):
                log.exception(
                    "request failed", extra={"fields": {"client": call.client, "request_id": call.request_id}}
                )
            reply = status_for(exc)
            call.code, call.reason, call.message = reply.code, reply.reason.value, reply.message
            ran = call.job is not None and call.job.iterations_done > 0
            if reply.with_details and not ran and reply.reason.value in metrics.REFUSAL_REASONS:
                metrics.REFUSALS.labels(reason=reply.reason.value).inc()
            self._end_call(call, context, t0, entered)
            entered = False
            await context.abort_with_status(reply.grpc_status())
        finally:
            if entered:
                self._end_call(call, context, t0, entered)

    def _end_call(self, call: CallRecord, context: calls.Context, t0: float, entered: bool) -> None:
        if entered:
            self.gate.leave(call.client)
        job, subscriber = call.job, call.subscriber
        if job is not None and subscriber is not None:
            job.unsubscribe(subscriber)
            if job.state is not JobState.DONE and not job.subscribers:
                self._orphaned(job, calls.deadline_passed(context))
            call.detached = calllog.went_on_without(call)
        metrics.REQUESTS.labels(code=call.outcome).inc()
        calllog.log_end(call, time.monotonic() - t0)

    async def _admit(
        self,
        request: pb.StylizeRequest,
        head: admission.RequestHead,
        client: str,
        context: calls.Context,
        scheduler: Scheduler,
        engine: EnginePort,
        call: CallRecord,
        *,
        owner: str | None,
    ) -> None:
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        # Without a namespace (`ownership`: no auth, no job secret) a job is kept where nobody can find it.
        chosen = bool(head.delivery.request_id) and owner is not None
        call.request_id = head.delivery.request_id or uuid.uuid4().hex[:16]
        key = (owner or ownership.private_owner(client), call.request_id)
        fingerprint = ""
        if chosen:
            loop = asyncio.get_running_loop()
            fingerprint = await loop.run_in_executor(self.pools.encode, admission.fingerprint, request, head)
            if self._reattach(key, fingerprint, deadline, call):
                return
        # From here to registry.add nothing awaits: no other call can take this
        # request_id in between, so the check above holds until the job is kept.
        engine.check_options(head.options)
        # The one resolve and estimate of this job: everything after reads it.
        plan = plan_job(
            head.options,
            head.shapes,
            head.delivery.accept_partial,
            head.regions,
            engine,
            scheduler.budget_bytes,
            self.config,
        )
        job = Job(
            client=client,
            request_id=call.request_id,
            reattachable=chosen,
            fingerprint=fingerprint,
            head=head,
            plan=plan,
            request=request,
            style_regions=head.style_regions,
            deadline=deadline,
            owner=key[0],
        )
        call.subscriber = job.subscribe()
        scheduler.admit(job)  # raises ClientQuota / QueueFull before anything is kept
        call.job = job
        self.registry.add(job)
        metrics.JOB_ESTIMATED_MEMORY.observe(plan.estimate.device_memory_bytes)
        metrics.JOB_ESTIMATED_SECONDS.observe(plan.estimate.seconds)

    def _reattach(self, key: tuple[str, str], fingerprint: str, deadline: float | None, call: CallRecord) -> bool:
        """Attach the call to the live or kept job under `key`, if there is one."""
        found = self.registry.find(key)
        if found is None:
            return False
        if found.fingerprint != fingerprint:
            raise RequestIdInUse(
                f"request_id {key[1]!r} belongs to another request of this client (running, or kept for "
                f"{self.config.result_retention_seconds:g} s after it ended); send it with a new request_id"
            )
        if found.state is not JobState.DONE:
            found.deadline = deadline
        call.job, call.subscriber = found, found.subscribe(reattached=True, limit=self.config.max_streams_per_job)
        return True

    def _orphaned(self, job: Job, past_deadline: bool) -> None:
        """The last stream of a queued or running job is gone."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        if past_deadline:
            scheduler.stop(job, StopReason.DEADLINE)
        elif job.reattachable and not self.draining and self.config.detach_grace_seconds > 0:
            loop = asyncio.get_running_loop()
            job.detach_timer = loop.call_later(self.config.detach_grace_seconds, self._detach_expired, job)
            fields = {"client": job.client, "request_id": job.request_id, "grace_s": self.config.detach_grace_seconds}
            log.info("job detached", extra={"fields": fields})
        else:
            scheduler.stop(job, StopReason.CLIENT)

    def _detach_expired(self, job: Job) -> None:
        job.detach_timer = None
        if not job.subscribers and job.state is not JobState.DONE and self.scheduler is not None:
            log.info("detached job stopped", extra={"fields": {"client": job.client, "request_id": job.request_id}})
            self.scheduler.stop(job, StopReason.CLIENT)

    # ------------------------------------------------------ job callbacks
    async def _prepare(self, job: Job) -> JobPlan:
        """Decode the job's images (decode executor), stopping between images if asked."""
        if job.inputs is not None:  # a video frame, decoded by its call (serving/video.py)
            inputs, job.inputs = job.inputs, None
            return job.plan.with_inputs(inputs)
        request = job.request
        assert request is not None
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(
            self.pools.decode,
            admission.decode_inputs,
            request,
            job.head,
            self.config.limits,
            lambda: job.stop_reason is not None,
        )
        job.request = None
        if decoded is None:
            raise Stopped(job.stop_reason or StopReason.CLIENT)
        inputs, job.alpha = decoded
        return job.plan.with_inputs(inputs)

    async def _finish(self, job: Job, result: Result | None, error: BaseException | None) -> None:
        outcome: Outcome
        stopped_for_caller = result is not None and result.stop_reason in (StopReason.CLIENT, StopReason.DEADLINE)
        if isinstance(error, Stopped) or (error is None and (result is None or stopped_for_caller)):
            outcome = stream.stopped(job)
        elif error is not None:
            outcome = error if isinstance(error, StylizeError) else InternalError(error)
        else:
            assert result is not None
            if job.on_result is not None:
                job.on_result(result)
            loop = asyncio.get_running_loop()
            try:
                outcome = await loop.run_in_executor(self.pools.encode, encode_output, result, job.alpha, job.delivery)
            except Exception as exc:
                fields = {"client": job.client, "request_id": job.request_id}
                log.exception("encoding the result failed", extra={"fields": fields})
                outcome = InternalError(exc)
        job.request, job.alpha = None, None  # the images are no longer needed
        job.plan = job.plan.with_inputs(None)
        job.publish(Finished(outcome))
        self.registry.finished(job)

    # -------------------------------------------------------- StylizeVideo
    async def StylizeVideo(self, request_iterator: object, context: calls.Context) -> None:
        await video.stylize_video(self, context)

    # -------------------------------------------------- Cancel, ServerInfo
    async def Cancel(self, request_iterator: object, context: calls.Context) -> pb.CancelResponse:
        try:
            request = await calls.receive(context, self.config.request_receive_seconds, pb.CancelRequest)
            client = self.auth.client_of(context.invocation_metadata(), context.peer())
            owner = ownership.owner_of(self.auth.enabled, client, context.invocation_metadata())
            job = self.registry.find((owner, request.request_id)) if owner is not None else None
            if job is None:  # the same answer for "not yours" as for "no such job"
                hint = ownership.NO_SECRET_HINT if owner is None else ""
                raise NotFound(
                    f"this client has no job with request_id {request.request_id!r}{hint}", field="request_id"
                )
            stopped = self.scheduler is not None and self.scheduler.stop(job, StopReason.CLIENT)
        except StylizeError as exc:
            await context.abort_with_status(status_for(exc).grpc_status())
            raise  # unreachable: abort raises
        if stopped:
            log.info("job cancelled", extra={"fields": {"client": client, "request_id": request.request_id}})
        return pb.CancelResponse(stopped=stopped)

    async def GetServerInfo(self, request_iterator: object, context: calls.Context) -> pb.ServerInfo:
        try:
            await calls.receive(context, self.config.request_receive_seconds, pb.GetServerInfoRequest)
        except StylizeError as exc:
            await context.abort_with_status(status_for(exc).grpc_status())
            raise
        return server_info(self.config, self.engine, self.scheduler, self.gate)


def add_to_server(service: StyleTransferService, server: aio.Server) -> None:
    """Register the service with streaming requests (see `calls`)."""
    handlers: dict[str, calls.MethodHandler] = {
        "Stylize": calls.unary_request(service.Stylize, pb.StylizeRequest, pb.StylizeResponse, stream=True),
        "GetServerInfo": calls.unary_request(
            service.GetServerInfo, pb.GetServerInfoRequest, pb.ServerInfo, stream=False
        ),
        "Cancel": calls.unary_request(service.Cancel, pb.CancelRequest, pb.CancelResponse, stream=False),
        "StylizeVideo": calls.unary_request(service.StylizeVideo, pb.VideoRequest, pb.VideoResponse, stream=True),
    }
    declared = set(pb.DESCRIPTOR.services_by_name["StyleTransfer"].methods_by_name)
    if set(handlers) != declared:
        raise RuntimeError(f"StyleTransfer methods {sorted(declared)} != handlers {sorted(handlers)}")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
