"""How the clients connect and retry, shared by the sync and asyncio clients:
TLS settings, the bearer token, channel options, and the retry policy.

Channel options are sized for large images (send/receive limits far above
gRPC's 4 MiB default) and select round-robin load balancing, so a
`dns:///stylize-headless.ns.svc:50051` target spreads streams over every pod of
a headless Kubernetes Service instead of pinning them to the first address.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from stylize_api.v1 import stylize_pb2_grpc

from . import health as _health
from .errors import DeadlineExceeded, Failure

DEFAULT_TARGET = "localhost:50051"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class TLSConfig:
    """TLS for the channel: `ca` verifies the server (None: system roots);
    `cert` + `key` present a client certificate (mutual TLS). Paths or PEM bytes."""

    ca: str | os.PathLike[str] | bytes | None = None
    cert: str | os.PathLike[str] | bytes | None = None
    key: str | os.PathLike[str] | bytes | None = None
    server_name: str | None = None  # overrides the name checked against the server's certificate

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: a client certificate needs both cert and key")
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca), private_key=_pem(self.key), certificate_chain=_pem(self.cert)
        )


def _pem(value: str | os.PathLike[str] | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how long apart, a call is tried again.

    Which failures are retried is decided by code and reason (`Failure.retryable`:
    a lost connection, LOADING, DRAINING, QUEUE_FULL, CLIENT_QUOTA, CALL_LIMIT,
    CLIENT_CALL_LIMIT, JOB_STREAM_LIMIT);
    this policy says how many attempts and how long to wait. Delays grow
    exponentially (initial_backoff * multiplier**n, capped at max_backoff) with
    full jitter, so clients turned away by one full queue do not come back in
    lockstep. A server's RetryInfo delay is the floor of the wait (capped at
    max_server_delay, so a server cannot park a client for an hour).
    """

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    multiplier: float = 2.0
    max_server_delay: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1 or self.max_server_delay < 0:
            raise ValueError("RetryPolicy: backoffs and delays must be >= 0 and multiplier >= 1")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def delay(self, attempt: int, floor: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based); `floor` is the server's RetryInfo delay."""
        bound = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        jittered = (rng or random).uniform(0.0, bound)
        if floor is None:
            return jittered
        return max(jittered, min(floor, self.max_server_delay))


class CallBudget:
    """One logical call's attempts and deadline, the bookkeeping that the sync
    and asyncio retry loops share. `timeout` covers every attempt together."""

    def __init__(self, timeout: float | None, policy: RetryPolicy) -> None:
        self.timeout = timeout
        self.policy = policy
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.attempts = 0

    def next_attempt(self) -> float | None:
        """Count a new attempt and return its timeout (None: no deadline);
        raise DeadlineExceeded when the budget is spent."""
        self.attempts += 1
        if self.deadline is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded(
                f"deadline exceeded: no answer within {self.timeout:g} s",
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
                attempts=self.attempts,
            )
        return remaining

    def retry_delay(self, failure: Failure) -> float | None:
        """Seconds to wait before trying again after `failure`, or None when
        attempts are used up or the wait would outlast the deadline. Whether
        the failure is worth retrying at all is the caller's decision."""
        if self.attempts >= self.policy.max_attempts:
            return None
        delay = self.policy.delay(self.attempts, failure.retry_after)
        if self.deadline is not None and time.monotonic() + delay >= self.deadline:
            return None
        return delay


def channel_options(
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """Options for a channel to a stylize server; `extra` entries override these."""
    # No retryPolicy here: retries are ours (RetryPolicy), because only we know
    # that a stream which has started must not be replayed.
    service_config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    opts: dict[str, Any] = {
        "grpc.max_send_message_length": max_message_bytes,
        "grpc.max_receive_message_length": max_message_bytes,
        "grpc.service_config": json.dumps(service_config),
        "grpc.primary_user_agent": "stylize-client",
    }
    opts.update(dict(extra))
    return list(opts.items())


def open_channel(
    channels: Any,
    target: str,
    tls: TLSConfig | None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    extra: Sequence[tuple[str, Any]] = (),
) -> Any:
    """A channel from `channels` (the `grpc` module, or `grpc.aio`), TLS or plaintext."""
    extra = list(extra)
    if tls is not None and tls.server_name:
        extra.append(("grpc.ssl_target_name_override", tls.server_name))
    opts = channel_options(max_message_bytes, extra)
    if tls is not None:
        return channels.secure_channel(target, tls.credentials(), options=opts)
    return channels.insecure_channel(target, options=opts)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the bearer token (sent on plaintext and TLS channels alike)."""
    if not token:
        return ()
    return (("authorization", f"Bearer {token}"),)


# The metadata that proves, on a server without auth, that a job is this
# client's: the server reattaches and cancels a job only for the secret it
# was started with (server: stylize_server/ownership.py).
JOB_SECRET_METADATA = "stylize-job-secret"


def new_job_secret() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 random bits


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in `path`, surrounding whitespace removed; ValueError if empty."""
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


class ClientChannel:
    """What the sync and asyncio clients share: the channel, its stub, the
    health method, the token and the call defaults. `_grpc` is the module that
    makes channels (`grpc` or `grpc.aio`)."""

    _grpc: Any = grpc

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        token: str | None = None,
        tls: TLSConfig | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
        job_secret: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        # Sent on every call: a server without auth lets only its holder
        # reattach to or cancel the jobs this client starts.
        self.job_secret = job_secret or new_job_secret()
        self._metadata = (*auth_metadata(token), (JOB_SECRET_METADATA, self.job_secret))
        self._channel = open_channel(self._grpc, target, tls, max_message_bytes, options)
        self._stub = stylize_pb2_grpc.StyleTransferStub(self._channel)  # type: ignore[no-untyped-call]
        self._health_check = self._channel.unary_unary(
            _health.HEALTH_CHECK_METHOD, request_serializer=None, response_deserializer=None
        )
