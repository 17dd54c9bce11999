"""Typed exceptions of the server, each with its stable reason (the proto's
ErrorReason), the field it concerns and, for refusals that waiting fixes, a
suggested retry delay. `stylize_server.wire.status` maps them to gRPC status codes
and google.rpc details in one place; nothing below the service knows gRPC.

The advice a caller reads after the message is written once, in ADVICE.
"""

from __future__ import annotations

from stylize_api.schema import ErrorReason, StopReason

ADVICE: dict[ErrorReason, str] = {
    ErrorReason.QUEUE_FULL: "retry later with backoff, or on another replica",
    ErrorReason.CLIENT_QUOTA: "wait for one of your jobs to end, then retry",
    ErrorReason.CALL_LIMIT: "retry later with backoff, or on another replica",
    ErrorReason.CLIENT_CALL_LIMIT: "end one of your open calls, or wait for one to end, then retry",
    ErrorReason.JOB_STREAM_LIMIT: "read the job on a stream you already have, or retry after one of them ended",
    ErrorReason.LOADING: "retry in a few seconds",
    ErrorReason.DRAINING: "retry on another replica",
    ErrorReason.NUMERICAL: ("lower learning_rate or the style/tv weights, or use the lbfgs optimizer"),
    ErrorReason.UNAUTHENTICATED: "send the metadata `authorization: Bearer <token>` with a valid token",
}


class StylizeError(Exception):
    """Base class of every error the service reports to a caller."""

    reason: ErrorReason = ErrorReason.INTERNAL

    def __init__(self, message: str, *, field: str | None = None, retry_after: float | None = None) -> None:
        self.field = field
        self.retry_after = retry_after
        text = f"{field}: {message}" if field else message
        advice = ADVICE.get(self.reason)
        if advice:
            text = f"{text}; {advice}"
        super().__init__(text)


class InvalidArgument(StylizeError):
    """A request field is malformed or out of range. The message starts with
    the field's name and names the limit."""

    reason = ErrorReason.INVALID_OPTION

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class MalformedRequest(StylizeError):
    """The request message is not valid protobuf of the method's request type:
    no field can be named, and the same bytes always fail (INVALID_ARGUMENT)."""

    reason = ErrorReason.MALFORMED_REQUEST


class DecodeFailed(InvalidArgument):
    """An image could not be decoded."""

    reason = ErrorReason.DECODE_FAILED


class TooLarge(StylizeError):
    """An image, the request or the job is larger than the server ever accepts."""

    reason = ErrorReason.TOO_LARGE

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class OverTimeLimit(StylizeError):
    """The job's estimated time is over the server's time per job, and the
    request did not accept a partial result. The message names the estimate,
    the limit and what would fit."""

    reason = ErrorReason.OVER_TIME_LIMIT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class QueueFull(StylizeError):
    reason = ErrorReason.QUEUE_FULL


class ClientQuota(StylizeError):
    reason = ErrorReason.CLIENT_QUOTA


class CallLimit(StylizeError):
    reason = ErrorReason.CALL_LIMIT


class ClientCallLimit(StylizeError):
    """This client holds --max-calls-per-client open calls already."""

    reason = ErrorReason.CLIENT_CALL_LIMIT


class JobStreamLimit(StylizeError):
    """The job a reattaching call names has --max-streams-per-job streams already."""

    reason = ErrorReason.JOB_STREAM_LIMIT


class Unavailable(StylizeError):
    """The server cannot take the call now (UNAVAILABLE)."""

    reason = ErrorReason.DRAINING


class Loading(Unavailable):
    reason = ErrorReason.LOADING


class Draining(Unavailable):
    reason = ErrorReason.DRAINING


class Unauthenticated(StylizeError):
    reason = ErrorReason.UNAUTHENTICATED


class ReceiveTimeout(StylizeError):
    reason = ErrorReason.RECEIVE_TIMEOUT


class SendTimeout(StylizeError):
    """The client took no frame for --send-timeout-seconds. Its stream ends as
    a broken connection would (UNAVAILABLE without ErrorInfo, so a client
    reattaches by request_id); the job itself goes on."""

    reason = ErrorReason.INTERNAL  # not sent: see status.py


class Stopped(StylizeError):
    """A job was stopped before its end. The engine raises it only where it has
    nothing to return; otherwise a stopped job returns a partial Result."""

    reason = ErrorReason.CANCELLED

    def __init__(self, stop_reason: StopReason, message: str = "") -> None:
        self.stop_reason = stop_reason
        super().__init__(message or f"the job was stopped ({stop_reason.value})")


class Cancelled(StylizeError):
    reason = ErrorReason.CANCELLED


class DeadlineExceeded(StylizeError):
    reason = ErrorReason.DEADLINE


class NumericalError(StylizeError):
    """The optimization produced NaN or infinity."""

    reason = ErrorReason.NUMERICAL


class RequestIdInUse(StylizeError):
    reason = ErrorReason.REQUEST_ID_IN_USE


class NotFound(StylizeError):
    reason = ErrorReason.NOT_FOUND


class InternalError(StylizeError):
    """An unexpected failure (a bug), wrapped so that it can be stored and
    replayed like any outcome; the caller sees INTERNAL without its text."""

    reason = ErrorReason.INTERNAL

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"internal error ({type(cause).__name__}); the server log has the details")


class WeightsError(Exception):
    """The VGG-19 weights could not be loaded. Fatal at start-up, never a
    request's error."""
