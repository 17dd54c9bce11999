"""The serving core's pure parts, without a server: the fair queue's policy,
the result store's bounds, and the ETA across scales of different cost."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.options import Limits
from stylize_server.job.plan import JobPlan
from stylize_server.job.types import Estimate, Losses, Progress, ScaleEstimate
from stylize_server.serving import frames
from stylize_server.serving.fairqueue import FairQueue
from stylize_server.serving.jobs import Job
from stylize_server.serving.results import ENTRY_OVERHEAD, ResultStore
from stylize_server.wire import admission
from tests.support.server import small_request

_seq = iter(range(1, 10_000))


@dataclass(eq=False)
class Item:
    client: str
    memory: int = 1
    seq: int = field(default_factory=lambda: next(_seq))
    overtaken: int = 0

    def __repr__(self) -> str:
        return f"{self.client}{self.seq}"


def test_round_robin_least_recently_served_first():
    queue: FairQueue[Item] = FairQueue(overtake_limit=2)
    a = [Item("a") for _ in range(3)]
    b = [Item("b") for _ in range(2)]
    queue.served("a")  # a has a job running already
    for item in a:
        queue.push(item)
    c = Item("c")
    for item in [*b, c]:
        queue.push(item)
    # b and c have never been served, so they go before a; then turn by turn.
    assert queue.order() == [b[0], c, a[0], b[1], a[1], a[2]]
    taken = [queue.take(lambda _: True) for _ in range(6)]
    assert taken == [b[0], c, a[0], b[1], a[1], a[2]]
    assert len(queue) == 0 and queue.take(lambda _: True) is None


def test_a_big_job_may_be_overtaken_only_a_few_times():
    queue: FairQueue[Item] = FairQueue(overtake_limit=2)
    big = Item("big", memory=10)
    queue.push(big)
    smalls = [Item(f"s{i}") for i in range(4)]
    for item in smalls:
        queue.push(item)
    fits = lambda item: item.memory <= 5  # noqa: E731 - the free memory: the big job does not fit
    assert queue.take(fits) is smalls[0]
    assert queue.take(fits) is smalls[1]
    assert big.overtaken == 2
    # Overtaken twice: nothing passes it any more; it starts once it fits.
    assert queue.take(fits) is None
    assert queue.take(lambda item: True) is big
    assert queue.take(fits) is smalls[2]


def test_remove_and_counts():
    queue: FairQueue[Item] = FairQueue(overtake_limit=1)
    x, y = Item("x"), Item("x")
    queue.push(x)
    queue.push(y)
    assert queue.count("x") == 2 and x in queue
    assert queue.remove(x) and not queue.remove(x)
    assert queue.order() == [y] and queue.count("x") == 1


def test_result_store_is_bounded_in_bytes_expires_and_is_keyed_by_client():
    now = [0.0]
    changes: list[int] = []
    store: ResultStore[str] = ResultStore(3 * (1000 + ENTRY_OVERHEAD), retention=60, clock=lambda: now[0])
    store._on_change = changes.append
    for i in range(4):
        store.put(("alice", f"r{i}"), "fp", f"out{i}", 1000)
    assert store.get(("alice", "r0")) is None  # the oldest went to make room
    assert [store.get(("alice", f"r{i}")).outcome for i in (1, 2, 3)] == ["out1", "out2", "out3"]
    assert store.get(("bob", "r1")) is None  # another client's id is not this client's
    assert store.bytes == sum(changes) == 3 * (1000 + ENTRY_OVERHEAD)
    assert not store.put(("alice", "huge"), "fp", "x", 10**9)  # larger than the whole store: not kept
    now[0] = 61.0
    assert store.get(("alice", "r3")) is None and store.bytes == 0 == sum(changes)


def _job(scales: list[tuple[int, float]]) -> Job:
    head = admission.read_request(small_request(), Limits())
    estimate = Estimate(
        input_pixels=1,
        scales=tuple(
            ScaleEstimate(
                size=64,
                height=64,
                width=64,
                iterations=n,
                style_pixels=1,
                device_memory_bytes=1,
                flops_per_iteration=1.0,
                seconds_per_iteration=s,
            )
            for n, s in scales
        ),
        device_memory_bytes=1,
        flops=1.0,
        seconds=sum(n * s for n, s in scales),
    )
    return Job(
        client="c",
        request_id="r",
        reattachable=False,
        fingerprint="",
        head=head,
        plan=JobPlan(head.options, estimate),
        request=pb.StylizeRequest(),
    )


def _progress(iteration: int, scale_index: int, elapsed: float) -> Progress:
    return Progress(
        iteration,
        20,
        Losses.of([("content", 1.0), ("style", 1.0), ("tv", 1.0)]),
        elapsed,
        scale_index,
        64,
        lambda: None,
    )  # type: ignore[arg-type,return-value]


def test_eta_scales_the_model_by_the_measured_speed_across_scales():
    # The second scale's iterations cost four times the first's.
    job = _job([(10, 0.1), (10, 0.4)])
    # Halfway through the first scale, running twice as slow as the model says.
    assert frames.eta(job, _progress(5, 0, elapsed=1.0)) == pytest.approx((5 * 0.1 + 10 * 0.4) * 2)
    # At the end of the first scale, as fast as the model: the whole costly second scale is left.
    assert frames.eta(job, _progress(10, 0, elapsed=1.0)) == pytest.approx(4.0)
    # Half of the second scale done at the model's speed.
    assert frames.eta(job, _progress(15, 1, elapsed=1.0 + 5 * 0.4)) == pytest.approx(2.0)
    assert frames.eta(job, _progress(20, 1, elapsed=5.0)) == pytest.approx(0.0)
