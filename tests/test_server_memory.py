"""Memory of a real `stylize-server` process under the issue's decompression
bomb: content, 8 styles and an init image, each a legal 6320×6320 PNG of about
130 KB (40 M pixels, 120 MB decoded). With the defaults it is refused from the
headers (--max-request-pixels); allowed, it is decoded one image at a time,
each shrunk at once. Either way the process's peak RSS grows by less than
300 MB (the issue measured +1.5 GB before)."""

from __future__ import annotations

import functools
import pathlib

import grpc
import pytest

from stylize.v1 import stylize_pb2 as pb
from stylize.v1 import stylize_pb2_grpc as pb_grpc
from tests.support.images import big_flat_png
from tests.support.server import server_process

SIDE = 6320
BOUND_MB = 300


@functools.cache
def _bomb() -> pb.StylizeRequest:
    image = functools.partial(big_flat_png, SIDE, SIDE)
    return pb.StylizeRequest(
        content=pb.Image(data=image(seed=0)),
        styles=[pb.StyleImage(image=pb.Image(data=image(seed=1 + i))) for i in range(8)],
        init=pb.INIT_IMAGE,
        init_image=pb.Image(data=image(seed=9)),
        size=64,
        iterations=1,
    )


def _status_kb(pid: int, key: str) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def _reset_peak(pid: int) -> bool:
    """Start VmHWM afresh from the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_growth_mb(pid: int, call) -> tuple[float, object]:
    before = _status_kb(pid, "VmRSS") if _reset_peak(pid) else _status_kb(pid, "VmHWM")
    outcome = call()
    return (_status_kb(pid, "VmHWM") - before) / 1024, outcome


@pytest.mark.slow
@pytest.mark.parametrize("allowed", [False, True], ids=["default-limits", "request-pixels-allowed"])
def test_the_bomb_request_costs_less_than_300_mb(allowed):
    request = _bomb()
    assert sum(len(i.data) for i in [request.content, request.init_image, *(s.image for s in request.styles)]) < 2e6
    args = ("--max-request-pixels", str(10 * SIDE * SIDE)) if allowed else ()
    with server_process(*args) as proc, grpc.insecure_channel(proc.address) as channel:
        stub = pb_grpc.StyleTransferStub(channel)
        list(stub.Stylize(_small(), timeout=120))  # warm: the first job's allocations are not the bomb's

        def call() -> object:
            try:
                return list(stub.Stylize(request, timeout=300))
            except grpc.RpcError as error:
                return error

        growth, outcome = _peak_growth_mb(proc.popen.pid, call)
    if allowed:
        assert isinstance(outcome, list) and outcome[-1].HasField("result"), outcome
        assert outcome[-1].result.width == 64
    else:
        assert isinstance(outcome, grpc.RpcError) and outcome.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per request" in (outcome.details() or ""), outcome.details()
    assert growth < BOUND_MB, f"peak RSS grew by {growth:.0f} MB"


def _small() -> pb.StylizeRequest:
    image = big_flat_png(64, 64, seed=3)
    return pb.StylizeRequest(
        content=pb.Image(data=image), styles=[pb.StyleImage(image=pb.Image(data=image))], size=64, iterations=1
    )
