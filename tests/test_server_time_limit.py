"""The time per job (--max-job-seconds) at admission, on a real in-process
server: a job estimated over it is refused (FAILED_PRECONDITION,
OVER_TIME_LIMIT) with the estimate, the limit and what would fit, unless the
request accepts a partial result; compiling a loss the server has not run yet
counts in the estimate, and in the limit."""

from __future__ import annotations

import itertools

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job import cost, timing
from stylize_server.job.layout import Pooling
from stylize_server.job.options import JobOptions, Limits, resolve
from stylize_server.job.types import Estimate
from stylize_server.wire import admission
from tests.support.metrics import scrape, value
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request

LIMIT = 2.0


def request_shapes(request: pb.StylizeRequest):
    return admission.read_request(request, Limits(max_iterations=5000)).shapes


def _price(request: pb.StylizeRequest, engine) -> tuple[JobOptions, Estimate, float]:
    """Options, estimate and compile seconds as admission computes them."""
    head = admission.read_request(request, Limits(max_iterations=5000))
    options = resolve(head.options, Pooling.AVG)
    estimate = cost.estimate(options, head.shapes, engine.profile, 1 << 62, 1 << 62, terms=engine.term_costs)
    guided = any(m is not None for m in head.shapes.masks)
    return options, estimate, engine.compile_seconds(options, estimate, guided)


