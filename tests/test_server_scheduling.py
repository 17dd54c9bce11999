"""Scheduling and cancellation on a real in-process server: the FIFO queue and
its position frames, a full queue, cancel, deadlines and the per-job time
limit. Long jobs (64 px, thousands of iterations) are stopped as soon as their
frames show they run; tests wait on frames and metrics, never on wall time."""

from __future__ import annotations

import logging
import time

import grpc

from stylize_api.v1 import stylize_pb2 as pb
from stylize_api.v1 import stylize_pb2_grpc as pb_grpc
from tests.support.images import decode
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import StreamReader, collapse, is_kind, long_request, running_server, small_request


def _idle(srv) -> None:
    """Wait until the server runs and queues nothing (seen from GetServerInfo)."""
    stub = srv.stub()
    for _ in range(2000):
        q = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10).queue
        if q.running == 0 and q.depth == 0:
            return
        time.sleep(0.01)
    raise AssertionError("server never became idle")


def test_second_request_is_queued_at_position_1_then_runs(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        stub = srv.stub()
        first = StreamReader(stub.Stylize(long_request(request_id="first"), timeout=120))
        first.wait_for(is_kind("progress"))
        second = StreamReader(stub.Stylize(small_request(request_id="second", iterations=3), timeout=120))
        queued = second.wait_for(is_kind("queued")).queued
        assert (queued.position, queued.queue_depth) == (1, 1)
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        assert (info.queue.running, info.queue.depth) == (1, 1)

        # A job with a request_id outlives a lost stream (--detach-grace-seconds):
        # the Cancel RPC is how its client stops it at once.
        assert stub.Cancel(pb.CancelRequest(request_id="first"), timeout=10).stopped
        assert second.wait_done() == grpc.StatusCode.OK
        assert collapse(second.kinds()) == ["queued", "started", "progress", "result"]
        assert second.frames[0].queued.position == 1  # no other position was ever sent
        assert [f.queued.position for f in second.frames if f.HasField("queued")] == [1]
        assert [f.progress.iteration for f in second.frames if f.HasField("progress")][-1] == 3
        assert second.frames[1].started.queue_wait_seconds > 0
        assert second.frames[-1].result.queue_wait_seconds > 0
        assert first.wait_done() == grpc.StatusCode.CANCELLED


def test_queue_positions_move_up_and_a_queued_job_can_be_cancelled(engine):
    with running_server(engine=engine, max_concurrent_jobs=1, queue_size=3) as srv:
        stub = srv.stub()
        running = StreamReader(stub.Stylize(long_request(), timeout=120))
        running.wait_for(is_kind("progress"))
        second = StreamReader(stub.Stylize(small_request(iterations=2), timeout=120))
        second.wait_for(is_kind("queued"))
        third = StreamReader(stub.Stylize(small_request(iterations=2), timeout=120))
        assert third.wait_for(is_kind("queued")).queued.position == 2

        before = value(scrape(srv.metrics_port), "stylize_jobs_stopped_total", reason="client")
        second.call.cancel()  # a queued job leaves the queue; the one behind it moves up
        moved = third.wait_for(lambda f: f.HasField("queued") and f.queued.position == 1)
        assert moved.queued.queue_depth == 1
        assert second.wait_done() == grpc.StatusCode.CANCELLED
        wait_for_value(srv.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 1, reason="client")

        running.call.cancel()
        assert third.wait_done() == grpc.StatusCode.OK
        assert third.kinds()[-1] == "result"


def test_full_queue_is_resource_exhausted_at_once(engine):
    with running_server(engine=engine, max_concurrent_jobs=1, queue_size=1) as srv:
        stub = srv.stub()
        running = StreamReader(stub.Stylize(long_request(), timeout=120))
        running.wait_for(is_kind("progress"))
        waiting = StreamReader(stub.Stylize(long_request(), timeout=120))
        waiting.wait_for(is_kind("queued"))

        refused = StreamReader(stub.Stylize(small_request(), timeout=120))
        assert refused.wait_done() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in refused.details and "capacity 1" in refused.details
        assert refused.frames == []
        wait_for_value(srv.metrics_port, "stylize_requests_total", lambda v: v >= 1, code="RESOURCE_EXHAUSTED")
        # A full pod answers before decoding anything: even bytes that are no image get the queue's answer.
        garbage = small_request()
        garbage.content.data = b"not an image at all"
        undecoded = StreamReader(stub.Stylize(garbage, timeout=120))
        assert undecoded.wait_done() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in undecoded.details

        waiting.call.cancel()
        running.call.cancel()
        _idle(srv)
        # Room again: the next request runs.
        frames = list(stub.Stylize(small_request(iterations=2), timeout=60))
        assert frames[-1].HasField("result")


def test_cancel_mid_stream_stops_the_job_and_frees_the_slot(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        port = srv.metrics_port
        stub = srv.stub()
        before = scrape(port)
        cancelled0 = value(before, "stylize_jobs_stopped_total", reason="client")
        durations0 = value(before, "stylize_job_duration_seconds_count")

        job = StreamReader(stub.Stylize(long_request(), timeout=120))
        job.wait_for(lambda f: f.HasField("progress") and f.progress.iteration >= 2)
        job.call.cancel()
        assert job.wait_done() == grpc.StatusCode.CANCELLED

        # The engine returned (the job's duration was observed) and it was counted as cancelled.
        wait_for_value(port, "stylize_job_duration_seconds_count", lambda v: v >= durations0 + 1)
        wait_for_value(port, "stylize_jobs_stopped_total", lambda v: v >= cancelled0 + 1, reason="client")
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)
        wait_for_value(port, "stylize_requests_total", lambda v: v >= 1, code="CANCELLED")
        last = value(scrape(port), "stylize_iterations_total")

        # The slot is free: the next job starts at once (no queued frame) and finishes.
        frames = list(stub.Stylize(small_request(iterations=3), timeout=60))
        assert next(f.WhichOneof("frame") for f in frames) == "started"
        assert frames[-1].result.iterations == 3
        # The cancelled job ran no more iterations: only the new job's 3 were added.
        assert value(scrape(port), "stylize_iterations_total") == last + 3


def test_deadline_stops_a_running_job(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        port = srv.metrics_port
        stub = srv.stub()
        deadline0 = value(scrape(port), "stylize_jobs_stopped_total", reason="deadline")
        job = StreamReader(stub.Stylize(long_request(), timeout=2.0))
        assert job.wait_done() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "progress" in job.kinds()  # it was running when the deadline passed
        wait_for_value(port, "stylize_jobs_stopped_total", lambda v: v >= deadline0 + 1, reason="deadline")
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)
        frames = list(stub.Stylize(small_request(iterations=2), timeout=60))
        assert frames[0].HasField("started") and frames[-1].HasField("result")


def test_deadline_while_queued_removes_the_job(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        stub = srv.stub()
        running = StreamReader(stub.Stylize(long_request(), timeout=120))
        running.wait_for(is_kind("progress"))
        queued = StreamReader(stub.Stylize(small_request(), timeout=1.0))
        assert queued.wait_done() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert queued.kinds() == ["queued"]
        wait_for_value(srv.metrics_port, "stylize_queue_depth", lambda v: v == 0)
        running.call.cancel()
        _idle(srv)


def test_server_time_limit_per_job(engine, caplog):
    caplog.set_level(logging.INFO, logger="stylize.jobs")
    with running_server(engine=engine, max_job_seconds=1.0) as srv:
        before = value(scrape(srv.metrics_port), "stylize_jobs_stopped_total", reason="time_limit")
        job = StreamReader(srv.stub().Stylize(long_request(), timeout=120))
        # The work is not thrown away: the best image so far, marked partial.
        assert job.wait_done() == grpc.StatusCode.OK
        result = job.frames[-1].result
        assert not result.complete and result.stop_reason == pb.STOP_REASON_TIME_LIMIT
        assert 0 < result.iterations < result.iterations_requested
        assert decode(result.image.data)[1].shape == (result.height, result.width, 3)
        wait_for_value(srv.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 1, reason="time_limit")
        ended = [r.fields for r in caplog.records if r.getMessage() == "job ended"]  # type: ignore[attr-defined]
        assert ended[-1]["code"] == "OK" and ended[-1]["complete"] is False
        assert ended[-1]["stop_reason"] == "time_limit" and ended[-1]["iterations_done"] == result.iterations


def test_jobs_run_concurrently_up_to_the_limit(engine):
    with running_server(engine=engine, max_concurrent_jobs=2, queue_size=2) as srv:
        stub = srv.stub()
        a = StreamReader(stub.Stylize(long_request(), timeout=120))
        b = StreamReader(stub.Stylize(long_request(), timeout=120))
        a.wait_for(is_kind("progress"))
        b.wait_for(is_kind("progress"))  # both run at once, neither was queued
        assert "queued" not in a.kinds() + b.kinds()
        c = StreamReader(stub.Stylize(small_request(iterations=2), timeout=120))
        assert c.wait_for(is_kind("queued")).queued.position == 1
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        assert (info.queue.running, info.queue.depth) == (2, 1)
        b.call.cancel()  # frees one slot: the queued job takes it
        assert c.wait_done() == grpc.StatusCode.OK
        assert a.kinds()[-1] == "progress" and a.code is None  # still running
        a.call.cancel()
        _idle(srv)


def test_client_disconnect_stops_the_job(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        before = value(scrape(srv.metrics_port), "stylize_jobs_stopped_total", reason="client")
        channel = grpc.insecure_channel(srv.address)
        job = StreamReader(pb_grpc.StyleTransferStub(channel).Stylize(long_request(), timeout=120))
        job.wait_for(is_kind("progress"))
        channel.close()  # the client goes away without cancelling
        wait_for_value(srv.metrics_port, "stylize_jobs_stopped_total", lambda v: v >= before + 1, reason="client")
        wait_for_value(srv.metrics_port, "stylize_jobs_in_progress", lambda v: v == 0)
        frames = list(srv.stub().Stylize(small_request(iterations=2), timeout=60))
        assert frames[0].HasField("started") and frames[-1].HasField("result")


def test_streams_outlive_max_connection_age(engine):
    """Connections are recycled after --max-connection-age-seconds (so load
    balancers rebalance), but a stream on an old connection still completes."""
    with running_server(engine=engine, max_connection_age_seconds=0.2) as srv:
        stub = srv.stub()
        first = StreamReader(stub.Stylize(long_request(iterations=60), timeout=120))
        assert first.wait_done() == grpc.StatusCode.OK
        assert first.frames[-1].result.iterations == 60
        # The channel reconnects by itself for the next call.
        assert list(stub.Stylize(small_request(iterations=1), timeout=60))[-1].HasField("result")
