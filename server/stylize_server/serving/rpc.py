"""The grpc.aio server assembled: channel options (message limits, keepalive,
streams per connection, connection age), TLS and mTLS credentials, the auth
interceptor, the guard on request messages that do not parse (`deserialize`),
and the services (StyleTransfer, health, reflection)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from stylize_server.config import ServerConfig
from stylize_server.serving.auth import Authenticator, AuthInterceptor
from stylize_server.serving.deserialize import MalformedRequests
from stylize_server.serving.service import SERVICE_NAME, StyleTransferService, add_to_server

# How long streams may take to send their last frames once the jobs are over.
FLUSH_SECONDS = 5.0


def channel_options(cfg: ServerConfig) -> list[tuple[str, int | str]]:
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        # One connection may not open more streams than this; a gRPC client
        # queues the rest until a stream ends (see README, "Limits").
        ("grpc.max_concurrent_streams", cfg.max_streams_per_connection),
        # Find dead clients of long streams; let clients ping us every 10 s.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]
    if cfg.max_connection_age_seconds > 0:
        options += [
            ("grpc.max_connection_age_ms", int(cfg.max_connection_age_seconds * 1000)),
            # Streams on an aged connection may finish: the longest job fits.
            ("grpc.max_connection_age_grace_ms", int((cfg.max_job_seconds + FLUSH_SECONDS) * 1000)),
        ]
    return options


def credentials(cfg: ServerConfig) -> grpc.ServerCredentials | None:
    if not cfg.tls_cert:
        return None
    with open(cfg.tls_cert, "rb") as f:
        cert = f.read()
    with open(cfg.tls_key or "", "rb") as f:
        key = f.read()
    ca = None
    if cfg.tls_client_ca:
        with open(cfg.tls_client_ca, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def build(
    cfg: ServerConfig,
    service: StyleTransferService,
    health_servicer: health.aio.HealthServicer,
    authenticator: Authenticator,
    on_denied: Callable[[str], None],
) -> tuple[aio.Server, int]:
    """A started-to-be aio server listening on cfg.host:cfg.port; returns it and the port."""
    interceptors: list[aio.ServerInterceptor] = (
        [AuthInterceptor(authenticator, on_denied)] if authenticator.enabled else []
    )
    interceptors.append(MalformedRequests())  # after auth: a refused call never gets this far
    server = aio.server(interceptors=interceptors, options=channel_options(cfg))
    add_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bind = f"{cfg.host}:{cfg.port}"
    creds = credentials(cfg)
    try:
        port = server.add_secure_port(bind, creds) if creds else server.add_insecure_port(bind)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {bind}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {bind}")
    return server, port
