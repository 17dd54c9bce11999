"""`stylize-server` as a real process: it logs structured JSON, serves, and on
SIGTERM (or SIGINT) drains: a running job's stream completes, then the process
exits 0."""

from __future__ import annotations

import json
import signal
import subprocess

import grpc
import pytest

from stylize_api.v1 import stylize_pb2_grpc
from tests.support.process import server_process
from tests.support.server import StreamReader, is_kind, small_request


@pytest.mark.slow
def test_sigterm_with_a_job_running_completes_the_stream_then_exits_0():
    with server_process("--max-concurrent-jobs", "1") as proc:
        assert proc.wait_for_event("serving")["random_weights"] is True
        with grpc.insecure_channel(proc.address) as channel:
            stub = stylize_pb2_grpc.StyleTransferStub(channel)
            job = StreamReader(stub.Stylize(small_request(iterations=150, request_id="sigterm-job"), timeout=120))
            job.wait_for(is_kind("progress"))
            proc.popen.send_signal(signal.SIGTERM)
            assert job.wait_done(120) == grpc.StatusCode.OK, job.details
            assert job.frames[-1].result.iterations == 150
        assert proc.wait_exit(60) == 0

    events = [r.get("event") for r in proc.records]
    assert "draining" in events and events[-1] == "stopped"
    started = [r for r in proc.records if r.get("event") == "job started"]
    ended = [r for r in proc.records if r.get("event") == "job ended"]
    assert [r["request_id"] for r in started] == ["sigterm-job"]
    assert ended[0]["request_id"] == "sigterm-job" and ended[0]["code"] == "OK"
    assert ended[0]["iterations_done"] == 150 and ended[0]["width"] == 32 and ended[0]["height"] == 26
    assert ended[0]["compute_s"] > 0 and "queue_wait_s" in ended[0]
    # The log never carries image bytes.
    assert all(len(line) < 2000 for line in proc.lines)


@pytest.mark.slow
def test_sigint_when_idle_exits_0():
    with server_process("--warmup-sizes", "") as proc:  # idle from the start: nothing compiled
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait_exit(60) == 0
    assert proc.records[-1]["event"] == "stopped"


def test_bad_weights_exit_1_with_a_clear_message(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(AssertionError) as caught, server_process("--weights", str(missing), ready_timeout=60):
        pass
    assert "exit code 1" in str(caught.value)
    assert "could not be loaded" in str(caught.value)
    (exiting,) = [r for r in caught.value.args[0].splitlines() if "could not be loaded" in r]
    record = json.loads(exiting)
    assert record["kind"] == "weights" and "--weights" not in record["error"]
    assert record["fix"].startswith("give the weights source with --weights SOURCE (or STYLIZE_WEIGHTS)")


def test_version_answers_without_loading_anything():
    from tests.support.process import server_command

    done = subprocess.run([*server_command(), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("stylize-server ") and done.stderr == ""
