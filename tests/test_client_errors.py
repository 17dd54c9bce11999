"""Errors are classified by status code and ErrorInfo.reason alone, never by
the words of the message: the exception class, whether a call is retried (and
how long after: RetryInfo is the floor), and the CLI's exit code. The
messages below are chosen to mislead any word matching.

The retry tests run the sync and the asyncio client against a scripted
servicer on a real gRPC server on 127.0.0.1 (tests/support/fake_stylize.py).
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from stylize import (
    AsyncStyleTransferClient,
    ConnectError,
    ErrorReason,
    InvalidArgument,
    Overloaded,
    OverTimeLimit,
    RequestIdInUse,
    Result,
    RetryPolicy,
    ServerError,
    StyleTransferClient,
    TooLarge,
    Unavailable,
)
from stylize.cli.exits import (
    EXIT_CONNECT,
    EXIT_INVALID_ARGUMENT,
    EXIT_OVERLOADED,
    EXIT_SERVER_ERROR,
    EXIT_TOO_LARGE,
    exit_code_for,
)
from stylize.errors import Failure, error_class, error_for
from stylize_api.schema import DOMAIN
from tests.support.fake_stylize import fake_server, result_frames, started_frame, status

CODE = grpc.StatusCode
LIAR = "message larger than max: the queue is full; connection refused; too large"  # words mean nothing


def failure(code: grpc.StatusCode, reason: str | None = None, domain: str = DOMAIN, **extra) -> Failure:
    details = []
    if reason is not None:
        details.append(error_details_pb2.ErrorInfo(reason=reason, domain=domain))
    if "field" in extra:
        violation = error_details_pb2.BadRequest.FieldViolation(field=extra["field"], description="x")
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if "retry_after" in extra:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromMilliseconds(int(extra["retry_after"] * 1000))
        details.append(info)
    packed = []
    for d in details:
        box = any_pb2.Any()
        box.Pack(d)
        packed.append(box)
    return Failure.from_status(code, LIAR, status_pb2.Status(code=code.value[0], message=LIAR, details=packed))


@pytest.mark.parametrize(
    "code, reason, cls, retryable, exit_code",
    [
        (CODE.UNAVAILABLE, None, ConnectError, True, EXIT_CONNECT),  # transport: nobody chose to send it
        (CODE.UNAVAILABLE, "LOADING", Unavailable, True, EXIT_CONNECT),
        (CODE.UNAVAILABLE, "DRAINING", Unavailable, True, EXIT_CONNECT),
        (CODE.RESOURCE_EXHAUSTED, "QUEUE_FULL", Overloaded, True, EXIT_OVERLOADED),
        (CODE.RESOURCE_EXHAUSTED, "CLIENT_QUOTA", Overloaded, True, EXIT_OVERLOADED),
        (CODE.RESOURCE_EXHAUSTED, "CALL_LIMIT", Overloaded, True, EXIT_OVERLOADED),
        (CODE.RESOURCE_EXHAUSTED, "TOO_LARGE", TooLarge, False, EXIT_TOO_LARGE),
        (CODE.RESOURCE_EXHAUSTED, None, TooLarge, False, EXIT_TOO_LARGE),  # gRPC's own message-size refusal
        (CODE.FAILED_PRECONDITION, "OVER_TIME_LIMIT", OverTimeLimit, False, EXIT_TOO_LARGE),
        (CODE.FAILED_PRECONDITION, None, ServerError, False, EXIT_SERVER_ERROR),
        (CODE.INVALID_ARGUMENT, "INVALID_OPTION", InvalidArgument, False, EXIT_INVALID_ARGUMENT),
        (CODE.INVALID_ARGUMENT, "DECODE_FAILED", InvalidArgument, False, EXIT_INVALID_ARGUMENT),
        (CODE.INVALID_ARGUMENT, "MALFORMED_REQUEST", InvalidArgument, False, EXIT_INVALID_ARGUMENT),
        (CODE.ALREADY_EXISTS, "REQUEST_ID_IN_USE", RequestIdInUse, False, EXIT_INVALID_ARGUMENT),
        (CODE.INTERNAL, "NUMERICAL", ServerError, False, EXIT_SERVER_ERROR),
        (CODE.INTERNAL, None, ServerError, False, EXIT_SERVER_ERROR),
    ],
)
def test_classification_by_code_and_reason(code, reason, cls, retryable, exit_code):
    f = failure(code, reason)
    assert error_class(f) is cls
    assert f.retryable is retryable
    error = error_for(f, "host:1", attempts=3)
    assert type(error) is cls and exit_code_for(error) == exit_code
    assert (error.code, error.details, error.attempts) == (code, LIAR, 3)
    assert error.reason == (ErrorReason(reason) if reason else None)


def test_a_connection_never_made_says_how_to_start_a_server_and_a_lost_one_does_not():
    refused = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: Connection refused"
    error = error_for(Failure(CODE.UNAVAILABLE, refused), "127.0.0.1:9")
    assert type(error) is ConnectError
    assert str(error).endswith(
        "is a server running there? Start one with `make run` in a checkout of stylize (or `stylize-server`)"
    )
    lost = error_for(Failure(CODE.UNAVAILABLE, "Socket closed"), "127.0.0.1:9")
    assert type(lost) is ConnectError and "make run" not in str(lost)


def test_details_field_retry_delay_and_foreign_domains():
    f = failure(CODE.INVALID_ARGUMENT, "INVALID_OPTION", field="styles[1].mask")
    assert f.field == "styles[1].mask" and error_for(f, "h").field == "styles[1].mask"
    f = failure(CODE.RESOURCE_EXHAUSTED, "QUEUE_FULL", retry_after=1.5)
    assert f.retry_after == pytest.approx(1.5) and error_for(f, "h").retry_after == pytest.approx(1.5)
    # An ErrorInfo of another domain (a proxy's) is not this API's: it reads as no reason.
    f = failure(CODE.UNAVAILABLE, "QUEUE_FULL", domain="envoy.example")
    assert f.reason is None and f.transport and error_class(f) is ConnectError
    # A reason newer than this client: retried only where the server suggests a delay.
    assert failure(CODE.RESOURCE_EXHAUSTED, "NEW_REASON", retry_after=0.1).retryable
    assert not failure(CODE.RESOURCE_EXHAUSTED, "NEW_REASON").retryable
    assert error_class(failure(CODE.RESOURCE_EXHAUSTED, "NEW_REASON")) is Overloaded


def _fails_then_succeeds(times: int, error: grpc.Status):
    """A script: the first `times` calls end with `error`, then a result."""

    def script(call, request, context):
        if call < times:
            context.abort_with_status(error)
        yield started_frame(request)
        yield from result_frames(request, b"\x89PNG fake bytes")

    return script


async def _async_events(address: str, policy: RetryPolicy):
    async with AsyncStyleTransferClient(address, retry=policy, timeout=60) as client:
        return [e async for e in client.stylize(b"content", b"style")]


def _sync_events(address: str, policy: RetryPolicy):
    with StyleTransferClient(address, retry=policy, timeout=60) as client:
        return list(client.stylize(b"content", b"style"))


CLIENTS = {"sync": _sync_events, "asyncio": lambda a, p: asyncio.run(_async_events(a, p))}
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("reason", ["QUEUE_FULL", "CLIENT_QUOTA", "CALL_LIMIT", "LOADING", "DRAINING"])
def test_refusals_that_waiting_fixes_are_retried_with_the_same_request_id(client, reason):
    code = CODE.UNAVAILABLE if reason in ("LOADING", "DRAINING") else CODE.RESOURCE_EXHAUSTED
    with fake_server(_fails_then_succeeds(2, status(code, LIAR, reason))) as fake:
        events = CLIENTS[client](fake.address, FAST_RETRY)
    assert isinstance(events[-1], Result) and events[-1].image == b"\x89PNG fake bytes"
    ids = [r.request_id for r in fake.requests]
    assert len(ids) == 3 and len(set(ids)) == 1 and len(ids[0]) == 32  # one random id for the whole call


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "error, cls",
    [
        (status(CODE.RESOURCE_EXHAUSTED, LIAR, "TOO_LARGE", field="content"), TooLarge),
        (status(CODE.RESOURCE_EXHAUSTED, LIAR), TooLarge),
        (status(CODE.INVALID_ARGUMENT, LIAR, "INVALID_OPTION", field="size"), InvalidArgument),
        (status(CODE.ALREADY_EXISTS, LIAR, "REQUEST_ID_IN_USE", field="request_id"), RequestIdInUse),
        (status(CODE.INTERNAL, LIAR, "NUMERICAL"), ServerError),
    ],
)
def test_what_waiting_does_not_fix_is_sent_once(client, error, cls):
    with fake_server(_fails_then_succeeds(1, error)) as fake:
        with pytest.raises(cls) as info:
            CLIENTS[client](fake.address, FAST_RETRY)
        assert len(fake.requests) == 1
    assert info.value.attempts == 1 and info.value.details == LIAR


@pytest.mark.parametrize("client", CLIENTS)
def test_the_server_retry_delay_is_the_floor_of_the_backoff(client):
    arrivals: list[float] = []

    def script(call, request, context):
        arrivals.append(time.monotonic())
        if call == 0:
            context.abort_with_status(status(CODE.RESOURCE_EXHAUSTED, "queue full", "QUEUE_FULL", retry_after=0.4))
        yield started_frame(request)
        yield from result_frames(request, b"image")

    with fake_server(script) as fake:
        events = CLIENTS[client](fake.address, FAST_RETRY)  # its own backoff would be <= 0.01 s
        assert len(fake.requests) == 2
    assert isinstance(events[-1], Result)
    assert arrivals[1] - arrivals[0] >= 0.4  # a wait never ends early: this bound cannot flake


@pytest.mark.parametrize("client", CLIENTS)
def test_retries_end_with_the_last_error_and_the_attempt_count(client):
    with fake_server(_fails_then_succeeds(10, status(CODE.UNAVAILABLE, LIAR, "DRAINING"))) as fake:
        with pytest.raises(Unavailable) as info:
            CLIENTS[client](fake.address, FAST_RETRY)
        assert len(fake.requests) == 4
    assert type(info.value) is Unavailable and info.value.reason is ErrorReason.DRAINING
    assert info.value.attempts == 4 and str(info.value).endswith("(after 4 attempts)")


@pytest.mark.parametrize("client", CLIENTS)
def test_after_the_job_started_only_a_lost_connection_is_retried(client):
    """A refusal after `started` is the job's answer, not a reason to run it again."""

    def script(call, request, context):
        yield started_frame(request)
        context.abort_with_status(status(CODE.UNAVAILABLE, LIAR, "DRAINING"))

    with fake_server(script) as fake:
        with pytest.raises(Unavailable):
            CLIENTS[client](fake.address, FAST_RETRY)
        assert len(fake.requests) == 1
