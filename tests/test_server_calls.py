"""No client locks the others out (issue 17, item 1), on a real in-process
server with two or three tokens: a client's open calls are limited
(--max-calls-per-client, reattaching calls included, counted before the
request is read), the pod's last calls are kept for clients that hold none
(--reserved-calls), one job has at most --max-streams-per-job streams, and
its previews are rendered once however many streams send them. Also: a call
whose job went on without it counts as DETACHED, not CANCELLED (item 8), and
every log line of a call names its client, never its token."""

from __future__ import annotations

import logging

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stylize_api.v1 import stylize_pb2 as pb
from stylize_api.v1 import stylize_pb2_grpc as pb_grpc
from stylize_server.config import ConfigError, parse_config
from stylize_server.job.errors import CallLimit, ClientCallLimit
from stylize_server.serving import calls
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request
from tests.support.streams import HeaderOnlyStreams, error_reason

TOKENS = {"alice": "token-a", "bob": "token-b", "carol": "token-c"}
ALICE, BOB, CAROL = ([("authorization", f"Bearer {TOKENS[n]}")] for n in ("alice", "bob", "carol"))
# The per-client limits at their defaults (test_config lifts them for the other tests).
DEFAULT_LIMITS = {"max_calls_per_client": 8, "reserved_calls": -1, "max_streams_per_job": 2}


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("".join(f"{name}:{token}\n" for name, token in TOKENS.items()))
    return str(path)


def _retry_info(error: grpc.RpcError) -> bool:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in (status.details if status else ()))


# ------------------------------------------------------------ the gate's rules
def _close(gate: calls.CallGate) -> None:
    """Leave every call (the gate moves the process-wide stylize_open_calls gauge)."""
    for client in list(gate._held):
        for _ in range(gate.held(client)):
            gate.leave(client)
    assert gate.open == 0


def test_the_gate_limits_each_client_and_keeps_the_reserve_for_clients_holding_none():
    gate = calls.CallGate(limit=10, per_client=4, reserve=4)
    try:
        _gate_rules(gate)
    finally:
        _close(gate)


def _gate_rules(gate: calls.CallGate) -> None:
    assert (gate.per_client, gate.reserve) == (4, 4)
    for _ in range(4):
        gate.enter("alice")
    with pytest.raises(ClientCallLimit, match="--max-calls-per-client 4"):
        gate.enter("alice")
    gate.enter("carol")
    gate.enter("carol")  # 6 open: the pod's calls less its reserve
    with pytest.raises(CallLimit, match="--reserved-calls"):
        gate.enter("carol")  # carol holds one already: the last 4 are not hers
    for newcomer in ("bob", "dave", "erin", "frank"):
        gate.enter(newcomer)  # one each for clients that hold none
    with pytest.raises(CallLimit, match="--max-open-calls 10"):
        gate.enter("grace")  # the pod's limit, the last guard
    gate.leave("bob")
    gate.enter("grace")
    for _ in range(4):
        gate.leave("alice")
    assert gate.held("alice") == 0 and gate.open == 6
    gate.enter("alice")  # a client's count falls as its calls end


def test_one_client_never_holds_more_than_the_pod_less_its_reserve():
    gate = calls.CallGate(limit=8, per_client=100, reserve=2)
    assert gate.per_client == 6
    assert calls.CallGate(limit=1, per_client=8, reserve=5).per_client == 1  # a reserve never takes the last call


