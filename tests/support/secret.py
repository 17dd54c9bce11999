"""The job secret on test channels (issue 17, item 6): a server without auth
reattaches and cancels a job only for the `stylize-job-secret` metadata it was
started with, as the client library sends on every call. Test channels send
one fixed secret on every call (unless the call names its own), so the tests
that talk to a server without auth through raw stubs reattach and cancel as a
client library would; a test of isolation opens a channel with another secret
or none."""

from __future__ import annotations

import collections
from typing import Any

import grpc

JOB_SECRET_METADATA = "stylize-job-secret"
TEST_JOB_SECRET = "test-job-secret-0123456789abcdef"


_FIELDS = ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")


class _Details(collections.namedtuple("_Details", _FIELDS), grpc.ClientCallDetails):
    pass


class _JobSecret(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def _with_secret(self, details: Any) -> _Details:
        metadata = list(details.metadata or ())
        if not any(key == JOB_SECRET_METADATA for key, _ in metadata):
            metadata.append((JOB_SECRET_METADATA, self._secret))
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_secret(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_secret(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._with_secret(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._with_secret(details), request_iterator)


def with_job_secret(channel: grpc.Channel, secret: str | None = TEST_JOB_SECRET) -> grpc.Channel:
    """`channel`, sending `secret` on every call that does not name its own (None: as it is)."""
    if secret is None:
        return channel
    return grpc.intercept_channel(channel, _JobSecret(secret))
