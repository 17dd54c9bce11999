"""Who a caller is, and bearer-token authentication decided from the call's
metadata before its request message is read.

`--auth-token-file` holds one `name:token` line per client (blank lines and
`#` comments are ignored); a file whose only line is a bare token (no colon)
still works, as the client "default". The name is the client's identity for
fair share, quotas and reattach; without auth a client is its peer's host.

With tokens configured, every call except health checks must carry the
metadata `authorization: Bearer <token>`. A call without a valid one gets
UNAUTHENTICATED from a handler that never reads the request, so a stream that
sends its headers and nothing else costs nothing. Every token is compared in
constant time (hmac.compare_digest over bytes, all tokens every time), and no
token ever appears in a log or an error message.
"""

from __future__ import annotations

import hmac
import pathlib
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import grpc
from grpc import aio

from stylize_server.job.errors import Unauthenticated
from stylize_server.wire.status import status_for

# Probes (kubelet gRPC probes, load balancers) stay open. Reflection does not:
# it describes the API to anyone, so grpcurl needs the token like any client.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
DEFAULT_NAME = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DENIED = "missing or invalid credentials: send the metadata `authorization: Bearer <token>`"

Metadata = Iterable[tuple[str, str | bytes]]
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the line, never a token."""


def load_tokens(path: str) -> dict[str, str]:
    """{name: token} from a token file (see the module's docstring)."""
    lines = [
        (number, line.strip())
        for number, line in enumerate(pathlib.Path(path).read_text(encoding="utf-8").splitlines(), 1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not lines:
        raise TokenFileError(f"--auth-token-file: {path} has no token")
    if len(lines) == 1 and ":" not in lines[0][1]:
        return {DEFAULT_NAME: lines[0][1]}
    tokens: dict[str, str] = {}
    for number, line in lines:
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not token:
            raise TokenFileError(f"--auth-token-file: line {number} is not `name:token`")
        if not _NAME.match(name):
            raise TokenFileError(
                f"--auth-token-file: line {number}: the name must be 1-64 letters, digits, '.', '_' or '-'"
            )
        if name in tokens:
            raise TokenFileError(f"--auth-token-file: line {number}: the name {name!r} is listed twice")
        if token in tokens.values():
            raise TokenFileError(f"--auth-token-file: line {number}: the token of {name!r} is another client's too")
        tokens[name] = token
    return tokens


class Authenticator:
    """Maps a call's metadata to its client's name; None when refused."""

    def __init__(self, tokens: dict[str, str] | None) -> None:
        self._expected = [(name, f"Bearer {token}".encode()) for name, token in (tokens or {}).items()]

    @property
    def enabled(self) -> bool:
        return bool(self._expected)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._expected]

    def identify(self, metadata: Metadata | None) -> str | None:
        presented: bytes | None = None
        for key, value in metadata or ():
            if key.lower() == "authorization":
                presented = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
                break
        if presented is None:
            return None
        found: str | None = None
        for name, expected in self._expected:  # every token, every time: no early exit to time
            if hmac.compare_digest(presented, expected):
                found = name
        return found

    def client_of(self, metadata: Metadata | None, peer: str) -> str:
        """The identity of an admitted call: its token's name, else its peer's host."""
        if self.enabled:
            return self.identify(metadata) or DEFAULT_NAME
        return peer_host(peer)


def peer_host(peer: str) -> str:
    """ "ipv4:10.0.0.7:51234" -> "10.0.0.7"; "ipv6:[::1]:5" -> "::1"; "unix:/x" -> "unix:/x"."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer or "unknown"


async def _deny(request_iterator: object, context: aio.ServicerContext[object, object]) -> None:
    # Never reads the request: the refusal costs the same whatever the client sends.
    await context.abort_with_status(status_for(Unauthenticated(DENIED)).grpc_status())


def _denial() -> grpc.RpcMethodHandler[Req, Resp]:
    """One shape fits every method: a stream-request handler is not given the
    request, and a unary-response call accepts a status without a message; with
    neither deserializer nor serializer, it is a handler of any message types."""
    return grpc.stream_stream_rpc_method_handler(_deny)


class AuthInterceptor(aio.ServerInterceptor):
    """Refuses calls without a valid token before their request is read."""

    def __init__(self, authenticator: Authenticator, on_denied: Callable[[str], None] | None = None) -> None:
        self._auth = authenticator
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        method = handler_call_details.method or ""
        if method.startswith(OPEN_PREFIXES) or self._auth.identify(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        if self._on_denied is not None:
            self._on_denied(method)
        return _denial()
