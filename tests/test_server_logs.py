"""The server's log lines: in JSON mode every line a real `stylize-server`
prints is one JSON object, TensorFlow's native C++ lines included; the text
format quotes values so that a request id cannot forge a field; and no server
module is over 400 lines."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import grpc
import pytest

from stylize_api.v1 import stylize_pb2_grpc
from stylize_server.serving.logs import (
    JsonFormatter,
    TextFormatter,
    format_native,
    has_nvidia_device,
    native_level,
    quote,
)
from tests.support.process import server_process
from tests.support.server import ROOT, small_request


@pytest.mark.slow
def test_every_line_is_json_tensorflow_s_included():
    # TensorFlow's C++ logging at its most verbose: its lines go straight to fd 2.
    with server_process(env={"TF_CPP_MIN_LOG_LEVEL": "0"}) as proc, grpc.insecure_channel(proc.address) as channel:
        frames = list(stylize_pb2_grpc.StyleTransferStub(channel).Stylize(small_request(iterations=2), timeout=60))
        assert frames[-1].HasField("result")
        proc.wait_for_event("job ended")
    lines = [line for line in proc.lines if line.strip()]
    records = [json.loads(line) for line in lines]  # raises on the first line that is not JSON
    assert all({"ts", "level", "logger", "event"} <= set(r) for r in records)
    native = [r for r in records if r["logger"] == "stderr"]
    assert native, "TensorFlow printed nothing to fd 2: the capture was not exercised"
    assert any(re.match(r"^[IWE]\d{4} ", r["event"]) for r in native)  # glog-style C++ lines, wrapped
    assert {r["level"] for r in native} <= {"INFO", "WARNING", "ERROR", "CRITICAL"}


def _record(message: str, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("stylize.jobs", logging.INFO, __file__, 1, message, None, None)
    record.fields = fields  # type: ignore[attr-defined]
    return record


def test_text_format_quotes_values_so_fields_cannot_be_forged():
    forged = 'abc code=OK seconds=0 "x'
    line = TextFormatter().format(_record("job ended", request_id=forged, code="CANCELLED", n=3))
    tail = line.split(" job ended ", 1)[1]
    assert tail == f"request_id={json.dumps(forged)} code=CANCELLED n=3"
    assert line.count("code=") == 2 and " code=CANCELLED" in line  # the forged one is inside the quotes
    assert quote("plain-id_1.2:3") == "plain-id_1.2:3" and quote("") == '""' and quote("a\nb") == '"a\\nb"'
    # A message carrying '=' or a newline is quoted too.
    assert TextFormatter().format(_record("x=1\ny")).endswith('"x=1\\ny"')


def test_json_format_carries_fields():
    entry = json.loads(JsonFormatter().format(_record("job ended", request_id="r\n1", code="OK")))
    assert (entry["event"], entry["request_id"], entry["code"], entry["logger"]) == (
        "job ended",
        "r\n1",
        "OK",
        "stylize.jobs",
    )


def test_no_server_module_is_over_400_lines():
    modules = list((ROOT / "server" / "stylize_server").rglob("*.py"))
    assert len(modules) >= 50
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in modules}
    assert {name: n for name, n in sizes.items() if n > 400} == {}


CUINIT = (
    "E0000 00:00:1796266693.302004   20464 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)"
)


@pytest.mark.parametrize(
    "line, level",
    [
        ("I0000 00:00:1796266693.302004   20464 port.cc:153] oneDNN custom operations are on.", "INFO"),
        ("W0000 00:00:1796266693.302004   20464 op_kernel.cc:1] something to look at", "WARNING"),
        ("E0000 00:00:1796266693.302004   20464 kernel.cc:1] an op failed", "ERROR"),
        ("F0000 00:00:1796266693.302004   20464 check.cc:1] Check failed", "CRITICAL"),
        ("2024-01-01 12:00:00.000000: W tensorflow/core/util.cc:1] an older prefix", "WARNING"),
        ("Traceback (most recent call last):", "WARNING"),
    ],
)
def test_native_lines_keep_their_level_in_both_formats(line, level):
    entry = json.loads(format_native(line, JsonFormatter(), logging.INFO, gpu=False) or "")
    assert (entry["level"], entry["logger"], entry["event"]) == (level, "stderr", line)
    text = format_native(line, TextFormatter(), logging.INFO, gpu=False) or ""
    if line.startswith("Traceback"):
        assert text == line  # not a native log line: kept as it is, readable
    else:
        assert re.match(rf"^\d\d:\d\d:\d\d\.\d{{3}} {level:<7} stderr ", text), text
    assert format_native(line, TextFormatter(), logging.CRITICAL + 1, gpu=False) is None


def test_the_cuda_probe_is_debug_without_an_nvidia_device_and_an_error_with_one():
    assert format_native(CUINIT, JsonFormatter(), logging.INFO, gpu=False) is None
    assert json.loads(format_native(CUINIT, JsonFormatter(), logging.DEBUG, gpu=False) or "")["level"] == "DEBUG"
    assert json.loads(format_native(CUINIT, JsonFormatter(), logging.INFO, gpu=True) or "")["level"] == "ERROR"
    drivers = "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used."
    assert native_level(drivers, gpu=False) == (logging.DEBUG, True)
    assert native_level(drivers, gpu=True) == (logging.INFO, True)


# The real thing: a process that captures fd 2 as the server does, sets up
# logging, and lets TensorFlow probe for a GPU (its C++ lines go to fd 2).
_PROBE = """
import sys
from stylize_server.serving.logs import capture_stderr, release_stderr, setup_logging
capture_stderr()
setup_logging(sys.argv[1], sys.argv[2])
import tensorflow as tf
tf.config.list_physical_devices("GPU")
release_stderr()
"""


@pytest.mark.slow
@pytest.mark.skipif(has_nvidia_device(), reason="the CUDA probe succeeds or is a real error on a GPU machine")
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tensorflow_s_cuda_probe_is_quiet_on_a_cpu_and_native_lines_are_formatted(log_format):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("STYLIZE_LOG_FORMAT", None)
    lines = {}
    for level in ("INFO", "DEBUG"):
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, log_format, level], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        lines[level] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert not [line for line in lines["INFO"] if re.match(r"^[IWEF]\d{4} ", line)]  # no raw glog line
    assert not [line for line in lines["INFO"] if "cuInit" in line or "cuda drivers" in line]
    assert not [line for line in lines["INFO"] if "ERROR" in line]
    probe = [line for line in lines["DEBUG"] if "cuInit" in line or "cuda drivers" in line]
    assert probe, "TensorFlow did not probe for CUDA: the test exercised nothing"
    if log_format == "json":
        assert {json.loads(line)["level"] for line in probe} == {"DEBUG"}
    else:
        assert all(re.match(r"^\d\d:\d\d:\d\d\.\d{3} DEBUG   stderr ", line) for line in probe)
