"""Work is never thrown away, on a real in-process server: a job with a
client-chosen request_id outlives its lost stream, a new call with the same
request and identity attaches to it (running) or gets its kept result
(finished) without recomputing anything, a different request under that id is
refused, another client never sees it, and Cancel stops a client's job at once."""

from __future__ import annotations

import grpc
import pytest

from stylize_api.v1 import stylize_pb2 as pb
from stylize_api.v1 import stylize_pb2_grpc as pb_grpc
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.secret import with_job_secret
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request
from tests.support.streams import error_reason


def _iterations(srv) -> float:
    return value(scrape(srv.metrics_port), "stylize_iterations_total")


def test_reattach_to_a_running_job_after_the_connection_is_lost(engine):
    with running_server(engine=engine) as srv:
        request = small_request(size=48, iterations=150, request_id="survivor")
        before = _iterations(srv)
        lost = with_job_secret(grpc.insecure_channel(srv.address))
        first = StreamReader(pb_grpc.StyleTransferStub(lost).Stylize(request, timeout=120))
        seen = first.wait_for(lambda f: f.HasField("progress") and f.progress.iteration >= 3).progress.iteration
        lost.close()  # the connection drops mid-job
        assert first.wait_done() == grpc.StatusCode.CANCELLED

        again = StreamReader(srv.stub().Stylize(request, timeout=120))
        started = again.wait_for(is_kind("started")).started
        assert started.reattached and started.request_id == "survivor"
        assert again.wait_done() == grpc.StatusCode.OK
        progress = [f.progress.iteration for f in again.frames if f.HasField("progress")]
        assert progress[0] >= seen  # it went on while nobody listened; it did not start again
        result = again.frames[-1].result
        assert result.complete and result.iterations == 150
        # One optimization of 150 iterations, not two.
        assert _iterations(srv) - before == 150


def test_reattach_to_a_finished_job_replays_its_result_without_recomputation(engine):
    with running_server(engine=engine) as srv:
        stub = srv.stub()
        request = small_request(iterations=4, request_id="kept", progress_interval=1)
        first = list(stub.Stylize(request, timeout=60))
        counted = _iterations(srv)
        # Progress and previews are the stream's own: a reattaching call may ask for others.
        request.progress_interval, request.preview_max_side = 2, 16
        again = list(stub.Stylize(request, timeout=60))
        assert [f.WhichOneof("frame") for f in again] == ["started", "result"]
        assert again[0].started.reattached and not first[0].started.reattached
        assert again[-1].result.image.data == first[-1].result.image.data
        assert again[-1].result.iterations == 4
        assert _iterations(srv) == counted  # the iteration counter did not move


def test_a_different_request_under_a_used_request_id_is_refused(engine):
    with running_server(engine=engine) as srv:
        stub = srv.stub()
        list(stub.Stylize(small_request(iterations=2, request_id="mine"), timeout=60))
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Stylize(small_request(iterations=3, request_id="mine"), timeout=60))
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_reason(caught.value) == "REQUEST_ID_IN_USE"
        assert "request_id" in (caught.value.details() or "")


def test_a_client_never_sees_another_client_s_job(engine, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:token-a\nbob:token-b\n")
    alice, bob = [("authorization", "Bearer token-a")], [("authorization", "Bearer token-b")]
    with running_server(engine=engine, auth_token_file=str(tokens)) as srv:
        stub = srv.stub()
        request = small_request(iterations=2, request_id="shared-name")
        theirs = list(stub.Stylize(request, timeout=60, metadata=alice))
        counted = _iterations(srv)
        mine = list(stub.Stylize(request, timeout=60, metadata=bob))
        assert not mine[0].started.reattached  # Bob's own job, computed for him
        assert _iterations(srv) == counted + 2
        assert theirs[0].started.reattached is False
        with pytest.raises(grpc.RpcError) as caught:
            stub.Cancel(pb.CancelRequest(request_id="not-bobs"), timeout=10, metadata=bob)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_detached_job_stops_after_the_grace(engine):
    with running_server(engine=engine, detach_grace_seconds=0.5) as srv:
        port = srv.metrics_port
        stopped0 = value(scrape(port), "stylize_jobs_stopped_total", reason="client")
        lost = with_job_secret(grpc.insecure_channel(srv.address))
        job = StreamReader(pb_grpc.StyleTransferStub(lost).Stylize(long_request(request_id="orphan"), timeout=120))
        job.wait_for(is_kind("progress"))
        lost.close()
        wait_for_value(port, "stylize_jobs_stopped_total", lambda v: v == stopped0 + 1, reason="client")
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)
        # A stopped job keeps nothing: the id starts a new job.
        frames = list(srv.stub().Stylize(long_request(request_id="orphan", iterations=2), timeout=60))
        assert not frames[0].started.reattached and frames[-1].result.iterations == 2


def test_cancel_stops_a_queued_or_running_job_at_once(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        stub = srv.stub()
        port = srv.metrics_port
        running = StreamReader(stub.Stylize(long_request(request_id="run"), timeout=120))
        running.wait_for(is_kind("progress"))
        queued = StreamReader(stub.Stylize(long_request(request_id="wait", seed=3), timeout=120))
        queued.wait_for(is_kind("queued"))

        assert stub.Cancel(pb.CancelRequest(request_id="wait"), timeout=10).stopped
        assert queued.wait_done() == grpc.StatusCode.CANCELLED
        assert "started" not in queued.kinds()
        assert stub.Cancel(pb.CancelRequest(request_id="run"), timeout=10).stopped
        assert running.wait_done() == grpc.StatusCode.CANCELLED
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)

        list(stub.Stylize(small_request(iterations=1, request_id="done"), timeout=60))
        assert not stub.Cancel(pb.CancelRequest(request_id="done"), timeout=10).stopped  # it had ended
        with pytest.raises(grpc.RpcError) as caught:
            stub.Cancel(pb.CancelRequest(request_id="never-sent"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(caught.value) == "NOT_FOUND"


def test_a_result_the_client_did_not_take_stays_retrievable(engine):
    """The send timeout ends a stream whose client does not read; the job's
    result is kept, and the client gets it by calling again."""
    tiny_window = [
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 1024),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    with running_server(engine=engine, send_timeout_seconds=0.5) as srv:
        port = srv.metrics_port
        request = small_request(size=128, iterations=30, preview_max_side=128, request_id="unread")
        done0 = value(scrape(port), "stylize_job_duration_seconds_count")
        lazy = srv.channel(options=tiny_window)
        call = srv.stub(lazy).Stylize(request, timeout=120)  # never read
        wait_for_value(port, "stylize_job_duration_seconds_count", lambda v: v >= done0 + 1, timeout=120)
        wait_for_value(port, "stylize_open_calls", lambda v: v == 0, timeout=60)
        counted = _iterations(srv)
        frames = list(srv.stub().Stylize(request, timeout=60))
        assert frames[0].started.reattached and frames[-1].result.iterations == 30
        assert _iterations(srv) == counted
        with pytest.raises(grpc.RpcError) as caught:
            list(call)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and error_reason(caught.value) is None


def test_kept_results_are_bounded_in_bytes(engine):
    with running_server(engine=engine, result_store_mb=0.001) as srv:  # 1 KB: nothing fits
        stub = srv.stub()
        request = small_request(iterations=2, request_id="too-big-to-keep")
        list(stub.Stylize(request, timeout=60))
        counted = _iterations(srv)
        again = list(stub.Stylize(request, timeout=60))
        assert not again[0].started.reattached and _iterations(srv) == counted + 2
