"""The client's exceptions: one class per kind of failure a caller handles
differently, each built from a gRPC status in one place (`error_from_rpc`).

The CLI maps these classes to its exit codes; library users catch them instead
of inspecting `grpc.RpcError` codes themselves. Every exception keeps the gRPC
status code and the server's message (`details`) and, for failures after
retries, how many attempts were made.
"""

from __future__ import annotations

import grpc


class StylizeError(Exception):
    """Base class of every error the client raises about a call."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
        self.attempts = attempts

    @property
    def code_name(self) -> str:
        return self.code.name if self.code is not None else "UNKNOWN"


class ConnectError(StylizeError):
    """The server could not be reached, or it is loading or shutting down (UNAVAILABLE)."""


class Unauthenticated(StylizeError):
    """The server wants a (different) token or client certificate."""


class InvalidArgument(StylizeError):
    """The server rejected an image or option; `details` names the field and the limit."""


class Overloaded(StylizeError):
    """The server's queue stayed full through every retry, or the request is too large."""


class DeadlineExceeded(StylizeError):
    """The call's deadline passed; the server stopped the job."""


class Cancelled(StylizeError):
    """The call was cancelled (by this client, e.g. Ctrl-C, or by the server)."""


class ServerError(StylizeError):
    """The server failed (INTERNAL, UNKNOWN, ...) or broke the stream protocol."""


_CLASS_FOR_CODE: dict[grpc.StatusCode, type[StylizeError]] = {
    grpc.StatusCode.UNAVAILABLE: ConnectError,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Unauthenticated,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


# How gRPC's own transport describes a connection it could not make or keep,
# as opposed to a message the server chose to send.
_TRANSPORT_HINTS = (
    "failed to connect",
    "connection refused",
    "dns resolution failed",
    "name resolution",
    "handshake",
    "ssl",
    "tls",
    "socket closed",
    "connection reset",
    "connection timed out",
    "no route",
    "unavailable",
    "goaway",
    "broken pipe",
    "endpoint",
)


def _is_transport_failure(details: str) -> bool:
    text = details.lower()
    return not text or any(hint in text for hint in _TRANSPORT_HINTS)


def error_from_status(
    code: grpc.StatusCode | None, details: str | None, target: str, attempts: int = 1
) -> StylizeError:
    """The client exception for a call that ended with `code` and `details`."""
    details = details or ""
    cls = _CLASS_FOR_CODE.get(code, ServerError) if code is not None else ServerError
    if cls is ConnectError:
        if _is_transport_failure(details):
            message = f"cannot reach the server at {target}: {details or 'unavailable'}"
        else:  # the server itself answered UNAVAILABLE (loading, draining)
            message = f"the server at {target} is unavailable: {details}"
    elif cls is Unauthenticated:
        message = f"not authenticated by {target}: {details or code.name}"  # type: ignore[union-attr]
    elif cls is InvalidArgument:
        message = f"invalid argument: {details}"
    elif cls is Overloaded:
        message = f"server overloaded: {details or 'resource exhausted'}"
    elif cls is DeadlineExceeded:
        message = f"deadline exceeded: {details or 'the call took longer than its timeout'}"
    elif cls is Cancelled:
        message = f"cancelled: {details or 'the call was cancelled'}"
    else:
        name = code.name if code is not None else "UNKNOWN"
        message = f"server error ({name}): {details}"
    if attempts > 1:
        message += f" (after {attempts} attempts)"
    return cls(message, code=code, details=details, attempts=attempts)


def error_from_rpc(error: grpc.RpcError, target: str, attempts: int = 1) -> StylizeError:
    """The client exception for a failed gRPC call (sync or asyncio)."""
    code = error.code() if hasattr(error, "code") else None  # type: ignore[attr-defined]
    details = error.details() if hasattr(error, "details") else str(error)  # type: ignore[attr-defined]
    return error_from_status(code, details, target, attempts)