def _refusal(error: grpc.RpcError) -> tuple[str, str]:
    """(ErrorInfo reason, BadRequest field) of a refused call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, field = "", ""
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            field = bad.field_violations[0].field
    return reason, field


def _refused(stub, request: pb.StylizeRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Stylize(request, timeout=60))
    return caught.value


def test_a_job_over_the_time_limit_is_refused_naming_the_estimate_the_limit_and_what_fits(engine):
    request = small_request(size=64, iterations=400)
    with running_server(engine=engine, max_job_seconds=LIMIT) as srv:
        stub = srv.stub()
        list(stub.Stylize(small_request(iterations=1), timeout=60))  # the default loss is compiled
        options, estimate, compiling = _price(request, engine)
        assert compiling == 0.0 and estimate.seconds > 2 * LIMIT
        before = value(scrape(srv.metrics_port), "stylize_refusals_total", reason="OVER_TIME_LIMIT")
        error = _refused(stub, request)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _refusal(error) == ("OVER_TIME_LIMIT", "iterations")
        message = error.details()
        assert f"estimated at {estimate.seconds:.1f} s" in message
        assert "limit of 2 s per job (--max-job-seconds)" in message
        fits = timing.most_iterations_within(options, request_shapes(request), estimate, LIMIT)
        assert 0 < fits < 400 and f"iterations {fits} or fewer" in message
        assert "accept_partial" in message
        after = value(scrape(srv.metrics_port), "stylize_refusals_total", reason="OVER_TIME_LIMIT")
        assert after == before + 1
        # What the message offers is admitted; one iteration more is not.
        assert _refusal(_refused(stub, small_request(size=64, iterations=fits + 1)))[0] == "OVER_TIME_LIMIT"
        frames = list(stub.Stylize(small_request(size=64, iterations=fits), timeout=120))
        assert frames[-1].HasField("result") and frames[-1].result.iterations_requested == fits


def test_the_size_that_message_offers_fits_the_limit(engine):
    request = small_request(size=128, iterations=100, content=pb.Image(data=_png(128, 128)))
    with running_server(engine=engine, max_job_seconds=LIMIT) as srv:
        list(srv.stub().Stylize(small_request(iterations=1), timeout=60))  # the default loss is compiled
        estimate = _price(request, engine)[1]
        message = _refused(srv.stub(), request).details()
    size = int(message.split("or size ")[1].split()[0])
    assert 16 <= size < 128 and "(with 100 iterations)" in message
    smaller = _price(small_request(size=size, iterations=100, content=pb.Image(data=_png(128, 128))), engine)[1]
    assert smaller.seconds <= LIMIT < estimate.seconds


def _png(width: int, height: int) -> bytes:
    from tests.support.images import png_bytes

    return png_bytes(width, height, seed=3)


def test_accept_partial_runs_the_job_until_the_limit(engine):
    request = small_request(size=64, iterations=400, accept_partial=True)
    with running_server(engine=engine, max_job_seconds=LIMIT) as srv:
        frames = list(srv.stub().Stylize(request, timeout=120))
    result = frames[-1].result
    assert frames[0].HasField("started") and frames[-1].HasField("result")
    assert not result.complete and result.stop_reason == pb.STOP_REASON_TIME_LIMIT
    assert 0 < result.iterations < result.iterations_requested == 400


def test_a_job_of_which_not_one_iteration_fits_is_refused_even_accepting_a_partial_result(engine):
    request = small_request(size=128, iterations=5, accept_partial=True)
    _, estimate, _ = _price(request, engine)
    limit = estimate.scales[0].seconds_per_iteration / 2
    with running_server(engine=engine, max_job_seconds=limit) as srv:
        error = _refused(srv.stub(), request)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and _refusal(error) == ("OVER_TIME_LIMIT", "size")
    message = error.details()
    assert "not even one iteration fits" in message and f"limit of {limit:g} s" in message
    assert "what would fit: size" in message and "accept_partial" not in message.split("what would fit")[1]


# Layer lists of their own, so that their loss is compiled by nothing before
# these tests (the shared engine compiled the default one).
COMPILE_LAYERS = [pb.LayerWeight(layer="relu1_1"), pb.LayerWeight(layer="relu3_1")]
LIMIT_LAYERS = [pb.LayerWeight(layer="relu2_1"), pb.LayerWeight(layer="relu4_1")]


def test_compiling_a_new_loss_counts_in_the_estimate_until_it_is_compiled(engine):
    request = small_request(size=32, iterations=20, style_layers=COMPILE_LAYERS)
    _, estimate, compiling = _price(request, engine)
    assert compiling >= engine.profile.compile_seconds / 4  # the profile's figure, as this engine measured it
    limit = estimate.seconds + compiling / 2  # the iterations fit; with the compile they do not
    with running_server(engine=engine, max_job_seconds=limit) as srv:
        error = _refused(srv.stub(), request)
        assert _refusal(error)[0] == "OVER_TIME_LIMIT"
        assert f"+ {compiling:.1f} s compiling" in error.details()
    with running_server(engine=engine, max_job_seconds=120) as srv:  # compiles it
        assert list(srv.stub().Stylize(request, timeout=120))[-1].result.complete
    assert _price(request, engine)[2] == 0.0
    with running_server(engine=engine, max_job_seconds=limit) as srv:
        assert list(srv.stub().Stylize(request, timeout=120))[-1].HasField("result")


def test_the_time_limit_counts_compiling(engine):
    # Its first iteration traces a new loss (seconds); the limit runs from the
    # job's start, so the job ends within one iteration after the limit.
    request = small_request(size=32, iterations=5000, style_layers=LIMIT_LAYERS, accept_partial=True)
    compiling = _price(request, engine)[2]
    assert compiling > 0
    limit = round(compiling + 4.0)  # as this engine measures its compiles: under load, more
    with running_server(engine=engine, max_job_seconds=limit) as srv:
        frames = list(srv.stub().Stylize(request, timeout=120))
    result = frames[-1].result
    assert not result.complete and result.stop_reason == pb.STOP_REASON_TIME_LIMIT
    elapsed = [f.progress.elapsed_seconds for f in frames if f.HasField("progress")]
    assert elapsed[0] > max([b - a for a, b in itertools.pairwise(elapsed)], default=0.0)  # it compiled
    # Stopped at the first iteration boundary past the limit, compiling
    # included: within two iterations of it (an iteration's loss is read once
    # the next is dispatched), and a second of slack for a loaded machine. Had
    # the clock started after the compile, the job would have run until
    # about elapsed[0] + limit. (A compile slower than the estimate may
    # itself pass the limit: then the job ends after its first iterations.)
    gap = max([b - a for a, b in itertools.pairwise(elapsed[1:])], default=0.0)
    assert result.compute_seconds < max(limit, elapsed[0]) + 2 * gap + 1.0


def test_a_reattach_finds_the_job_whether_or_not_it_says_accept_partial(engine):
    # accept_partial decides admission only: it is no part of the fingerprint.
    request = long_request(request_id="partial-1")
    assert request.accept_partial
    with running_server(engine=engine, max_job_seconds=LIMIT) as srv:
        first = StreamReader(srv.stub().Stylize(request, timeout=120))
        first.wait_for(is_kind("progress"))
        again = pb.StylizeRequest()
        again.CopyFrom(request)
        again.ClearField("accept_partial")
        frames = list(srv.stub().Stylize(again, timeout=120))
        assert frames[0].started.reattached
        result = frames[-1].result
        assert not result.complete and result.stop_reason == pb.STOP_REASON_TIME_LIMIT
        assert first.wait_done() == grpc.StatusCode.OK
