"""The asyncio front on a real in-process server: streams that never send
their request, calls refused from their metadata alone, the per-pod open-call
limit and the per-connection stream limit, clients that never read. Health must
keep answering within milliseconds whatever the other calls do; the latency
bounds are generous (2 shared cores) and only say "not blocked"."""

from __future__ import annotations

import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request
from tests.support.streams import HeaderOnlyStreams, error_reason, health_latencies, p99

# Health latency is measured here: alone on the machine (make test's second run).
pytestmark = pytest.mark.serial

TOKEN = "aio-token"
HEALTH_P99_BOUND = 0.1  # seconds


def _details(error: grpc.RpcError) -> dict[str, object]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: dict[str, object] = {}
    for detail in status.details if status else ():
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    return found


def test_200_header_only_streams_without_a_token_cost_nothing(engine, tmp_path):
    token_file = tmp_path / "tokens"
    token_file.write_text(f"alice:{TOKEN}\n")
    with running_server(engine=engine, auth_token_file=str(token_file)) as srv:
        denied0 = value(scrape(srv.metrics_port), "stylize_refusals_total", reason="UNAUTHENTICATED")
        with HeaderOnlyStreams(srv.address, 200, channels=4) as streams:
            latencies = health_latencies(srv.address, 200)
            codes = streams.wait_done(30)
            auth = [("authorization", f"Bearer {TOKEN}")]
            frames = list(srv.stub().Stylize(small_request(iterations=2), timeout=60, metadata=auth))
        # Refused from the metadata alone: the request was never sent, and never waited for.
        assert codes == {grpc.StatusCode.UNAUTHENTICATED: 200}
        assert streams.reasons == {"UNAUTHENTICATED": 200}
        assert p99(latencies) < HEALTH_P99_BOUND, sorted(latencies)[-5:]
        assert frames[-1].HasField("result") and frames[-1].result.iterations == 2
        assert value(scrape(srv.metrics_port), "stylize_refusals_total", reason="UNAUTHENTICATED") == denied0 + 200


def test_header_only_streams_hold_open_calls_until_the_receive_timeout(engine):
    with running_server(engine=engine, request_receive_seconds=3.0, max_open_calls=64) as srv:
        port = srv.metrics_port
        limit0 = value(scrape(port), "stylize_refusals_total", reason="CALL_LIMIT")
        with HeaderOnlyStreams(srv.address, 200, channels=4) as streams:
            wait_for_value(port, "stylize_open_calls", lambda v: v == 64)
            latencies = health_latencies(srv.address, 200)
            info = srv.stub().GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
            with pytest.raises(grpc.RpcError) as caught:  # the pod is full of calls: a real one is refused
                list(srv.stub().Stylize(small_request(), timeout=30))
            codes = streams.wait_done(60)
        assert p99(latencies) < HEALTH_P99_BOUND, sorted(latencies)[-5:]
        assert (info.queue.open_calls, info.queue.max_open_calls) == (64, 64)
        # 64 held until their request did not come, the rest refused at once.
        assert codes == {grpc.StatusCode.DEADLINE_EXCEEDED: 64, grpc.StatusCode.RESOURCE_EXHAUSTED: 136}
        assert streams.reasons == {"RECEIVE_TIMEOUT": 64, "CALL_LIMIT": 136}
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = _details(caught.value)
        assert details["ErrorInfo"].reason == "CALL_LIMIT"  # type: ignore[attr-defined]
        assert "RetryInfo" in details and "--max-open-calls 64" in (caught.value.details() or "")
        assert value(scrape(port), "stylize_refusals_total", reason="CALL_LIMIT") >= limit0 + 137
        wait_for_value(port, "stylize_open_calls", lambda v: v == 0)
        frames = list(srv.stub().Stylize(small_request(iterations=2), timeout=60))  # the calls are gone
        assert frames[-1].result.iterations == 2


def test_a_request_that_never_comes_ends_the_call(engine):
    with running_server(engine=engine, request_receive_seconds=0.5) as srv:
        t0 = time.monotonic()
        with HeaderOnlyStreams(srv.address, 1, channels=1) as streams:
            codes = streams.wait_done(30)
        assert codes == {grpc.StatusCode.DEADLINE_EXCEEDED: 1} and streams.reasons == {"RECEIVE_TIMEOUT": 1}
        assert time.monotonic() - t0 < 20


def test_streams_past_the_per_connection_limit_wait_in_the_client(engine):
    with running_server(engine=engine, max_streams_per_connection=2, max_concurrent_jobs=2) as srv:
        channel = srv.channel()
        stub = srv.stub(channel)
        stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)  # the client now knows the limit
        first = StreamReader(stub.Stylize(long_request(), timeout=120))
        second = StreamReader(stub.Stylize(long_request(), timeout=120))
        first.wait_for(is_kind("progress"))
        second.wait_for(is_kind("progress"))
        # A third stream on this connection is not refused by the server: gRPC
        # keeps it in the client until a stream ends, here past its deadline.
        third = StreamReader(stub.Stylize(small_request(iterations=1), timeout=2))
        assert third.wait_done() == grpc.StatusCode.DEADLINE_EXCEEDED and third.frames == []
        assert p99(health_latencies(srv.address, 50)) < HEALTH_P99_BOUND  # other connections are not affected
        first.call.cancel()
        fourth = list(stub.Stylize(small_request(iterations=1), timeout=60))
        assert fourth[-1].HasField("result")
        second.call.cancel()


def test_100_unread_streams_do_not_pin_the_server(engine):
    """Clients that start jobs and never read: their jobs run and end, the
    frames they do not take end their calls after --send-timeout-seconds, and
    health and other clients are served meanwhile."""
    # A small receive window, so that unread frames push back on the server.
    tiny_window = [
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 1024),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    with running_server(
        engine=engine,
        send_timeout_seconds=1.0,
        queue_size=100,
        max_jobs_per_client=200,
        max_open_calls=200,
    ) as srv:
        port = srv.metrics_port
        done0 = value(scrape(port), "stylize_job_duration_seconds_count")
        lazy = srv.stub(srv.channel(options=tiny_window))
        calls = [
            lazy.Stylize(
                small_request(iterations=2, preview_max_side=32, seed=i, request_id=f"unread-{i}"), timeout=300
            )
            for i in range(100)
        ]
        latencies = health_latencies(srv.address, 100)
        frames = list(srv.stub().Stylize(small_request(iterations=2), timeout=120))  # a normal job meanwhile
        wait_for_value(port, "stylize_job_duration_seconds_count", lambda v: v >= done0 + 101, timeout=240)
        wait_for_value(port, "stylize_open_calls", lambda v: v == 0, timeout=60)
        assert p99(latencies) < HEALTH_P99_BOUND, sorted(latencies)[-5:]
        assert frames[-1].result.iterations == 2
        # What an unread call finally reads: the frames that fit its window, then
        # the end of a stream the server gave up on (as a broken connection reads).
        codes = set()
        for call in calls:
            try:
                list(call)
                codes.add(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.add(error.code())
                assert error_reason(error) is None
        assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE} and grpc.StatusCode.UNAVAILABLE in codes
