"""Typed exceptions of the server. Each maps to one gRPC status code, and the
mapping lives in one place: `stylize_server.service.status_for`.

Engine and image code raise these; nothing below the service layer knows gRPC.
"""
from __future__ import annotations


class StylizeError(Exception):
    """Base class of every error the service reports to a caller."""


class InvalidArgument(StylizeError):
    """A request field is malformed or out of range (INVALID_ARGUMENT).

    The message always starts with the field's name, so a caller can tell which
    of its inputs to fix.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class TooLarge(StylizeError):
    """A request is bigger than the server accepts (RESOURCE_EXHAUSTED)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class QueueFull(StylizeError):
    """No room in the scheduler's queue (RESOURCE_EXHAUSTED); retry later."""


class Unavailable(StylizeError):
    """The server is loading or draining (UNAVAILABLE); retry elsewhere."""


class Cancelled(StylizeError):
    """The job was stopped because its caller went away or asked (CANCELLED)."""


class DeadlineExceeded(StylizeError):
    """The job was stopped because its deadline passed (DEADLINE_EXCEEDED)."""


class WeightsError(StylizeError):
    """The VGG-19 weights could not be loaded. Fatal at start-up."""


class NumericalError(StylizeError):
    """The optimization produced NaN or infinity (INTERNAL, with advice)."""
