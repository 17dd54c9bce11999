"""The stream protocol as the clients see it, against a scripted servicer on a
real gRPC server on 127.0.0.1: results in chunk frames (reassembled by the
sync client, the asyncio client and the CLI; a missing, extra or out-of-order
chunk is a ServerError), a connection cut mid-job (the client calls again
with the same request_id and attaches), and the Cancel RPC on the way out of
a call (cancel(), break, Ctrl-C, a cancelled task).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import threading

import pytest

from stylize import AsyncStyleTransferClient, Progress, Result, RetryPolicy, ServerError, Started, StyleTransferClient
from stylize.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_SERVER_ERROR
from stylize_api.v1 import stylize_pb2 as pb
from tests.support.cli import cli_env, error_lines, json_lines, run_cli, stylize_command, with_default_sigint
from tests.support.fake_stylize import (
    TcpProxy,
    fake_server,
    progress_frame,
    result_frames,
    started_frame,
    wait_until_inactive,
)
from tests.support.images import png_bytes

IMAGE = png_bytes(32, 24, seed=4) * 3  # any bytes will do; a real PNG first, so the CLI's file opens
FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.02)


def chunked(chunks: int):
    def script(call, request, context):
        yield started_frame(request)
        yield progress_frame(10)
        yield from result_frames(request, IMAGE, chunks)

    return script


def sync_run(address: str, **kwargs):
    with StyleTransferClient(address, retry=FAST_RETRY, timeout=60) as client:
        return list(client.stylize(b"content", b"style", **kwargs))


def async_run(address: str, **kwargs):
    async def main():
        async with AsyncStyleTransferClient(address, retry=FAST_RETRY, timeout=60) as client:
            return [e async for e in client.stylize(b"content", b"style", **kwargs)]

    return asyncio.run(main())


CLIENTS = {"sync": sync_run, "asyncio": async_run}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_chunked_results_are_reassembled(client, chunks):
    with fake_server(chunked(chunks)) as fake:
        events = CLIENTS[client](fake.address)
    result = events[-1]
    assert isinstance(result, Result) and [type(e) for e in events[:-1]] == [Started, Progress]
    assert result.image == IMAGE and result.chunks == chunks and result.complete
    assert result.request_id == fake.requests[0].request_id


def test_the_cli_writes_a_chunked_result_whole(tmp_path):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    content.write_bytes(png_bytes(40, 32, seed=1))
    style.write_bytes(png_bytes(32, 32, seed=2))
    with fake_server(chunked(5)) as fake:
        proc = run_cli(
            "run", str(content), str(style), "-o", str(tmp_path / "o.png"), "--server", fake.address, "--json"
        )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert hashlib.sha256((tmp_path / "o.png").read_bytes()).digest() == hashlib.sha256(IMAGE).digest()
    result = json_lines(proc.stdout)[-1]
    assert result["chunks"] == 5 and result["bytes"] == len(IMAGE)


def _broken(kind: str):
    def script(call, request, context):
        yield started_frame(request)
        frames = result_frames(request, IMAGE, 3)
        if kind == "missing":
            yield from (frames[0], frames[2])
        elif kind == "first_missing":
            yield from frames[1:]
        elif kind == "cut_short":
            yield from frames[:2]
        elif kind == "extra":
            yield from (*frames, frames[2])
        elif kind == "progress_between":
            yield from (frames[0], progress_frame(10), *frames[1:])
        elif kind == "total_bytes":
            for f in frames:
                f.result.total_bytes = len(IMAGE) + 1
            yield from frames
        elif kind == "count_changes":
            frames[1].result.chunk_count = 4
            yield from frames
        elif kind == "no_result":
            yield progress_frame(10)

    return script


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "chunk 2 of 3 came where chunk 1 was due"),
        ("first_missing", "chunk 1 of 3 came first; chunk 0 is missing"),
        ("cut_short", "the stream ended after result chunk 1 of 3"),
        ("extra", "after the whole result"),
        ("progress_between", "a progress frame between the chunks"),
        ("total_bytes", "total_bytes says"),
        ("count_changes", "says 4 chunks, chunk 0 said 3"),
        ("no_result", "the stream ended without a result"),
    ],
)
def test_a_broken_result_is_a_clear_server_error(client, kind, words):
    with fake_server(_broken(kind)) as fake:
        with pytest.raises(ServerError) as info:
            CLIENTS[client](fake.address)
        assert len(fake.requests) == 1  # the server's bug: not retried
    assert words in str(info.value) and info.value.code is None


def test_the_cli_reports_a_broken_result_as_a_server_error(tmp_path):
    content = tmp_path / "c.png"
    content.write_bytes(png_bytes(40, 32, seed=1))
    with fake_server(_broken("missing")) as fake:
        proc = run_cli("run", str(content), str(content), "-o", str(tmp_path / "o.png"), "--server", fake.address)
    assert proc.returncode == EXIT_SERVER_ERROR
    assert error_lines(proc.stderr) == [
        "stylize: server error: result chunk 2 of 3 came where chunk 1 was due (a chunk is missing or out of order)"
    ]
    assert not (tmp_path / "o.png").exists()


def _reattachable(cut: threading.Event):
    """First call: started, progress, then hold until the connection is cut.
    Later calls with the same request_id: attached (reattached=True), then the result."""

    def script(call, request, context):
        if call == 0:
            yield started_frame(request)
            yield progress_frame(3)
            cut.wait(30)
            wait_until_inactive(context, 30)
            return
        yield started_frame(request, reattached=True)
        yield progress_frame(10)
        yield from result_frames(request, IMAGE, 2)

    return script


@pytest.mark.parametrize("client", ["sync", "asyncio"])
def test_a_connection_lost_mid_job_attaches_again_with_the_same_request_id(client):
    cut = threading.Event()
    with fake_server(_reattachable(cut)) as fake, TcpProxy(fake.address) as proxy:
        seen: list[object] = []

        def on_event(event: object) -> None:
            seen.append(event)
            if isinstance(event, Progress) and event.iteration == 3:
                proxy.cut()  # the network fails while the job runs
                cut.set()

        if client == "sync":
            with StyleTransferClient(proxy.address, retry=FAST_RETRY, timeout=60) as c:
                for event in c.stylize(b"content", b"style", request_id="job-42"):
                    on_event(event)
        else:

            async def main():
                async with AsyncStyleTransferClient(proxy.address, retry=FAST_RETRY, timeout=60) as c:
                    async for event in c.stylize(b"content", b"style", request_id="job-42"):
                        on_event(event)

            asyncio.run(main())
        assert [r.request_id for r in fake.requests] == ["job-42", "job-42"]
    kinds = [(type(e).__name__, getattr(e, "reattached", None)) for e in seen]
    assert kinds == [("Started", False), ("Progress", None), ("Started", True), ("Progress", None), ("Result", None)]
    assert seen[-1].image == IMAGE and proxy.cuts >= 1


def _held(call, request, context):
    yield started_frame(request)
    yield progress_frame(1)
    wait_until_inactive(context)


def test_cancel_calls_the_cancel_rpc_before_ending_the_stream():
    with fake_server(_held) as fake, StyleTransferClient(fake.address, timeout=60) as client:
        stream = client.stylize(b"content", b"style")
        with pytest.raises(Exception) as info:
            for event in stream:
                if isinstance(event, Progress):
                    threading.Thread(target=stream.cancel).start()
        assert type(info.value).__name__ == "Cancelled"
        rid = stream.request_id
        fake.wait_log(f"ended {rid}")
        assert fake.log.index(f"cancel {rid}") < fake.log.index(f"ended {rid}")


def test_leaving_the_loop_early_stops_the_job_on_the_server():
    with fake_server(_held) as fake, StyleTransferClient(fake.address, timeout=60) as client:
        with client.stylize(b"content", b"style") as stream:
            for event in stream:
                if isinstance(event, Progress):
                    break
        rid = stream.request_id
        fake.wait_log(f"ended {rid}")
        assert fake.log.index(f"cancel {rid}") < fake.log.index(f"ended {rid}")


def test_a_cancelled_asyncio_task_stops_the_job_on_the_server():
    with fake_server(_held) as fake:

        async def main():
            async with AsyncStyleTransferClient(fake.address, timeout=60) as client:
                seen = asyncio.Event()

                async def consume():
                    async for event in client.stylize(b"content", b"style", request_id="task-1"):
                        if isinstance(event, Progress):
                            seen.set()

                task = asyncio.create_task(consume())
                await asyncio.wait_for(seen.wait(), 30)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

        asyncio.run(main())
        fake.wait_log("ended task-1")
        assert fake.log.index("cancel task-1") < fake.log.index("ended task-1")


def test_the_client_names_every_call_and_keeps_a_given_name():
    with fake_server(chunked(1)) as fake:
        sync_run(fake.address)
        sync_run(fake.address, request_id="mine")
    first, second = (r.request_id for r in fake.requests)
    assert len(first) == 32 and int(first, 16) >= 0 and second == "mine"
    assert isinstance(fake.requests[0], pb.StylizeRequest)


def test_ctrl_c_in_the_cli_sends_cancel_before_the_stream_ends(tmp_path):
    content = tmp_path / "c.png"
    content.write_bytes(png_bytes(40, 32, seed=1))
    with fake_server(_held) as fake:
        proc = subprocess.Popen(
            with_default_sigint(
                stylize_command()
                + ["run", str(content), str(content), "-o", str(tmp_path / "o.png"), "--server", fake.address]
                + ["--request-id", "cli-1", "--json"]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if json.loads(line)["event"] == "progress":
                    break
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == EXIT_INTERRUPTED
        fake.wait_log("ended cli-1")
        assert fake.log.index("cancel cli-1") < fake.log.index("ended cli-1")
