"""The client's exceptions, and the one place that turns a failed call into one.

A failed call is read as a status code plus the `google.rpc.Status` the server
put in the trailers (`grpc-status-details-bin`): ErrorInfo's `reason`,
BadRequest's field and RetryInfo's delay (`Failure`). The class of the
exception, and whether a call is retried, depend on the code and the reason
alone, never on the words of the message (`error_for`).

Every exception carries `.code` (grpc.StatusCode or None for a local
protocol error), `.reason` (an `ErrorReason`, or None when the status had no
ErrorInfo of this API), `.field` (the request field at fault, if any),
`.details` (the server's message), `.retry_after` (RetryInfo's delay) and
`.attempts` (calls made, retries included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from stylize_api.schema import DOMAIN, ErrorReason

# Refusals that waiting fixes: capacity (QUEUE_FULL, CLIENT_QUOTA, CALL_LIMIT,
# and this client's own calls: CLIENT_CALL_LIMIT, JOB_STREAM_LIMIT) and a
# server that is starting or stopping (LOADING, DRAINING: another replica
# behind the same name may take the call).
CAPACITY_REASONS = frozenset(
    {
        ErrorReason.QUEUE_FULL,
        ErrorReason.CLIENT_QUOTA,
        ErrorReason.CALL_LIMIT,
        ErrorReason.CLIENT_CALL_LIMIT,
        ErrorReason.JOB_STREAM_LIMIT,
    }
)
RETRYABLE_REASONS = CAPACITY_REASONS | {ErrorReason.LOADING, ErrorReason.DRAINING}


# A connection that was never made (rather than one lost mid-call): nothing
# listens there, or the name does not resolve.
_NEVER_CONNECTED = re.compile(r"failed to connect|connection refused|dns resolution failed|name resolution", re.I)
START_HINT = "is a server running there? Start one with `make run` in a checkout of stylize (or `stylize-server`)"


@dataclass(frozen=True)
class Failure:
    """What a failed call said, machine-readably."""

    code: grpc.StatusCode | None
    details: str = ""
    reason: ErrorReason | None = None
    field: str | None = None
    retry_after: float | None = None
    error_info: bool = False  # the status carried an ErrorInfo of this API (reason may be unknown to us)

    @property
    def code_name(self) -> str:
        return self.code.name if self.code is not None else "UNKNOWN"

    @property
    def transport(self) -> bool:
        """UNAVAILABLE that no server chose to send: the connection failed or was lost."""
        return self.code == grpc.StatusCode.UNAVAILABLE and not self.error_info

    @property
    def retryable(self) -> bool:
        """Whether trying again later can succeed (before a job has started)."""
        if self.transport or self.reason in RETRYABLE_REASONS:
            return True
        # A reason newer than this client, on a capacity code, with a suggested delay.
        return (
            self.reason is None
            and self.error_info
            and self.retry_after is not None
            and self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
        )

    @classmethod
    def from_status(cls, code: grpc.StatusCode | None, details: str | None, status: Any) -> Failure:
        """From a call's code and details and its google.rpc.Status (None when absent)."""
        reason: ErrorReason | None = None
        field: str | None = None
        retry_after: float | None = None
        error_info = False
        if isinstance(status, status_pb2.Status):
            for box in status.details:
                if box.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    box.Unpack(info)
                    if info.domain != DOMAIN:  # a proxy's, not this API's
                        continue
                    error_info = True
                    try:
                        reason = ErrorReason(info.reason)
                    except ValueError:
                        reason = None
                    field = field or info.metadata.get("field") or None
                elif box.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    box.Unpack(bad)
                    if bad.field_violations:
                        field = bad.field_violations[0].field or field
                elif box.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    box.Unpack(retry)
                    retry_after = max(0.0, retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9)
        return cls(code, details or "", reason, field, retry_after, error_info)


class StylizeError(Exception):
    """Base class of every error the client raises about a call."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: ErrorReason | None = None,
        field: str | None = None,
        details: str = "",
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.field = field
        self.details = details
        self.retry_after = retry_after
        self.attempts = attempts

    @property
    def code_name(self) -> str:
        return self.code.name if self.code is not None else "UNKNOWN"

    @property
    def reason_name(self) -> str:
        """The reason, or the code's name when the status had none."""
        return self.reason.value if self.reason is not None else self.code_name


class Unavailable(StylizeError):
    """The server is loading or draining (LOADING, DRAINING), after every retry."""


class ConnectError(Unavailable):
    """The server could not be reached, or the connection was lost (UNAVAILABLE without a reason)."""


class Unauthenticated(StylizeError):
    """The server wants a (different) token or client certificate."""


