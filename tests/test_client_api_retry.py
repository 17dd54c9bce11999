"""The Python client against servers that are not ready for it, each started
for its test on 127.0.0.1 with random weights: a loading server and a full one
are retried until they serve, a queued job's Queued events come first, an
address nobody listens on raises ConnectError after the retries; and the retry
policy's backoff, which needs no server.
"""

from __future__ import annotations

import threading

import pytest

from stylize import (
    Cancelled,
    ConnectError,
    ErrorReason,
    Overloaded,
    Queued,
    Result,
    RetryPolicy,
    StyleTransferClient,
    Unavailable,
)
from tests.support.client import CONTENT, FAST, STYLE, hold_slot, kinds
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import free_port, running_server


def test_a_loading_server_is_retried_until_it_serves(engine):
    release = threading.Event()

    def slow_loader(config):
        release.wait(60)
        return engine

    with running_server(engine_loader=slow_loader, wait_ready=False) as srv:
        with (
            StyleTransferClient(srv.address, retry=RetryPolicy.none(), timeout=30) as impatient,
            pytest.raises(Unavailable) as info,
        ):
            list(impatient.stylize(CONTENT, STYLE, **FAST))
        assert info.value.reason is ErrorReason.LOADING and not isinstance(info.value, ConnectError)
        refused = value(scrape(srv.metrics_port), "stylize_requests_total", code="UNAVAILABLE")
        outcome: dict[str, object] = {}
        policy = RetryPolicy(max_attempts=100, initial_backoff=0.05, max_backoff=0.2)
        with StyleTransferClient(srv.address, retry=policy, timeout=120) as patient:
            stream = patient.stylize(CONTENT, STYLE, **FAST)
            runner = threading.Thread(target=lambda: outcome.update(events=list(stream)))
            runner.start()
            wait_for_value(srv.metrics_port, "stylize_requests_total", lambda v: v >= refused + 1, code="UNAVAILABLE")
            release.set()
            runner.join(120)
        assert isinstance(outcome["events"][-1], Result) and stream.attempts >= 2  # type: ignore[index]


def test_cannot_connect_raises_connect_error_after_the_retries():
    port = free_port()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with StyleTransferClient(f"127.0.0.1:{port}", retry=policy, timeout=30) as client:
        stream = client.stylize(CONTENT, STYLE, **FAST)
        with pytest.raises(ConnectError) as info:
            list(stream)
    assert stream.attempts == 3 and info.value.attempts == 3
    assert f"127.0.0.1:{port}" in str(info.value)


def _start_blocker(address: str):
    """A long job holding the only slot; returns (stream, thread, errors)."""
    return hold_slot(address, CONTENT, STYLE, **dict(FAST, iterations=4000))


def test_retry_on_resource_exhausted_succeeds_once_the_server_frees_up():
    with running_server(max_concurrent_jobs=1, queue_size=0) as srv:
        blocker, thread, errors = _start_blocker(srv.address)
        rejected_before = value(scrape(srv.metrics_port), "stylize_requests_total", code="RESOURCE_EXHAUSTED")

        # Without retries the full server answers at once.
        with (
            StyleTransferClient(srv.address, retry=RetryPolicy.none(), timeout=60) as impatient,
            pytest.raises(Overloaded) as info,
        ):
            list(impatient.stylize(CONTENT, STYLE, **FAST))
        assert "queue is full" in info.value.details

        policy = RetryPolicy(max_attempts=200, initial_backoff=0.05, max_backoff=0.2)
        outcome: dict[str, object] = {}
        with StyleTransferClient(srv.address, retry=policy, timeout=120) as patient:
            stream = patient.stylize(CONTENT, STYLE, **FAST)

            def run() -> None:
                outcome["events"] = list(stream)

            runner = threading.Thread(target=run)
            runner.start()
            # Free the slot only once the patient client has been turned away too.
            wait_for_value(
                srv.metrics_port,
                "stylize_requests_total",
                lambda v: v >= rejected_before + 2,
                code="RESOURCE_EXHAUSTED",
            )
            blocker.cancel()
            runner.join(120)
        thread.join(30)
        assert isinstance(outcome["events"][-1], Result)  # type: ignore[index]
        assert stream.attempts >= 2
        assert errors and isinstance(errors[0], Cancelled)


def test_queued_events_come_first_while_the_job_waits():
    with running_server(max_concurrent_jobs=1, queue_size=2) as srv:
        blocker, thread, _errors = _start_blocker(srv.address)
        events: list[object] = []
        queued = threading.Event()
        with StyleTransferClient(srv.address, timeout=120) as waiting:
            stream = waiting.stylize(CONTENT, STYLE, **FAST)

            def run() -> None:
                for event in stream:
                    events.append(event)
                    if isinstance(event, Queued):
                        queued.set()

            runner = threading.Thread(target=run)
            runner.start()
            assert queued.wait(60)
            blocker.cancel()
            runner.join(120)
        thread.join(30)
    names = kinds(events)
    first_started = names.index("Started")
    assert first_started >= 1 and set(names[:first_started]) == {"Queued"}
    assert events[0] == Queued(position=1, queue_depth=1)
    assert names[-1] == "Result"
    assert events[first_started].queue_wait_seconds > 0


def test_retry_policy_full_jitter_bounds_and_the_server_delay_as_floor():
    import random

    policy = RetryPolicy(max_attempts=4, initial_backoff=0.5, max_backoff=3.0, multiplier=2.0, max_server_delay=5.0)
    rng = random.Random(1)
    for attempt, bound in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)):
        delays = [policy.delay(attempt, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= bound for d in delays)
        assert max(delays) > bound * 0.8 and min(delays) < bound * 0.2  # spread over the whole range
        # RetryInfo's delay is the floor of the wait, whatever the jitter drew ...
        floored = [policy.delay(attempt, 1.25, rng) for _ in range(200)]
        assert all(max(1.25, 0.0) <= d <= max(bound, 1.25) for d in floored)
        # ... and a server cannot park the client longer than max_server_delay.
        assert all(policy.delay(attempt, 3600.0, rng) == 5.0 for _ in range(20))
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