def test_the_flags_and_their_env_vars():
    config = parse_config(
        ["--max-calls-per-client", "3", "--max-streams-per-job", "1"], environ={"STYLIZE_RESERVED_CALLS": "5"}
    )
    assert (config.max_calls_per_client, config.max_streams_per_job, config.call_reserve) == (3, 1, 5)
    defaults = parse_config([], environ={})
    assert (defaults.max_calls_per_client, defaults.max_streams_per_job, defaults.call_reserve) == (8, 2, 64 // 8)
    with pytest.raises(ConfigError, match="--reserved-calls: must be less than --max-open-calls"):
        defaults.replace(max_open_calls=4, reserved_calls=4).validate()
    with pytest.raises(ConfigError, match="--max-calls-per-client"):
        defaults.replace(max_calls_per_client=0).validate()


# ------------------------------------------------------------ variant A
def test_a_client_holding_its_calls_open_is_refused_and_another_is_served(engine, token_file, caplog):
    """Variant A of the issue: alice opens header-only streams; she keeps 8,
    the rest are refused at once from the metadata (the request is never
    read), and bob's job runs meanwhile."""
    caplog.set_level(logging.INFO, logger="stylize.jobs")
    with running_server(
        engine=engine, auth_token_file=token_file, request_receive_seconds=8.0, **DEFAULT_LIMITS
    ) as srv:
        port = srv.metrics_port
        refused0 = value(scrape(port), "stylize_refusals_total", reason="CLIENT_CALL_LIMIT")
        with HeaderOnlyStreams(srv.address, 20, metadata=ALICE, channels=4) as streams:
            wait_for_value(port, "stylize_open_calls", lambda v: v == 8)
            with pytest.raises(grpc.RpcError) as caught:  # a real call of hers too
                list(srv.stub().Stylize(small_request(), timeout=30, metadata=ALICE))
            frames = list(srv.stub().Stylize(small_request(iterations=2), timeout=60, metadata=BOB))
            codes = streams.wait_done(60)
        assert frames[-1].HasField("result") and frames[-1].result.iterations == 2
        assert codes == {grpc.StatusCode.DEADLINE_EXCEEDED: 8, grpc.StatusCode.RESOURCE_EXHAUSTED: 12}
        assert streams.reasons == {"RECEIVE_TIMEOUT": 8, "CLIENT_CALL_LIMIT": 12}
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(caught.value) == "CLIENT_CALL_LIMIT" and _retry_info(caught.value)
        assert "--max-calls-per-client 8" in (caught.value.details() or "")
        assert value(scrape(port), "stylize_refusals_total", reason="CLIENT_CALL_LIMIT") == refused0 + 13
    # Every call's line names its client, never a token: an operator sees who holds the calls.
    ended = [r.fields for r in caplog.records if r.getMessage() == "job ended"]  # type: ignore[attr-defined]
    by_client = {(f["client"], f["code"], f.get("reason")) for f in ended}
    assert ("alice", "RESOURCE_EXHAUSTED", "CLIENT_CALL_LIMIT") in by_client
    assert ("alice", "DEADLINE_EXCEEDED", "RECEIVE_TIMEOUT") in by_client and ("bob", "OK", None) in by_client
    started = [r.fields for r in caplog.records if r.getMessage() == "job started"]  # type: ignore[attr-defined]
    assert [f["client"] for f in started] == ["bob"]
    assert not any(token in caplog.text for token in TOKENS.values())


def test_clients_at_their_limit_leave_the_reserve_to_a_client_holding_none(engine, token_file):
    with running_server(
        engine=engine,
        auth_token_file=token_file,
        request_receive_seconds=8.0,
        max_open_calls=10,
        max_calls_per_client=4,
        reserved_calls=4,
    ) as srv:
        port = srv.metrics_port
        with HeaderOnlyStreams(srv.address, 4, metadata=ALICE, channels=1) as alice:
            wait_for_value(port, "stylize_open_calls", lambda v: v == 4)
            with HeaderOnlyStreams(srv.address, 4, metadata=CAROL, channels=1) as carol:
                wait_for_value(port, "stylize_open_calls", lambda v: v == 6)
                frames = list(srv.stub().Stylize(small_request(iterations=2), timeout=60, metadata=BOB))
                carol.wait_done(60)
            alice.wait_done(60)
        assert frames[-1].result.iterations == 2  # bob held none: a reserved call was his
        assert alice.reasons == {"RECEIVE_TIMEOUT": 4}
        assert carol.reasons == {"RECEIVE_TIMEOUT": 2, "CALL_LIMIT": 2}  # carol held some: not the reserve


# ------------------------------------------------------------ variant B
def test_streams_attached_to_one_job_are_limited(engine, token_file):
    """Variant B of the issue: alice attaches many streams to one job; past
    --max-streams-per-job they are refused, and bob is served."""
    with running_server(engine=engine, auth_token_file=token_file, **DEFAULT_LIMITS) as srv:
        port = srv.metrics_port
        stub = srv.stub()
        request = long_request(request_id="many-streams")
        first = StreamReader(stub.Stylize(request, timeout=120, metadata=ALICE))
        first.wait_for(is_kind("progress"))
        second = StreamReader(stub.Stylize(request, timeout=120, metadata=ALICE))
        assert second.wait_for(is_kind("started")).started.reattached
        refused = []
        for _ in range(4):
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Stylize(request, timeout=30, metadata=ALICE))
            refused.append(caught.value)
        frames = list(stub.Stylize(small_request(iterations=2), timeout=60, metadata=BOB))
        assert frames[-1].result.iterations == 2
        assert {(e.code(), error_reason(e)) for e in refused} == {
            (grpc.StatusCode.RESOURCE_EXHAUSTED, "JOB_STREAM_LIMIT")
        }
        assert "--max-streams-per-job 2" in (refused[0].details() or "") and _retry_info(refused[0])
        assert stub.Cancel(pb.CancelRequest(request_id="many-streams"), timeout=10, metadata=ALICE).stopped
        assert first.wait_done() == second.wait_done() == grpc.StatusCode.CANCELLED
        wait_for_value(port, "stylize_open_calls", lambda v: v == 0)


