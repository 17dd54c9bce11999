"""The one place where the server's errors become gRPC statuses: a table of
exception class to status code, and the google.rpc.Status every error carries
(ErrorInfo with its stable reason, BadRequest naming the field, RetryInfo with
the suggested delay). Callers send `StatusReply.grpc_status()` with
`context.abort_with_status`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from stylize_api.schema import DOMAIN, ErrorReason, StopReason
from stylize_server.job.errors import (
    CallLimit,
    Cancelled,
    ClientCallLimit,
    ClientQuota,
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    JobStreamLimit,
    MalformedRequest,
    NotFound,
    NumericalError,
    OverTimeLimit,
    QueueFull,
    ReceiveTimeout,
    RequestIdInUse,
    SendTimeout,
    Stopped,
    StylizeError,
    TooLarge,
    Unauthenticated,
    Unavailable,
)

_CODES: tuple[tuple[type[StylizeError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (MalformedRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (TooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    # Not RESOURCE_EXHAUSTED: nothing frees up by waiting, and generic gRPC
    # retry policies retry that code; the request must change (or accept a
    # partial result) before it can run.
    (OverTimeLimit, grpc.StatusCode.FAILED_PRECONDITION),
    (QueueFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ClientQuota, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CallLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ClientCallLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (JobStreamLimit, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (ReceiveTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Cancelled, grpc.StatusCode.CANCELLED),
    (NumericalError, grpc.StatusCode.INTERNAL),
    (InternalError, grpc.StatusCode.INTERNAL),
    (RequestIdInUse, grpc.StatusCode.ALREADY_EXISTS),
    (NotFound, grpc.StatusCode.NOT_FOUND),
)

# A job stopped with nothing to return: the status its caller gets.
_STOPPED: dict[StopReason, tuple[grpc.StatusCode, ErrorReason]] = {
    StopReason.CLIENT: (grpc.StatusCode.CANCELLED, ErrorReason.CANCELLED),
    StopReason.DEADLINE: (grpc.StatusCode.DEADLINE_EXCEEDED, ErrorReason.DEADLINE),
    StopReason.TIME_LIMIT: (grpc.StatusCode.DEADLINE_EXCEEDED, ErrorReason.DEADLINE),
    StopReason.SHUTDOWN: (grpc.StatusCode.UNAVAILABLE, ErrorReason.DRAINING),
    StopReason.NONE: (grpc.StatusCode.CANCELLED, ErrorReason.CANCELLED),
}


@dataclass(frozen=True)
class StatusReply:
    """A gRPC status with its machine-readable details."""

    code: grpc.StatusCode
    message: str
    reason: ErrorReason
    field: str | None = None
    retry_after: float | None = None
    # False only for a stream the server gave up sending on: it must read as a
    # lost connection (UNAVAILABLE without ErrorInfo), which clients answer by
    # reattaching.
    with_details: bool = True

    def proto(self) -> status_pb2.Status:
        if not self.with_details:
            return status_pb2.Status(code=self.code.value[0], message=self.message)
        details = [
            error_details_pb2.ErrorInfo(
                reason=self.reason.value,
                domain=DOMAIN,
                metadata={"field": self.field} if self.field else {},
            )
        ]
        if self.field:
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.message)
                    ]
                )
            )
        if self.retry_after is not None:
            seconds = max(0.0, self.retry_after)
            whole = math.floor(seconds)
            delay = duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        packed = []
        for detail in details:
            box = any_pb2.Any()
            box.Pack(detail)
            packed.append(box)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)

    def grpc_status(self) -> grpc.Status:
        status: grpc.Status = rpc_status.to_status(self.proto())
        return status


def status_for(exc: BaseException) -> StatusReply:
    """The status a caller gets for `exc`; an unknown exception is INTERNAL
    without its text (the server log has it)."""
    if isinstance(exc, SendTimeout):
        return StatusReply(grpc.StatusCode.UNAVAILABLE, str(exc), exc.reason, with_details=False)
    if isinstance(exc, Stopped):
        code, reason = _STOPPED[exc.stop_reason]
        return StatusReply(code, str(exc), reason)
    if isinstance(exc, StylizeError):
        for kind, code in _CODES:
            if isinstance(exc, kind):
                return StatusReply(code, str(exc) or kind.__name__, exc.reason, exc.field, exc.retry_after)
    return StatusReply(
        grpc.StatusCode.INTERNAL,
        f"internal error ({type(exc).__name__}); the server log has the details",
        ErrorReason.INTERNAL,
    )
