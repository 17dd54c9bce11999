"""Fair share bounds waiting (issue 17, item 5): while another client waits, a
client holds at most max(1, slots - 1) running slots. Alice may still take
every slot while nobody else waits; once Bob waits he gets the next slot that
frees, and Alice's queued jobs never start ahead of him, not even by
overtaking a job of his that waits for memory. The queue's rule without a
server, then the scheduler on a real in-process server."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import cost
from stylize_server.job.layout import Pooling
from stylize_server.job.options import Limits, resolve
from stylize_server.serving.fairqueue import FairQueue
from stylize_server.wire import admission
from tests.support.images import png_bytes
from tests.support.metrics import wait_for_value
from tests.support.server import StreamReader, is_kind, long_request, running_server

_seq = iter(range(1, 10_000))


@dataclass(eq=False)
class Item:
    client: str
    memory: int = 1
    seq: int = field(default_factory=lambda: next(_seq))
    overtaken: int = 0


def test_an_ineligible_job_neither_blocks_nor_counts_as_overtaken():
    queue: FairQueue[Item] = FairQueue(overtake_limit=1)
    capped, big, small = Item("alice"), Item("bob", memory=10), Item("carol")
    for item in (capped, big, small):
        queue.push(item)
    assert sorted(queue.waiting_clients()) == ["alice", "bob", "carol"]
    eligible = lambda item: item.client != "alice"  # noqa: E731 - alice is at her share
    fits = lambda item: item.memory <= 5  # noqa: E731
    assert queue.take(fits, eligible) is small  # overtakes bob's big job, skips alice's
    assert (capped.overtaken, big.overtaken) == (0, 1)
    assert queue.take(fits, eligible) is None  # bob's may not be overtaken again; alice's still may not start
    assert queue.take(lambda item: True, eligible) is big
    assert queue.take(fits) is capped


def _tokens(tmp_path) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    path = tmp_path / "tokens"
    path.write_text("alice:token-a\nbob:token-b\n")
    return str(path), [("authorization", "Bearer token-a")], [("authorization", "Bearer token-b")]


def _started(readers: list[StreamReader]) -> int:
    return sum("started" in reader.kinds() for reader in readers)


def _flood(stub, metadata, running: int, queued: int, **fields) -> list[StreamReader]:
    """Alice's jobs, sent one by one: the first `running` run, the rest wait."""
    readers = []
    for i in range(running + queued):
        call = stub.Stylize(long_request(seed=i, **fields), timeout=120, metadata=metadata)
        readers.append(StreamReader(call))
        readers[-1].wait_for(is_kind("progress" if i < running else "queued"))
    return readers


def test_bob_gets_the_next_slot_though_alice_holds_every_slot(engine, tmp_path):
    tokens, alice, bob = _tokens(tmp_path)
    with running_server(
        engine=engine, auth_token_file=tokens, max_concurrent_jobs=2, queue_size=8, max_jobs_per_client=4
    ) as srv:
        stub = srv.stub()
        flood = _flood(stub, alice, running=2, queued=2)  # nobody else waits: alice uses every slot

        theirs = StreamReader(stub.Stylize(long_request(seed=9), timeout=120, metadata=bob))
        assert theirs.wait_for(is_kind("queued")).queued.position == 1
        flood[0].call.cancel()
        theirs.wait_for(is_kind("progress"))  # the slot alice gave back is bob's
        assert _started(flood[2:]) == 0  # her queued jobs did not start before his
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10, metadata=alice)
        assert (info.queue.running, info.queue.depth) == (2, 2)

        # Bob is gone: nobody else waits, so alice may hold every slot again.
        theirs.call.cancel()
        flood[2].wait_for(is_kind("progress"))
        assert _started(flood[3:]) == 0
        flood[1].call.cancel()
        flood[3].wait_for(is_kind("progress"))
        for reader in flood:
            reader.call.cancel()
        wait_for_value(srv.metrics_port, "stylize_jobs_in_progress", lambda v: v == 0)


def _need(request: pb.StylizeRequest, engine) -> int:
    head = admission.read_request(request, Limits(max_iterations=5000))
    options = resolve(head.options, Pooling.AVG)
    found = cost.estimate(options, head.shapes, engine.profile, 1 << 61, 1 << 62, terms=engine.term_costs)
    return found.device_memory_bytes


def test_alice_cannot_overtake_bob_while_he_waits_for_memory(engine, tmp_path):
    # Adam: no L-BFGS history, so the estimates do not depend on the budget.
    small = long_request(optimizer=pb.OPTIMIZER_ADAM)
    big = long_request(optimizer=pb.OPTIMIZER_ADAM, size=96, content=pb.Image(data=png_bytes(96, 96, seed=5)), seed=9)
    s, b = _need(small, engine), _need(big, engine)
    budget = 2 * s + (b - s) // 2  # two of alice's fit; bob's fits alone, not beside one of hers
    assert 2 * s <= budget < s + b <= 2 * budget and b <= budget
    tokens, alice, bob = _tokens(tmp_path)
    with running_server(
        engine=engine,
        auth_token_file=tokens,
        max_concurrent_jobs=2,
        queue_size=8,
        max_jobs_per_client=4,
        device_memory_budget=budget,
    ) as srv:
        stub = srv.stub()
        flood = _flood(stub, alice, running=2, queued=2, optimizer=pb.OPTIMIZER_ADAM)
        theirs = StreamReader(stub.Stylize(big, timeout=120, metadata=bob))
        assert theirs.wait_for(is_kind("queued")).queued.position == 1

        # A slot frees, but bob's job does not fit beside alice's other one.
        # Her queued jobs fit; without the share cap they would overtake him.
        flood[0].call.cancel()
        assert flood[0].wait_done() == grpc.StatusCode.CANCELLED
        wait_for_value(srv.metrics_port, "stylize_jobs_in_progress", lambda v: v == 1)
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10, metadata=alice)
        assert (info.queue.running, info.queue.depth) == (1, 3)  # the free slot stays free for bob
        assert _started(flood[2:]) == 0

        flood[1].call.cancel()
        theirs.wait_for(is_kind("progress"))  # the memory came back: bob's job runs
        assert _started(flood[2:]) == 0
        for reader in [*flood, theirs]:
            reader.call.cancel()
        wait_for_value(srv.metrics_port, "stylize_jobs_in_progress", lambda v: v == 0)
