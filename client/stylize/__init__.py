"""stylize: the Python client of the stylize neural style transfer service.

Public API (imports no TensorFlow):

* `StyleTransferClient` (sync) and `AsyncStyleTransferClient` (asyncio, in
  `stylize.aio`, imported lazily here) run jobs and yield typed events;
* `Style(image, weight, mask)` for styles with masks or weights;
* the events `Queued`, `Started`, `Progress`, `Result` (and `Losses`, `Estimate`);
* `TLSConfig` and `RetryPolicy` configure the connection;
* the exceptions of `stylize.errors`, and the reasons `ErrorReason` and
  `StopReason` (from the proto, `stylize.schema`).

The generated protobuf modules are `stylize_api.v1.stylize_pb2` and `stylize_pb2_grpc`.
"""

from __future__ import annotations

from typing import Any

from stylize_api.schema import ErrorReason, StopReason

from .client import StyleTransferClient, StylizeStream
from .connection import RetryPolicy, TLSConfig
from .errors import (
    Cancelled,
    ConnectError,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Overloaded,
    OverTimeLimit,
    RequestIdInUse,
    ServerError,
    StylizeError,
    TooLarge,
    Unauthenticated,
    Unavailable,
)
from .events import Estimate, Event, Losses, Progress, Queued, Result, ScaleEstimate, Started
from .request import Style, build_request
from .video import FrameEvent, VideoFrame, VideoSummary

DISTRIBUTION = "stylize-grpc"  # the name on PyPI ("stylize" there is an unrelated project)


def version() -> str:
    """The installed distribution's version (read on demand: importlib.metadata costs ~25 ms)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


__all__ = [
    "DISTRIBUTION",
    "AsyncStyleTransferClient",
    "Cancelled",
    "ConnectError",
    "DeadlineExceeded",
    "ErrorReason",
    "Estimate",
    "Event",
    "FrameEvent",
    "InvalidArgument",
    "Losses",
    "NotFound",
    "OverTimeLimit",
    "Overloaded",
    "Progress",
    "Queued",
    "RequestIdInUse",
    "Result",
    "RetryPolicy",
    "ScaleEstimate",
    "ServerError",
    "Started",
    "StopReason",
    "Style",
    "StyleTransferClient",
    "StylizeError",
    "StylizeStream",
    "TLSConfig",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "VideoFrame",
    "VideoSummary",
    "build_request",
    "version",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return version()
    # grpc.aio is only loaded by those who use the asyncio client.
    if name == "AsyncStyleTransferClient":
        from .aio import AsyncStyleTransferClient

        return AsyncStyleTransferClient
    raise AttributeError(f"module 'stylize' has no attribute {name!r}")
