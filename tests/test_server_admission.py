"""Admission by cost on a real in-process server: the memory budget decides
which jobs run together, a job that can never fit is refused naming its
estimate, the budget and what would fit, clients get a fair share of the queue
and at most their quota, the `started` frame and GetServerInfo carry the
estimate and the budget, and a deadline stops a job during its style pass."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import cost
from stylize_server.job.layout import Pooling
from stylize_server.job.options import Limits, resolve
from stylize_server.wire import admission
from tests.support.images import png_bytes
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request

MIB = 1 << 20


def _estimate(request: pb.StylizeRequest, engine, budget: int = 1 << 62) -> int:
    """The peak memory the server's cost model gives `request` (as admission computes it)."""
    head = admission.read_request(request, Limits(max_iterations=5000))
    options = resolve(head.options, Pooling.AVG)
    return cost.estimate(
        options, head.shapes, engine.profile, budget // 2, budget, terms=engine.term_costs
    ).device_memory_bytes


def _reason(error: grpc.RpcError) -> tuple[str, bool]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, retry = "", False
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        retry = retry or detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    return reason, retry


def test_a_job_waits_for_memory_though_a_slot_is_free(engine):
    # Adam: no L-BFGS history to shrink, so the estimate does not depend on the budget.
    job = long_request(optimizer=pb.OPTIMIZER_ADAM)
    need = _estimate(job, engine)
    budget = need * 3 // 2  # one such job fits, two do not
    with running_server(engine=engine, max_concurrent_jobs=2, device_memory_budget=budget) as srv:
        stub = srv.stub()
        first = StreamReader(stub.Stylize(job, timeout=120))
        started = first.wait_for(is_kind("started")).started
        assert started.estimate.device_memory_bytes == need
        assert [s.width for s in started.estimate.scales] == [64] and started.estimate.seconds > 0
        second = StreamReader(stub.Stylize(long_request(optimizer=pb.OPTIMIZER_ADAM, seed=2), timeout=120))
        assert second.wait_for(is_kind("queued")).queued.position == 1
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        assert (info.queue.running, info.queue.depth) == (1, 1)  # a slot is free: memory is not
        assert (info.budget.device_memory_budget_bytes, info.budget.reserved_bytes) == (budget, need)
        assert info.budget.tile_size == -1
        families = scrape(srv.metrics_port)
        assert value(families, "stylize_memory_budget_bytes") >= budget
        assert value(families, "stylize_memory_reserved_bytes") >= need

        first.call.cancel()
        second.wait_for(is_kind("started"))  # the memory came back: it runs
        second.call.cancel()
        assert second.wait_done() == grpc.StatusCode.CANCELLED
        wait_for_value(srv.metrics_port, "stylize_jobs_in_progress", lambda v: v == 0)
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        assert info.budget.reserved_bytes == 0


def test_a_job_that_can_never_fit_is_too_large_with_what_would_fit(engine):
    small = small_request(size=64)
    budget = _estimate(small, engine) + 8 * MIB
    with running_server(engine=engine, max_pixels=256 * 256, device_memory_budget=budget) as srv:
        port = srv.metrics_port
        refused0 = value(scrape(port), "stylize_refusals_total", reason="TOO_LARGE")
        big = small_request(size=256, content=pb.Image(data=png_bytes(256, 256, seed=3)))
        with pytest.raises(grpc.RpcError) as caught:
            list(srv.stub().Stylize(big, timeout=30))
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _reason(error) == ("TOO_LARGE", False)  # waiting would not help: no RetryInfo
        message = error.details() or ""
        assert message.startswith("size: the job needs an estimated")
        assert f"budget of {budget / 2**30:.2f} GiB" in message and "at 256x256" in message
        assert "what would fit: size" in message and "or less" in message and "optimizer adam" in message
        assert value(scrape(port), "stylize_refusals_total", reason="TOO_LARGE") == refused0 + 1
        # What the message says would fit does fit.
        fits = int(message.split("what would fit: size ")[1].split(" ")[0])
        frames = list(srv.stub().Stylize(small_request(size=fits, iterations=1, **_content(256)), timeout=60))
        assert frames[-1].HasField("result")


