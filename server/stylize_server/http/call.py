"""The seam between HTTP and the StyleTransfer servicer: `HttpCall` is the
part of a grpc.aio ServicerContext that the servicer uses (metadata, peer,
read, write, time_remaining, abort_with_status), so an HTTP handler drives
`Stylize`, `Cancel` and `GetServerInfo` themselves, and an event stream
drives `watch.Watch` (reattach by request_id). Admission, the cost model, the
fair queue, the limits, auth, ownership and the metrics are the gRPC ones,
run by the same code: HTTP only translates bytes in and frames out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import grpc
from google.rpc import status_pb2

from stylize_server.wire.status import status_for

Sink = Callable[[object], Awaitable[None]]
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class Aborted(Exception):
    """The servicer ended the call with a status (grpc.aio's abort raises too)."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


def status_of(exc: BaseException) -> status_pb2.Status:
    """The google.rpc.Status an exception ends a call with: the servicer's own, or status_for's."""
    return exc.status if isinstance(exc, Aborted) else status_for(exc).proto()


async def _no_sink(frame: object) -> None:
    del frame


class HttpCall:
    """One servicer call made from an HTTP request (see the module's docstring)."""

    def __init__(
        self,
        metadata: Sequence[tuple[str, str]],
        peer: str,
        message: bytes | None,
        sink: Sink | None = None,
        reader: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        self._metadata = tuple(metadata)
        self._peer = peer
        self._message = message
        self._sink = sink or _no_sink
        self._reader = reader
        self.status: status_pb2.Status | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    async def read(self) -> bytes | object:
        # Read when the servicer asks, as gRPC's request message is: after the
        # cheap refusals (draining, the open-call limits), under its receive timeout.
        if self._reader is not None:
            reader, self._reader = self._reader, None
            return await reader()
        message, self._message = self._message, None
        return message if message is not None else grpc.aio.EOF

    async def write(self, frame: object) -> None:
        await self._sink(frame)

    def time_remaining(self) -> float | None:
        return None  # an HTTP request has no gRPC deadline; the job's limits still apply

    async def abort_with_status(self, status: grpc.Status) -> None:
        details = dict(status.trailing_metadata or ()).get(STATUS_DETAILS_KEY)
        if isinstance(details, bytes):
            proto = status_pb2.Status.FromString(details)
        else:
            proto = status_pb2.Status(code=status.code.value[0], message=status.details or "")
        self.status = proto
        raise Aborted(proto)


def peer_of(remote: str | None, port: int | None) -> str:
    """aiohttp's remote address in gRPC's peer form ("ipv4:10.0.0.7:51234"), for `auth.peer_host`."""
    if not remote:
        return "unknown"
    if ":" in remote:
        return f"ipv6:[{remote}]:{port or 0}"
    return f"ipv4:{remote}:{port or 0}"