class InvalidArgument(StylizeError):
    """The server rejected an image or option (INVALID_OPTION, DECODE_FAILED); `field` names it."""


class RequestIdInUse(InvalidArgument):
    """The request_id belongs to a different request of this client (ALREADY_EXISTS)."""


class TooLarge(StylizeError):
    """An image, the request or the job is larger than the server ever accepts (TOO_LARGE, or
    gRPC's own message-size refusal). Never retried: make it smaller."""


class OverTimeLimit(TooLarge):
    """The job is estimated to take longer than the server's time per job
    (OVER_TIME_LIMIT, FAILED_PRECONDITION). Never retried: the message says
    what would fit (fewer iterations, a smaller size), or send it again with
    `accept_partial=True` for the best image within the limit."""


class Overloaded(StylizeError):
    """No capacity after every retry: QUEUE_FULL, CLIENT_QUOTA, CALL_LIMIT, CLIENT_CALL_LIMIT or
    JOB_STREAM_LIMIT."""


class DeadlineExceeded(StylizeError):
    """The call's deadline passed (DEADLINE), or the request did not arrive in time (RECEIVE_TIMEOUT)."""


class Cancelled(StylizeError):
    """The call was cancelled (by this client, e.g. Ctrl-C, or by the server)."""


class NotFound(StylizeError):
    """Cancel named a request_id the server has no job under."""


class ServerError(StylizeError):
    """The server failed (INTERNAL, NUMERICAL, UNKNOWN, ...) or broke the stream protocol."""


_CLASS_FOR_CODE: dict[grpc.StatusCode, type[StylizeError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Unauthenticated,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.ALREADY_EXISTS: RequestIdInUse,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.NOT_FOUND: NotFound,
}


def error_class(failure: Failure) -> type[StylizeError]:
    """The exception class for a failure: by status code, refined by reason."""
    if failure.code == grpc.StatusCode.UNAVAILABLE and failure.transport:
        return ConnectError
    if failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Without ErrorInfo it is gRPC's own refusal of a message over the size limit.
        if not failure.error_info or failure.reason is ErrorReason.TOO_LARGE:
            return TooLarge
        return Overloaded
    if failure.code == grpc.StatusCode.FAILED_PRECONDITION and failure.reason is ErrorReason.OVER_TIME_LIMIT:
        return OverTimeLimit
    if failure.code is None:
        return ServerError
    return _CLASS_FOR_CODE.get(failure.code, ServerError)


def _message(cls: type[StylizeError], failure: Failure, target: str) -> str:
    details = failure.details
    if cls is ConnectError:
        text = f"cannot reach the server at {target}: {details or 'unavailable'}"
        if _NEVER_CONNECTED.search(details):
            text += f"; {START_HINT}"
        return text
    if cls is Unavailable:
        state = {ErrorReason.LOADING: "still loading", ErrorReason.DRAINING: "shutting down"}.get(
            failure.reason,  # type: ignore[arg-type]
            "unavailable",
        )
        return f"the server at {target} is {state}: {details}"
    if cls is Unauthenticated:
        return f"not authenticated by {target}: {details or failure.code_name}"
    if cls is OverTimeLimit:
        return f"over the server's time limit: {details}"
    if cls is TooLarge:
        if not failure.error_info:
            return f"the request is larger than the server accepts (gRPC message size limit): {details}"
        return f"too large: {details}"
    if cls is RequestIdInUse:
        return f"request id in use: {details}"
    if cls is InvalidArgument:
        return f"invalid argument: {details}"
    if cls is Overloaded:
        return f"server overloaded: {details or 'resource exhausted'}"
    if cls is DeadlineExceeded:
        return f"deadline exceeded: {details or 'the call took longer than its timeout'}"
    if cls is Cancelled:
        return f"cancelled: {details or 'the call was cancelled'}"
    if cls is NotFound:
        return f"not found: {details}"
    name = failure.reason.value if failure.reason is not None else failure.code_name
    return f"server error ({name}): {details}"


def error_for(failure: Failure, target: str, attempts: int = 1) -> StylizeError:
    """The client exception for a call that ended with `failure`."""
    cls = error_class(failure)
    message = _message(cls, failure, target)
    if attempts > 1:
        message += f" (after {attempts} attempts)"
    return cls(
        message,
        code=failure.code,
        reason=failure.reason,
        field=failure.field,
        details=failure.details,
        retry_after=failure.retry_after,
        attempts=attempts,
    )


def protocol_error(message: str, attempts: int = 1) -> ServerError:
    """The server broke the stream protocol (a missing, extra or out-of-order frame)."""
    return ServerError(f"server error: {message}", code=None, details=message, attempts=attempts)