def test_reattaching_calls_count_towards_the_client_s_calls(engine, token_file):
    with running_server(
        engine=engine, auth_token_file=token_file, max_calls_per_client=2, reserved_calls=0, max_streams_per_job=5
    ) as srv:
        stub = srv.stub()
        request = long_request(request_id="counted")
        first = StreamReader(stub.Stylize(request, timeout=120, metadata=ALICE))
        first.wait_for(is_kind("progress"))
        second = StreamReader(stub.Stylize(request, timeout=120, metadata=ALICE))
        second.wait_for(is_kind("started"))
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.Stylize(request, timeout=30, metadata=ALICE))
        assert error_reason(caught.value) == "CLIENT_CALL_LIMIT"
        first.call.cancel()
        second.call.cancel()
        first.wait_done()
        second.wait_done()


# ------------------------------------------------------------ shared previews
def test_a_job_s_previews_are_rendered_once_for_all_its_streams(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        port = srv.metrics_port
        stub = srv.stub()
        blocker = StreamReader(stub.Stylize(long_request(), timeout=120))
        blocker.wait_for(is_kind("progress"))
        request = small_request(size=48, iterations=12, preview_max_side=48, request_id="watched")
        streams = [StreamReader(stub.Stylize(request, timeout=120))]
        streams[0].wait_for(is_kind("queued"))
        streams.append(StreamReader(stub.Stylize(request, timeout=120)))  # attached while it waits
        streams[1].wait_for(is_kind("queued"))
        renders0 = value(scrape(port), "stylize_preview_renders_total")
        blocker.call.cancel()
        assert [s.wait_done() for s in streams] == [grpc.StatusCode.OK, grpc.StatusCode.OK]
        previews = [
            {f.progress.iteration: f.progress.preview.data for f in s.frames if f.HasField("progress")} for s in streams
        ]
        renders = value(scrape(port), "stylize_preview_renders_total") - renders0
        shown = set(previews[0]) | set(previews[1])
        # One render per report shown, however many streams showed it.
        assert renders == len(shown), (renders, sorted(shown))
        assert sum(len(p) for p in previews) > renders  # the last report at least went to both
        both = set(previews[0]) & set(previews[1])
        assert 12 in both and all(previews[0][i] == previews[1][i] for i in both)
        assert streams[0].frames[-1].result.image.data == streams[1].frames[-1].result.image.data


# ------------------------------------------------------------ DETACHED (item 8)
def test_a_stream_whose_job_goes_on_counts_as_detached_not_cancelled(engine, caplog):
    caplog.set_level(logging.INFO, logger="stylize.jobs")
    with running_server(engine=engine) as srv:
        port = srv.metrics_port
        before = scrape(port)
        request = small_request(size=48, iterations=150, request_id="lost-connection")
        lost = srv.channel()  # with the job secret: without auth, only it can reattach
        first = StreamReader(pb_grpc.StyleTransferStub(lost).Stylize(request, timeout=120))
        first.wait_for(is_kind("progress"))
        lost.close()  # the connection drops; the job goes on
        assert first.wait_done() == grpc.StatusCode.CANCELLED
        wait_for_value(
            port,
            "stylize_requests_total",
            lambda v: v == value(before, "stylize_requests_total", code="DETACHED") + 1,
            code="DETACHED",
        )
        frames = list(srv.stub().Stylize(request, timeout=120))
        assert frames[0].started.reattached and frames[-1].result.complete
        # A call without a request_id stops its job when it goes: that is still a cancel.
        cancelled = StreamReader(srv.stub().Stylize(long_request(), timeout=120))
        cancelled.wait_for(is_kind("progress"))
        cancelled.call.cancel()
        cancelled.wait_done()
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)
        wait_for_value(port, "stylize_open_calls", lambda v: v == 0)
        after = scrape(port)

    def delta(code: str) -> float:
        return value(after, "stylize_requests_total", code=code) - value(before, "stylize_requests_total", code=code)

    assert (delta("DETACHED"), delta("OK"), delta("CANCELLED")) == (1, 1, 1)
    lines = [(r.getMessage(), r.fields) for r in caplog.records if r.getMessage() in ("call detached", "job ended")]  # type: ignore[attr-defined]
    detached = [f for m, f in lines if f["request_id"] == "lost-connection" and m == "call detached"]
    assert len(detached) == 1 and detached[0]["code"] == "DETACHED" and detached[0]["stop_reason"] == "none"
    assert not any(f["request_id"] == "lost-connection" and f["code"] == "CANCELLED" for _, f in lines)
