"""stylize: the Python client of the stylize neural style transfer service.

Public API (imports no TensorFlow):

* `StyleTransferClient` (sync) and `AsyncStyleTransferClient` (asyncio, in
  `stylize.aio`, imported lazily here) run jobs and yield typed events;
* the events `Queued`, `Started`, `Progress`, `Result` (and `Losses`);
* `TLSConfig` and `RetryPolicy` configure the connection;
* the exceptions of `stylize.errors`.

The generated protobuf modules are `stylize.v1.stylize_pb2` and `stylize_pb2_grpc`.
"""

from __future__ import annotations

from typing import Any

from .client import StyleTransferClient, StylizeStream
from .connection import RetryPolicy, TLSConfig
from .errors import (
    Cancelled,
    ConnectError,
    DeadlineExceeded,
    InvalidArgument,
    Overloaded,
    ServerError,
    StylizeError,
    Unauthenticated,
)
from .events import Event, Losses, Progress, Queued, Result, Started
from .request import build_request

__version__ = "0.1.0"

__all__ = [
    "AsyncStyleTransferClient",
    "Cancelled",
    "ConnectError",
    "DeadlineExceeded",
    "Event",
    "InvalidArgument",
    "Losses",
    "Overloaded",
    "Progress",
    "Queued",
    "Result",
    "RetryPolicy",
    "ServerError",
    "Started",
    "StyleTransferClient",
    "StylizeError",
    "StylizeStream",
    "TLSConfig",
    "Unauthenticated",
    "build_request",
]


def __getattr__(name: str) -> Any:
    # grpc.aio is only loaded by those who use the asyncio client.
    if name == "AsyncStyleTransferClient":
        from .aio import AsyncStyleTransferClient

        return AsyncStyleTransferClient
    raise AttributeError(f"module 'stylize' has no attribute {name!r}")
