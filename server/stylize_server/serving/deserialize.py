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
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from stylize_server.job.errors import MalformedRequest
from stylize_server.wire.status import status_for

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
Context = aio.ServicerContext[Any, Any]


class _Unparsed:
    """What the guarded deserializer returns for bytes that did not parse."""

    def __init__(self, error: BaseException) -> None:
        self.why = str(error).rpartition(": ")[2] or type(error).__name__


async def _refuse(unparsed: _Unparsed, context: Context) -> None:
    error = MalformedRequest(f"the request is not a valid message of this method ({unparsed.why})")
    await context.abort_with_status(status_for(error).grpc_status())


def _guard(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def safe(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # protobuf's DecodeError, or whatever a foreign deserializer raises
            return _Unparsed(exc)

    return safe


async def _checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Unparsed):
            await _refuse(request, context)
        yield request


def _responding(
    inner: Callable[..., Any], check: Callable[[Any, Context], Awaitable[Any]]
) -> Callable[..., Any] | None:
    """`inner` with `check` first, in `inner`'s own style: gRPC refuses to mix
    an async generator with context.write on one call. None for a synchronous
    behavior (none is registered on this aio server)."""
    if inspect.isasyncgenfunction(inner):

        async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
            async for response in inner(await check(request, context), context):
                yield response

        return generator
    if inspect.iscoroutinefunction(inner):

        async def coroutine(request: Any, context: Context) -> Any:
            return await inner(await check(request, context), context)

        return coroutine
    return None


async def _one(request: Any, context: Context) -> Any:
    if isinstance(request, _Unparsed):
        await _refuse(request, context)
    return request


async def _many(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    return _checked(requests, context)


def guarded(handler: Handler) -> Handler:
    """`handler` with a deserializer that cannot fail the call (see the module's docstring)."""
    parse = handler.request_deserializer
    if parse is None:
        return handler
    safe, serializer = _guard(parse), handler.response_serializer
    kinds = (
        (handler.unary_unary, _one, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, _one, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, _many, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, _many, grpc.stream_stream_rpc_method_handler),
    )
    for inner, check, make in kinds:
        if inner is not None:
            behavior = _responding(inner, check)
            return make(behavior, safe, serializer) if behavior is not None else handler
    return handler


class MalformedRequests(aio.ServerInterceptor):
    """Guards every handler's request deserializer (`guarded`)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        return guarded(handler) if handler is not None else None
