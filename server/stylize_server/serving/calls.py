"""gRPC call plumbing under the servicer: read a call's one request message
with a deadline of our own, write frames with a send timeout, and count the
open Stylize calls of the pod and of each client.

Every method of StyleTransfer is registered with a streaming request, so
gRPC hands the handler the call before reading anything: the handler reads
the single message itself, after the cheap refusals (auth in the
interceptor, draining, the open-call limit) and under
`--request-receive-seconds`.

gRPC hands over the message's raw bytes (no request_deserializer): a
deserializer that raised would fail the call before the handler, as INTERNAL
(Stylize) or UNKNOWN (the unary methods) with a traceback in the log, and
any caller could raise the INTERNAL error ratio with garbage. `receive`
parses the bytes itself, so corrupt protobuf is the caller's error:
INVALID_ARGUMENT with reason MALFORMED_REQUEST, on every method.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import aio

from stylize_server.job.errors import (
    CallLimit,
    Cancelled,
    ClientCallLimit,
    InvalidArgument,
    MalformedRequest,
    ReceiveTimeout,
    SendTimeout,
)
from stylize_server.serving import metrics

M = TypeVar("M", bound=Message)
Context = aio.ServicerContext[object, object]
if TYPE_CHECKING:  # grpc's RpcMethodHandler is generic only in its stubs
    # StyleTransfer's handlers: raw request bytes (see `receive`), protobuf responses.
    MethodHandler = grpc.RpcMethodHandler[bytes, Message]


async def receive(context: Context, timeout: float, kind: type[M]) -> M:
    """The call's request message; ReceiveTimeout when it has not arrived in `timeout` s."""
    try:
        async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
            message = await context.read()
    except TimeoutError:
        raise ReceiveTimeout(
            f"the request message did not arrive within {timeout:g} s of the call opening (--request-receive-seconds)"
        ) from None
    if message is aio.EOF or not isinstance(message, bytes):
        raise InvalidArgument("request", "the call ended before its request message")
    return parse(kind, message)


def parse(kind: type[M], data: bytes) -> M:
    """`data` as a `kind` message; MalformedRequest when it is not one."""
    try:
        message = kind.FromString(data)
    except DecodeError as exc:
        # protobuf's words ("Wire format was corrupt", "String field had bad
        # UTF-8") say what is wrong and quote none of the caller's bytes.
        why = str(exc).rpartition(": ")[2] or "not valid protobuf"
        name = kind.DESCRIPTOR.full_name
        raise MalformedRequest(f"the request is not a valid {name} message ({why}, {len(data)} bytes)") from None
    return message


class ClientGone(Cancelled):
    """The call ended under us (the client cancelled, went away, or its
    deadline passed): there is nobody to send a status to."""


async def send(context: Context, frame: object, timeout: float) -> None:
    """Write one frame; SendTimeout when the client has not taken it in `timeout` s."""
    try:
        async with asyncio.timeout(timeout):
            await context.write(frame)
    except TimeoutError:
        raise SendTimeout(
            f"the client took no frame for {timeout:g} s (--send-timeout-seconds); the stream is closed as a "
            "broken connection would be; a job with a request_id goes on, and calling again with it reattaches"
        ) from None
    except Exception as exc:
        # gRPC fails the write of a call that has just ended (ExecuteBatchError)
        # before it tells us so by cancelling our task: a write fails for no other reason.
        raise ClientGone(f"the call ended while a frame was being sent ({type(exc).__name__})") from exc


def deadline_passed(context: Context) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0.05


class CallGate:
    """The pod's open Stylize calls (loop only), counted before a call's
    request is read, under three rules:

    * the pod holds at most `limit` calls (CALL_LIMIT), the last guard;
    * one client holds at most `per_client` calls (CLIENT_CALL_LIMIT), and
      `per_client` is at most `limit - reserve`;
    * the last `reserve` calls go only to a client that holds none (CALL_LIMIT).

    So clients at their own limit, however many, leave `reserve` calls to
    `reserve` other clients: a new client finds a call unless the pod is full
    of one-call clients.
    """

    def __init__(self, limit: int, per_client: int | None = None, reserve: int = 0, retry_after: float = 1.0) -> None:
        self.limit = limit
        self.reserve = min(max(0, reserve), limit - 1)
        self.per_client = max(1, min(per_client or limit, limit - self.reserve))
        self.retry_after = retry_after
        self.open = 0
        self._held: dict[str, int] = {}  # only clients holding a call: bounded by `limit`

    def held(self, client: str) -> int:
        return self._held.get(client, 0)

    def enter(self, client: str) -> None:
        held = self._held.get(client, 0)
        if self.open >= self.limit:
            raise CallLimit(
                f"this server has {self.open} Stylize calls open, its limit (--max-open-calls {self.limit})",
                retry_after=self.retry_after,
            )
        if held >= self.per_client:
            raise ClientCallLimit(
                f"this client has {held} Stylize calls open, its limit (--max-calls-per-client {self.per_client})",
                retry_after=self.retry_after,
            )
        if held and self.open >= self.limit - self.reserve:
            raise CallLimit(
                f"this server has {self.open} of {self.limit} Stylize calls open (--max-open-calls); the last "
                f"{self.reserve} (--reserved-calls) go only to clients that hold none, and this client holds {held}",
                retry_after=self.retry_after,
            )
        self._held[client] = held + 1
        self.open += 1
        metrics.OPEN_CALLS.inc()

    def leave(self, client: str) -> None:
        held = self._held.get(client, 0) - 1
        if held > 0:
            self._held[client] = held
        else:
            self._held.pop(client, None)
        self.open -= 1
        metrics.OPEN_CALLS.dec()


def unary_request(
    handler: Callable[[object, Context], Awaitable[M | None]],
    request_type: type[Message],
    response_type: type[M],
    stream: bool,
) -> grpc.RpcMethodHandler[bytes, M]:
    """A method handler with a streaming request for `handler(request_iterator,
    context)`, which reads and parses the request itself (see the module's
    docstring); its type is `request_type`, passed to `receive` by the handler.
    `handler` returns its one `response_type` message, or writes its stream
    (`stream`) and returns None."""
    del request_type  # no deserializer: `receive` parses the raw bytes
    serializer = response_type.SerializeToString
    if stream:
        return grpc.stream_stream_rpc_method_handler(handler, request_deserializer=None, response_serializer=serializer)
    return grpc.stream_unary_rpc_method_handler(handler, request_deserializer=None, response_serializer=serializer)
