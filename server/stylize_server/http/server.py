"""The HTTP server (`--http-port`) on the gRPC server's own event loop.

Why aiohttp: it runs on the asyncio loop grpc.aio already runs (one loop, no
second thread or process; a job's frames reach HTTP streams the way they
reach gRPC ones), it streams request bodies (limits are enforced while the
body is read, never after buffering it) and responses (Server-Sent Events,
with back-pressure a send timeout can act on), and it is one pure-asyncio
dependency. An ASGI stack (Starlette + uvicorn) would add a server with a loop
of its own to integrate, and two packages instead of one.

The middlewares, in order: count every request by route and status (no
per-client label), the page's security headers and CORS (only for the origin
--http-allow-origin names), then auth: without a valid bearer token (when the
server has tokens) a /v1 route is refused before anything of the request is
read. Slowloris headers: aiohttp closes a connection that has not sent a
whole request within its keep-alive timeout, set to --request-receive-seconds.
"""

from __future__ import annotations

import importlib.resources
import logging
import pathlib
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Counter

from stylize_server.config import ServerConfig
from stylize_server.job.errors import Unauthenticated
from stylize_server.serving import metrics
from stylize_server.serving.auth import DENIED
from stylize_server.serving.service import StyleTransferService

from . import errors
from .jobs import SECRET_HEADER, JobRoutes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_REQUESTS = Counter(
    "stylize_http_requests",
    "HTTP requests by route (its template, or `other`) and HTTP status code.",
    ["route", "code"],
)
STATIC = pathlib.Path(str(importlib.resources.files("stylize_server.http") / "static"))
PAGE_HEADERS = {
    # Everything the page uses is its own: no CDN, no inline script.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE",
    "Access-Control-Allow-Headers": f"Authorization, Content-Type, Last-Event-ID, {SECRET_HEADER}",
    "Access-Control-Max-Age": "600",
}
SHUTDOWN_SECONDS = 5.0


class _ClientMistakes(logging.Filter):
    """aiohttp logs a request it cannot parse (a header line over 8 KiB,
    Content-Length with Transfer-Encoding) at ERROR with a traceback, before
    auth or any limit: one log entry per bad request for anyone who can
    connect. It has answered 400 already; that is a client's mistake, not the
    server's: DEBUG, no traceback. Errors of the server's own stay ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.DEBUG, "DEBUG", None, None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


HTTP_LOG = logging.getLogger("stylize.http")
HTTP_LOG.addFilter(_ClientMistakes())


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"


def build_app(service: StyleTransferService, allow_origin: str | None) -> tuple[web.Application, JobRoutes]:
    routes = JobRoutes(service)

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            HTTP_REQUESTS.labels(route=_route(request), code=str(exc.status)).inc()
            raise
        HTTP_REQUESTS.labels(route=_route(request), code=str(response.status)).inc()
        return response

    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        cors = allow_origin is not None and request.headers.get("Origin") == allow_origin
        if cors and request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204, headers=CORS_HEADERS)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        if not response.prepared:
            response.headers.update(PAGE_HEADERS)
            if cors and allow_origin is not None:
                response.headers["Access-Control-Allow-Origin"] = allow_origin
                response.headers["Vary"] = "Origin"
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/v1/") and service.auth.enabled:
            token = request.headers.get("Authorization")
            if service.auth.identify([("authorization", token)] if token else []) is None:
                if request.path == "/v1/stylize":
                    metrics.REQUESTS.labels(code="UNAUTHENTICATED").inc()
                    metrics.REFUSALS.labels(reason="UNAUTHENTICATED").inc()
                refused = errors.error_response(Unauthenticated(DENIED.replace("metadata", "header")))
                refused.headers["WWW-Authenticate"] = 'Bearer realm="stylize"'
                refused.force_close()  # the body, if any, is never read
                return refused
        return await handler(request)

    app = web.Application(middlewares=[count, headers, auth], client_max_size=1024)
    app.router.add_post("/v1/stylize", _closing_on_error(routes.stylize))
    app.router.add_get("/v1/jobs/{request_id}/events", routes.events)
    app.router.add_get("/v1/jobs/{request_id}/result", routes.result)
    app.router.add_delete("/v1/jobs/{request_id}", routes.cancel)
    app.router.add_get("/v1/info", routes.info)
    app.router.add_get("/", _page)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, append_version=False)
    return app, routes


def _closing_on_error(handler: Handler) -> Handler:
    """A refused upload closes its connection: the rest of its body is never read."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Exception as exc:
            response = errors.error_response(exc)
        if response.status >= 400:
            response.force_close()
        return response

    return wrapped


async def _page(request: web.Request) -> web.StreamResponse:
    del request
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def tls_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    """gRPC's certificate (and client CA, for mTLS) on the HTTP port too: a
    token never crosses the network in the clear where gRPC's would not."""
    if not cfg.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    if cfg.tls_client_ca:
        context.load_verify_locations(cfg.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class HttpServer:
    """aiohttp's runner and site for one Server (loop only)."""

    def __init__(self, service: StyleTransferService) -> None:
        self.service = service
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._routes: JobRoutes | None = None

    async def start(self) -> int:
        cfg = self.service.config
        app, self._routes = build_app(self.service, cfg.http_allow_origin)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,  # a client that leaves ends its handler (and frees its call)
            keepalive_timeout=cfg.request_receive_seconds,
            # Bodies reach the handlers as sent: aiohttp would otherwise inflate a
            # Content-Encoding body on the loop as it arrives, before any handler
            # (auth included) could refuse it; check_head refuses it undecoded.
            auto_decompress=False,
            # A refused request's unread body is not drained (aiohttp reads and
            # discards one for up to 10 s by default): the connection is closed.
            lingering_time=0,
            logger=HTTP_LOG,
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.http_port, backlog=1024, ssl_context=tls_context(cfg))
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"cannot listen on {cfg.host}:{cfg.http_port} (--http-port): {exc}") from exc
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self.port = int(sockets[0].getsockname()[1]) if sockets else cfg.http_port
        return self.port

    async def stop(self) -> None:
        if self._routes is not None:
            await self._routes.close()
        if self._runner is not None:
            await self._runner.cleanup()
