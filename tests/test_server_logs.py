"""The server's log lines: in JSON mode every line a real `stylize-server`
prints is one JSON object, TensorFlow's native C++ lines included; the text
format quotes values so that a request id cannot forge a field; and no server
module is over 400 lines."""

from __future__ import annotations

import json
import logging
import re

import grpc
import pytest

from stylize_api.v1 import stylize_pb2_grpc
from stylize_server.serving.logs import JsonFormatter, TextFormatter, quote
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


# The numerical core's modules (the engine's side) are checked by their owner.
ENGINE_MODULES = {
    "vgg.py", "losses.py", "optimize.py", "engine.py", "layout.py", "cost.py", "color.py", "objective.py",
    "tiling.py", "regions.py", "precision.py", "stepcache.py", "device.py", "prepare.py", "targets.py",
}  # fmt: skip


def test_no_serving_module_is_over_400_lines():
    modules = [p for p in (ROOT / "server" / "stylize_server").glob("*.py") if p.name not in ENGINE_MODULES]
    assert len(modules) >= 25
    sizes = {p.name: len(p.read_text().splitlines()) for p in modules}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
