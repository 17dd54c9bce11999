"""Hostile and lazy clients for server tests, on a grpc.aio event loop of
their own thread, so a test can hold hundreds of calls open cheaply:

    with HeaderOnlyStreams(srv.address, 200, channels=4) as streams:   # send headers, never the request
        ...                                                             # the server holds or refuses them
        streams.wait_done(30)                                           # -> {StatusCode: count}
    health_latencies(srv.address, 200)                                  # seconds of each Check, one channel

Each of the `channels` is its own HTTP/2 connection (a local subchannel
pool), so a per-connection stream limit does not queue the calls client-side.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

STYLIZE = "/stylize.v1.StyleTransfer/Stylize"


def error_reason(error: grpc.RpcError | aio.AioRpcError) -> str | None:
    """The google.rpc.ErrorInfo reason of a failed call, or None."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is None and isinstance(error, aio.AioRpcError):
        raw = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")
        if raw:
            from google.rpc import status_pb2

            status = status_pb2.Status.FromString(raw)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return None


class HeaderOnlyStreams:
    """`n` Stylize calls that send their headers and never a request message."""

    def __init__(
        self, address: str, n: int, metadata: Sequence[tuple[str, str]] = (), channels: int = 4, timeout: float = 60
    ) -> None:
        self.address, self.n, self.metadata, self.timeout = address, n, tuple(metadata), timeout
        self.codes: collections.Counter[grpc.StatusCode] = collections.Counter()
        self.reasons: collections.Counter[str | None] = collections.Counter()
        self._channels_n = channels
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="header-only", daemon=True)
        self._done = threading.Event()
        self._opened = threading.Event()
        self._release: asyncio.Event | None = None
        self._future: Any = None

    def __enter__(self) -> HeaderOnlyStreams:
        self._thread.start()
        self._future = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        if not self._opened.wait(60):
            raise AssertionError("the header-only streams were not opened within 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)
        try:
            self._future.result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _one(self, channel: aio.Channel) -> None:
        call = channel.stream_stream(STYLIZE)(metadata=self.metadata, timeout=self.timeout)
        try:
            async for _ in call:
                pass
            self.codes[grpc.StatusCode.OK] += 1
        except aio.AioRpcError as error:
            self.codes[error.code()] += 1
            self.reasons[error_reason(error)] += 1

    async def _run(self) -> None:
        self._release = asyncio.Event()
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [aio.insecure_channel(self.address, options=options) for _ in range(self._channels_n)]
        try:
            for channel in channels:
                await channel.channel_ready()
            tasks = [asyncio.ensure_future(self._one(channels[i % len(channels)])) for i in range(self.n)]
            await asyncio.sleep(0.2)  # the calls are on the wire
            self._opened.set()
            await asyncio.gather(*tasks)
            self._done.set()
            await self._release.wait()
        finally:
            self._opened.set()
            for channel in channels:
                await channel.close()

    def wait_done(self, timeout: float) -> collections.Counter[grpc.StatusCode]:
        if not self._done.wait(timeout):
            raise AssertionError(f"header-only streams still open after {timeout} s: {dict(self.codes)}")
        return self.codes


def health_latencies(address: str, n: int, service: str = "") -> list[float]:
    """Seconds each of `n` sequential health checks took, on a fresh connection."""
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)  # connect first
        seconds = []
        for _ in range(n):
            t0 = time.perf_counter()
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            seconds.append(time.perf_counter() - t0)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        return seconds


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.99 * len(ordered)) - 1)]
