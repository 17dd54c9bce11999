"""The CLI's exit codes, in one table, and the one mapping from an error to its code.

Scripts branch on these numbers; `stylize --help` prints the table.
"""

from __future__ import annotations

from ..errors import (
    DeadlineExceeded,
    InvalidArgument,
    Overloaded,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from ..images import ImageError
from .artifacts import MissingExtra

EXIT_OK = 0
EXIT_FAILED = 1  # some images of a batch failed, for different reasons
EXIT_USAGE = 2  # bad flags, an unreadable or unwritable local path, a missing optional extra
EXIT_CONNECT = 3  # cannot connect, or the server is loading / draining (after retries)
EXIT_UNAUTHENTICATED = 4  # missing or wrong token / client certificate
EXIT_INVALID_ARGUMENT = 5  # the server rejected an image or option (its message names the field)
EXIT_OVERLOADED = 6  # no capacity after every retry: queue full, client quota, call limit
EXIT_DEADLINE = 7  # --timeout passed; the server stopped the job
EXIT_SERVER_ERROR = 8  # the server failed (INTERNAL, ...) or broke the protocol
EXIT_NOT_SERVING = 9  # `stylize health`: the server is up but not serving
EXIT_TOO_LARGE = 10  # an image, the request or the job is larger (or longer) than the server accepts; never retried
EXIT_PARTIAL = 11  # the server stopped the job early (time limit, shutdown): the best image so far was saved
EXIT_INTERRUPTED = 130  # Ctrl-C; the job was cancelled on the server

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "batch: images failed for different reasons (the summary says which)",
    EXIT_USAGE: "usage error: bad flag, unreadable input, unwritable output, missing optional extra",
    EXIT_CONNECT: "cannot connect, or the server is loading or shutting down (after retries)",
    EXIT_UNAUTHENTICATED: "unauthenticated: missing or wrong token (--token-file) or client certificate",
    EXIT_INVALID_ARGUMENT: "invalid argument: the server's message names the field and the limit",
    EXIT_OVERLOADED: "no capacity after every retry: queue full, your share of jobs in use, or call limit",
    EXIT_DEADLINE: "deadline exceeded (--timeout)",
    EXIT_SERVER_ERROR: "server error (INTERNAL, ...)",
    EXIT_NOT_SERVING: "health: the server answers but is not SERVING",
    EXIT_TOO_LARGE: (
        "too large: an image, the request or the job exceeds what the server accepts, in memory or in time"
        " (not retried; for time, --accept-partial takes the best image within the limit)"
    ),
    EXIT_PARTIAL: "partial result: the server stopped the job early; the best image so far was saved",
    EXIT_INTERRUPTED: "cancelled by Ctrl-C (the server stops the job)",
}


class UsageError(Exception):
    """A problem with the command line or a local path (exit code 2)."""


_EXIT_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int], ...] = (
    (Unavailable, EXIT_CONNECT),  # ConnectError included
    (Unauthenticated, EXIT_UNAUTHENTICATED),
    (InvalidArgument, EXIT_INVALID_ARGUMENT),
    (TooLarge, EXIT_TOO_LARGE),
    (Overloaded, EXIT_OVERLOADED),
    (DeadlineExceeded, EXIT_DEADLINE),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
    ((UsageError, MissingExtra, ImageError, OSError, ValueError, TypeError), EXIT_USAGE),
)


def exit_code_for(error: BaseException) -> int:
    for kinds, code in _EXIT_CODES:
        if isinstance(error, kinds):
            return code
    return EXIT_SERVER_ERROR  # ServerError, Cancelled by the server, anything else
