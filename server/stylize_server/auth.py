"""Bearer-token authentication as a gRPC server interceptor.

With a token configured, every call except health checks must carry the
metadata `authorization: Bearer <token>`; anything else is answered
UNAUTHENTICATED before the handler runs. The comparison is constant-time
(hmac.compare_digest over bytes), and the token never appears in a log or an
error message.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import grpc

# Probes (kubelet gRPC probes, load balancers) stay open. Reflection does not:
# it describes the API to anyone, so grpcurl needs the token like any client.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def _deny_handler(handler: grpc.RpcMethodHandler | None, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    def deny(request_or_iterator, context: grpc.ServicerContext):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:
        return grpc.unary_unary_rpc_method_handler(deny)
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without the right `authorization: Bearer <token>`."""

    def __init__(self, token: str, on_denied: Callable[[str], None] | None = None) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self._expected = f"Bearer {token}".encode()
        self._on_denied = on_denied

    def authorized(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> bool:
        presented: bytes | None = None
        for key, value in metadata or ():
            if key.lower() == "authorization":
                presented = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
                break
        if presented is None:
            return False
        return hmac.compare_digest(presented, self._expected)

    def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        method = handler_call_details.method or ""
        if method.startswith(OPEN_PREFIXES):
            return continuation(handler_call_details)
        if self.authorized(handler_call_details.invocation_metadata):
            return continuation(handler_call_details)
        if self._on_denied is not None:
            self._on_denied(method)
        return _deny_handler(
            continuation(handler_call_details),
            "missing or invalid credentials: send the metadata `authorization: Bearer <token>`",
        )
