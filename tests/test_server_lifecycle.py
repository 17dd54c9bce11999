"""Health transitions and draining on a real in-process server: NOT_SERVING
while the model loads (calls UNAVAILABLE), SERVING when ready, NOT_SERVING
while draining, queued jobs ended UNAVAILABLE, running jobs finished within the
grace period or ended UNAVAILABLE with a message after it."""

from __future__ import annotations

import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import decode
from tests.support.metrics import scrape, value
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICES = ("", "stylize.v1.StyleTransfer")


def _statuses(channel) -> set[int]:
    health = health_pb2_grpc.HealthStub(channel)
    return {health.Check(health_pb2.HealthCheckRequest(service=s), timeout=10).status for s in SERVICES}


def test_health_not_serving_while_loading_then_serving(engine):
    release = threading.Event()

    def slow_loader(config):
        # Stands in for reading weights from disk: holds loading until the test has looked.
        release.wait(60)
        return engine

    with running_server(engine_loader=slow_loader, wait_ready=False) as srv:
        channel = srv.channel()
        assert _statuses(channel) == {NOT_SERVING}
        with pytest.raises(grpc.RpcError) as caught:
            list(srv.stub(channel).Stylize(small_request(), timeout=30))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in caught.value.details()
        # Watch streams the change to SERVING.
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="stylize.v1.StyleTransfer"), timeout=60
        )
        assert next(watch).status == NOT_SERVING
        release.set()
        assert next(watch).status == SERVING
        watch.cancel()
        srv.server.wait_ready(60)
        assert _statuses(channel) == {SERVING}
        assert list(srv.stub(channel).Stylize(small_request(iterations=1), timeout=60))[-1].HasField("result")


def test_drain_refuses_new_calls_ends_queued_jobs_and_lets_running_ones_finish(engine):
    with running_server(engine=engine, max_concurrent_jobs=1, grace_seconds=120) as srv:
        channel = srv.channel()
        stub = srv.stub(channel)
        running = StreamReader(stub.Stylize(small_request(iterations=150, request_id="running"), timeout=120))
        running.wait_for(is_kind("progress"))
        queued = StreamReader(stub.Stylize(small_request(iterations=2, request_id="queued"), timeout=120))
        queued.wait_for(is_kind("queued"))
        shutdown0 = value(scrape(srv.metrics_port), "stylize_jobs_stopped_total", reason="shutdown")

        stopper = threading.Thread(target=srv.server.stop, name="stopper")
        stopper.start()
        assert queued.wait_done() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in queued.details
        assert _statuses(channel) == {NOT_SERVING}
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Stylize(small_request(), timeout=30))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        # The running job is not cut off: it completes with its result.
        assert running.wait_done(120) == grpc.StatusCode.OK
        assert running.frames[-1].result.iterations == 150
        stopper.join(60)
        assert not stopper.is_alive()
        # Only the queued job was ended by the drain. (The metrics port is closed
        # now; the registry is this process's own.)
        assert REGISTRY.get_sample_value("stylize_jobs_stopped_total", {"reason": "shutdown"}) == shutdown0 + 1


def test_running_job_past_the_grace_period_returns_its_best_image(engine):
    with running_server(engine=engine, max_concurrent_jobs=1, grace_seconds=300) as srv:
        port = srv.metrics_port
        shutdown0 = value(scrape(port), "stylize_jobs_stopped_total", reason="shutdown")
        running = StreamReader(srv.stub().Stylize(long_request(), timeout=120))
        running.wait_for(is_kind("progress"))
        stopper = threading.Thread(target=srv.server.stop, name="stopper")
        stopper.start()
        # Draining is observable (health), then the grace period is cut short
        # as a second SIGTERM would: the job stops within one iteration.
        health = health_pb2_grpc.HealthStub(srv.channel())
        for _ in range(1000):
            if health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == NOT_SERVING:
                break
        shutdown_seen = value(scrape(port), "stylize_jobs_stopped_total", reason="shutdown")
        srv.server.force()
        assert running.wait_done(60) == grpc.StatusCode.OK
        result = running.frames[-1].result
        assert not result.complete and result.stop_reason == pb.STOP_REASON_SHUTDOWN
        assert 0 < result.iterations < result.iterations_requested == 4000
        assert decode(result.image.data)[1].shape == (result.height, result.width, 3)
        stopper.join(60)
        assert not stopper.is_alive()
        assert shutdown_seen == shutdown0  # nothing was cut off before the grace ended
        assert REGISTRY.get_sample_value("stylize_jobs_stopped_total", {"reason": "shutdown"}) == shutdown0 + 1