def _content(side: int) -> dict[str, pb.Image]:
    return {"content": pb.Image(data=png_bytes(side, side, seed=3))}


def test_fair_share_between_two_clients(engine, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:token-a\nbob:token-b\n")
    alice, bob = [("authorization", "Bearer token-a")], [("authorization", "Bearer token-b")]
    with running_server(
        engine=engine, auth_token_file=str(tokens), max_concurrent_jobs=1, queue_size=8, max_jobs_per_client=4
    ) as srv:
        stub = srv.stub()
        port = srv.metrics_port
        quota0 = value(scrape(port), "stylize_refusals_total", reason="CLIENT_QUOTA")
        # One call at a time: calls sent together reach the queue in any order, and the test
        # needs Alice's first job running and the other three queued behind it in her order.
        flood = [StreamReader(stub.Stylize(long_request(seed=0), timeout=120, metadata=alice))]
        flood[0].wait_for(is_kind("progress"))
        for i in range(1, 4):
            flood.append(StreamReader(stub.Stylize(long_request(seed=i), timeout=120, metadata=alice)))
            assert flood[-1].wait_for(is_kind("queued")).queued.position == i
        # Alice holds her quota: her fifth job is refused, with a delay to retry after.
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Stylize(small_request(), timeout=30, metadata=alice))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _reason(caught.value) == ("CLIENT_QUOTA", True)
        assert value(scrape(port), "stylize_refusals_total", reason="CLIENT_QUOTA") == quota0 + 1

        # Bob arrives last but goes first: Alice was served last.
        small = StreamReader(stub.Stylize(long_request(seed=9), timeout=120, metadata=bob))
        assert small.wait_for(is_kind("queued")).queued.position == 1
        for reader, moved_to in zip(flood[1:], (2, 3, 4)):  # each of Alice's moved back by one
            reader.wait_for(lambda f, p=moved_to: f.HasField("queued") and f.queued.position == p)

        flood[0].call.cancel()
        small.wait_for(is_kind("progress"))  # Bob's job runs next (one slot: nothing else can start now)
        assert all("started" not in r.kinds() for r in flood[1:])
        small.call.cancel()
        flood[1].wait_for(is_kind("started"))  # then Alice's, in her order
        assert all("started" not in r.kinds() for r in flood[2:])
        for reader in flood:
            reader.call.cancel()
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)
        wait_for_value(port, "stylize_queue_depth", lambda v: v == 0)


def test_a_deadline_stops_a_job_within_one_style_pass(engine):
    """Eight styles at four times the output's side make the style pass long;
    a deadline that passes during it stops the job after the style being
    computed, long before the pass would have ended (compared, in this test,
    with the same job's pass without a deadline)."""
    styles = [pb.StyleImage(image=pb.Image(data=png_bytes(48, 48, seed=10 + i))) for i in range(8)]
    job = {"styles": styles, "style_scale": 4.0, "size": 64, "iterations": 1}
    with running_server(engine=engine, max_styles=8, max_concurrent_jobs=1) as srv:
        stub = srv.stub()
        port = srv.metrics_port
        whole = list(stub.Stylize(small_request(**job), timeout=300))
        full_pass = whole[-1].result.compute_seconds  # eight style passes and one iteration
        stopped0 = value(scrape(port), "stylize_jobs_stopped_total", reason="deadline")
        iterations0 = value(scrape(port), "stylize_iterations_total")
        durations0 = value(scrape(port), "stylize_job_duration_seconds_sum")
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Stylize(small_request(**job, seed=5), timeout=full_pass / 8))
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for_value(port, "stylize_jobs_stopped_total", lambda v: v == stopped0 + 1, reason="deadline")
        after = scrape(port)
        assert value(after, "stylize_iterations_total") == iterations0  # stopped before its first iteration
        held = value(after, "stylize_job_duration_seconds_sum") - durations0
        assert held < full_pass / 2, (held, full_pass)
