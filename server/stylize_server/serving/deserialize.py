"""Request messages that do not parse, on the services this server hosts but
did not write (health, reflection).

gRPC runs a handler's request_deserializer before the handler; when it
raises, the call fails as UNKNOWN with a traceback logged at ERROR. The health
service answers everyone, token or not, so any peer could fill the log with
tracebacks. `MalformedRequests` wraps such handlers: their deserializer never
raises, and a message that did not parse ends the call with the status of
`MalformedRequest` (INVALID_ARGUMENT, MALFORMED_REQUEST), as StyleTransfer's
own methods do (`calls.receive`; they take raw bytes and pass through here
unchanged).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Never, TypeVar, cast

import grpc
from grpc import aio

from stylize_server.job.errors import MalformedRequest
from stylize_server.wire.status import status_for

# The services guarded here are not ours: their messages keep whatever type
# their handler gives them, and this module only hands them on.
Req = TypeVar("Req")
Resp = TypeVar("Resp")
In = TypeVar("In")
Context = aio.ServicerContext[object, object]
# A behavior as an aio server calls it: (request or request iterator, context).
Behavior = Callable[[In, Context], object]


class _Unparsed:
    """What the guarded deserializer returns for bytes that did not parse."""

    def __init__(self, error: BaseException) -> None:
        self.why = str(error).rpartition(": ")[2] or type(error).__name__


async def _refuse(unparsed: _Unparsed, context: Context) -> Never:
    error = MalformedRequest(f"the request is not a valid message of this method ({unparsed.why})")
    await context.abort_with_status(status_for(error).grpc_status())


def _guard(parse: Callable[[bytes], Req]) -> Callable[[bytes], Req | _Unparsed]:
    def safe(data: bytes) -> Req | _Unparsed:
        try:
            return parse(data)
        except Exception as exc:  # protobuf's DecodeError, or whatever a foreign deserializer raises
            return _Unparsed(exc)

    return safe


async def _checked(requests: AsyncIterator[Req | _Unparsed], context: Context) -> AsyncIterator[Req]:
    async for request in requests:
        if isinstance(request, _Unparsed):
            await _refuse(request, context)
        yield request


def _responding(inner: Callable[..., object], check: Callable[[In, Context], Awaitable[object]]) -> Behavior[In] | None:
    """`inner` with `check` first, in `inner`'s own style: gRPC refuses to mix
    an async generator with context.write on one call. None for a synchronous
    behavior (none is registered on this aio server)."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: In, context: Context) -> AsyncIterator[object]:
            async for response in inner(await check(request, context), context):
                yield response

        return generator
    if inspect.iscoroutinefunction(inner):

        async def coroutine(request: In, context: Context) -> object:
            return await inner(await check(request, context), context)

        return coroutine
    return None


async def _one(request: Req | _Unparsed, context: Context) -> Req:
    if isinstance(request, _Unparsed):
        await _refuse(request, context)
    return request


async def _many(requests: AsyncIterator[Req | _Unparsed], context: Context) -> AsyncIterator[Req]:
    return _checked(requests, context)


def guarded(
    handler: grpc.RpcMethodHandler[Req, Resp],
) -> grpc.RpcMethodHandler[Req, Resp] | grpc.RpcMethodHandler[Req | _Unparsed, Resp]:
    """`handler` with a deserializer that cannot fail the call (see the module's docstring):
    it yields an `_Unparsed` instead, which the new behavior refuses before `handler`'s runs."""
    parse = handler.request_deserializer
    if parse is None:
        return handler
    safe, serializer = _guard(parse), handler.response_serializer
    behavior: Behavior[Never] | None  # a behavior of any request type, as the factories below take
    if handler.unary_unary is not None:
        behavior, make = _responding(handler.unary_unary, _one), grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream is not None:
        behavior, make = _responding(handler.unary_stream, _one), grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary is not None:
        behavior, make = _responding(handler.stream_unary, _many), grpc.stream_unary_rpc_method_handler
    elif handler.stream_stream is not None:
        behavior, make = _responding(handler.stream_stream, _many), grpc.stream_stream_rpc_method_handler
    else:
        return handler
    return make(behavior, safe, serializer) if behavior is not None else handler


class MalformedRequests(aio.ServerInterceptor):
    """Guards every handler's request deserializer (`guarded`)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        # types-grpcio has intercept_service return a handler of the continuation's
        # own request type; the guarded one's deserializer may also yield _Unparsed,
        # which its behavior refuses before the service's code sees a request.
        return cast("grpc.RpcMethodHandler[Req, Resp]", guarded(handler))
