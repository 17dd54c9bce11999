"""The two log lines of a job's call: "job started" when its slot is taken,
"job ended" when the call ends, with what a person investigating a call needs
(the client's name, request id, sizes, waits, iterations, stop reason,
status). A call whose client went away while its job went on (detached: the
client may reattach by request_id) ends with "call detached" and the code
DETACHED, not CANCELLED. Values go into fields, never into the message, so no
request field can forge a log field. The client is its token's name or its
peer's host, never a token."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from stylize_server.job.types import StopReason
from stylize_server.serving.jobs import Job, Subscriber
from stylize_server.wire.output import Output

log = logging.getLogger("stylize.jobs")


@dataclass
class CallRecord:
    """What one Stylize call did, for its log line and its metrics."""

    client: str = ""
    request_id: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: str = ""
    message: str = ""
    job: Job | None = None
    subscriber: Subscriber | None = None
    output: Output | None = None
    detached: bool = False  # the client went away and the job went on without this stream

    @property
    def outcome(self) -> str:
        """The call's end in stylize_requests_total{code} and its log line: the
        gRPC status code's name, or DETACHED."""
        return DETACHED if self.detached else self.code.name


DETACHED = "DETACHED"


def went_on_without(call: CallRecord) -> bool:
    """The call ended because its client went away, and its job did not stop
    for it: still queued or running for another stream or a reattach, or
    ended OK with its result kept under its request_id."""
    job = call.job
    if job is None or call.code is not grpc.StatusCode.CANCELLED:
        return False
    if job.stop_reason in (StopReason.CLIENT, StopReason.DEADLINE):  # stopped for its caller: a cancel
        return False
    return job.outcome is None or (job.reattachable and isinstance(job.outcome, Output))


def log_start(job: Job) -> None:
    height, width = job.output_shape
    fields = {
        "client": job.client,
        "request_id": job.request_id,
        "width": width,
        "height": height,
        "styles": len(job.head.shapes.styles),
        "iterations": job.options.iterations,
        "optimizer": job.options.optimizer.value,
        "queue_wait_s": round(job.queue_wait, 4),
        "estimate_bytes": job.estimate.device_memory_bytes,
        "estimate_s": round(job.estimate.seconds, 3),
        "tiles": max(s.tiles for s in job.estimate.scales),
    }
    log.info("job started", extra={"fields": fields})


def log_end(call: CallRecord, seconds: float) -> None:
    fields: dict[str, object] = {
        "client": call.client,
        "request_id": call.request_id,
        "code": call.outcome,
        "seconds": round(seconds, 4),
    }
    if call.reason:
        fields.update(reason=call.reason, message=call.message)
    job = call.job
    if job is not None:
        height, width = job.output_shape
        fields.update(
            width=width,
            height=height,
            iterations_requested=job.total_iterations,
            queue_wait_s=round(job.queue_wait, 4),
            iterations_done=job.iterations_done,
            stop_reason=(job.stop_reason or StopReason.NONE).value,
            reattached=bool(call.subscriber is not None and call.subscriber.reattached),
        )
        if job.started_at is not None and job.finished_at is not None:
            fields["compute_s"] = round(job.finished_at - job.started_at, 4)
    if call.output is not None:
        fields.update(loss_total=call.output.losses.total, complete=call.output.complete, bytes=call.output.nbytes)
    level = logging.ERROR if call.code is grpc.StatusCode.INTERNAL else logging.INFO
    log.log(level, "call detached" if call.detached else "job ended", extra={"fields": fields})
