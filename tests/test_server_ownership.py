"""Isolation without auth (issue 17, item 6), on a real in-process server
without tokens, where every process of a host is the same client: a job's
request_id is usable only with the job secret it was started with (metadata
`stylize-job-secret`). Another process of the host cannot attach to the job,
cancel it, or learn that its id exists: it gets the answers an id that never
existed gets. A job started without a secret can be reattached and cancelled
by nobody. With tokens, the token alone decides, as before."""

from __future__ import annotations

import grpc
import pytest

from stylize import StyleTransferClient
from stylize.errors import InvalidArgument, NotFound
from stylize_api.v1 import stylize_pb2 as pb
from stylize_api.v1 import stylize_pb2_grpc as pb_grpc
from tests.support.images import png_bytes
from tests.support.metrics import scrape, value, wait_for_value
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request
from tests.support.streams import error_reason

MINE, THEIRS = "mine-0123456789abcdef", "theirs-0123456789abcdef"


def _not_found(stub, request_id: str, secret: str | None) -> str:
    """Cancel's refusal of `request_id` sent with `secret`: its message, with the id cut out."""
    metadata = [("stylize-job-secret", secret)] if secret else []
    with pytest.raises(grpc.RpcError) as caught:
        stub.Cancel(pb.CancelRequest(request_id=request_id), timeout=10, metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "NOT_FOUND"
    return (caught.value.details() or "").replace(repr(request_id), "ID")


def test_another_process_of_the_host_cannot_use_or_probe_a_job(engine):
    with running_server(engine=engine) as srv:
        port = srv.metrics_port
        mine, theirs = srv.stub(srv.channel(job_secret=MINE)), srv.stub(srv.channel(job_secret=THEIRS))
        anonymous = srv.stub(srv.channel(job_secret=None))
        request = long_request(request_id="job-1")
        job = StreamReader(mine.Stylize(request, timeout=120))
        job.wait_for(is_kind("progress"))

        # Cancel: "not yours" reads exactly as "no such job".
        assert _not_found(theirs, "job-1", THEIRS) == _not_found(theirs, "never-sent", THEIRS)
        assert _not_found(anonymous, "job-1", None) == _not_found(anonymous, "never-sent", None)
        assert "stylize-job-secret" in _not_found(
            anonymous, "job-1", None
        )  # says what is missing, not whether it exists

        # Stylize: the same id, even the same request, is a job of their own:
        # no ALREADY_EXISTS, no reattach, no frames of the first job.
        copy = StreamReader(theirs.Stylize(request, timeout=120))
        assert not copy.wait_for(is_kind("started")).started.reattached
        # Their Cancel stops their copy, not the first job; a stopped job keeps
        # nothing, so the id is free again in their namespace.
        assert theirs.Cancel(pb.CancelRequest(request_id="job-1"), timeout=10).stopped
        assert copy.wait_done() == grpc.StatusCode.CANCELLED
        other = list(theirs.Stylize(small_request(request_id="job-1", iterations=2), timeout=60))
        assert not other[0].started.reattached and other[-1].result.iterations == 2
        assert "result" not in job.kinds() and job.code is None  # the first job runs on

        # Its creator attaches with its secret, and cancels it.
        again = StreamReader(mine.Stylize(request, timeout=120))
        assert again.wait_for(is_kind("started")).started.reattached
        assert mine.Cancel(pb.CancelRequest(request_id="job-1"), timeout=10).stopped
        assert job.wait_done() == again.wait_done() == grpc.StatusCode.CANCELLED
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)


def test_a_job_without_a_secret_belongs_to_its_stream_only(engine):
    with running_server(engine=engine, detach_grace_seconds=60) as srv:
        port = srv.metrics_port
        stopped0 = value(scrape(port), "stylize_jobs_stopped_total", reason="client")
        channel = srv.channel(job_secret=None)
        job = StreamReader(pb_grpc.StyleTransferStub(channel).Stylize(long_request(request_id="bare"), timeout=120))
        job.wait_for(is_kind("progress"))
        _not_found(srv.stub(srv.channel(job_secret=None)), "bare", None)  # nobody can cancel it...
        channel.close()  # ...and it does not outlive its stream (no grace: nobody could attach)
        wait_for_value(port, "stylize_jobs_stopped_total", lambda v: v == stopped0 + 1, reason="client")
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)


def test_a_malformed_job_secret_is_refused_naming_it_not_echoing_it(engine):
    with running_server(engine=engine) as srv:
        stub = srv.stub(srv.channel(job_secret=None))
        for secret in ("short", "x" * 257, "has a space in it, sixteen+"):
            metadata = [("stylize-job-secret", secret)]
            with pytest.raises(grpc.RpcError) as caught:
                list(stub.Stylize(small_request(request_id="r"), timeout=30, metadata=metadata))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = caught.value.details() or ""
            assert details.startswith("stylize-job-secret: ") and secret not in details


def test_with_tokens_the_token_decides_and_the_secret_is_ignored(engine, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice:token-a\nbob:token-b\n")
    alice, bob = [("authorization", "Bearer token-a")], [("authorization", "Bearer token-b")]
    with running_server(engine=engine, auth_token_file=str(tokens)) as srv:
        first = srv.stub(srv.channel(job_secret=MINE))
        job = StreamReader(first.Stylize(long_request(request_id="shared-id"), timeout=120, metadata=alice))
        job.wait_for(is_kind("progress"))
        # Bob holds the same secret: it gives him nothing.
        assert "no job" in _not_found_with(srv.stub(srv.channel(job_secret=MINE)), "shared-id", bob)
        # Alice from another process, with another secret (or none): her token is enough.
        assert (
            srv.stub(srv.channel(job_secret=None))
            .Cancel(pb.CancelRequest(request_id="shared-id"), timeout=10, metadata=alice)
            .stopped
        )
        assert job.wait_done() == grpc.StatusCode.CANCELLED


def _not_found_with(stub, request_id: str, metadata) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Cancel(pb.CancelRequest(request_id=request_id), timeout=10, metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    return caught.value.details() or ""


def test_the_client_library_sends_its_secret_so_only_it_can_cancel(engine):
    content, style = png_bytes(40, 32, seed=1), png_bytes(32, 32, seed=2)
    with running_server(engine=engine) as srv:
        owner, stranger = StyleTransferClient(srv.address), StyleTransferClient(srv.address)
        twin = StyleTransferClient(srv.address, job_secret=owner.job_secret)
        try:
            assert owner.job_secret != stranger.job_secret and len(owner.job_secret) >= 16
            stream = owner.stylize(content, style, size=64, iterations=4000, request_id="lib-job")
            next(iter(stream))  # started: the job runs
            with pytest.raises(NotFound):
                stranger.cancel("lib-job")
            assert twin.cancel("lib-job")  # the same secret from another client object
            with pytest.raises(InvalidArgument):
                StyleTransferClient(srv.address, job_secret="short").cancel("lib-job")
            stream.close()
        finally:
            for client in (owner, stranger, twin):
                client.close()
