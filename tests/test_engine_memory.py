"""Memory stays flat under many distinct valid option combinations (issue 9,
item 5): a real `stylize-server` process with a cache of 2 compiled steps,
14 distinct style layer lists, its RSS read from /proc. Before the bounded
cache each new list cost about 22.5 MB for good, so the 10 lists after the
warm-up would have added about 225 MB. A small cache makes every later list
an eviction, as 8 does in production after 8 lists, at a third of the
compiles (each ~3 s on 2 cores)."""

from __future__ import annotations

import itertools

import pytest

from stylize_api.v1 import stylize_pb2 as pb
from stylize_server.job.layout import RELU_LAYERS
from tests.support.process import server_process
from tests.support.server import small_request

LISTS = 14
CACHE = 2
WARM = 4  # more than the cache holds: every later list evicts one


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_rss_stays_flat_over_14_distinct_layer_lists() -> None:
    pairs = list(itertools.combinations(RELU_LAYERS[:12], 2))[:LISTS]
    assert len(set(pairs)) == LISTS
    with server_process("--max-compiled-steps", str(CACHE)) as proc:
        import grpc

        from stylize_api.v1 import stylize_pb2_grpc

        channel = grpc.insecure_channel(proc.address)
        stub = stylize_pb2_grpc.StyleTransferStub(channel)
        readings = []
        for i, (a, b) in enumerate(pairs):
            request = small_request(
                iterations=1, style_layers=[pb.LayerWeight(layer=a, weight=1.0), pb.LayerWeight(layer=b, weight=2.0)]
            )
            frames = list(stub.Stylize(request, timeout=300))
            assert frames[-1].HasField("result") and frames[-1].result.complete
            readings.append(rss_mib(proc.popen.pid))
            if i + 1 == WARM:
                warm = readings[-1]
        channel.close()
    grown = readings[-1] - warm
    per_list = grown / (LISTS - WARM)
    print(f"RSS after {WARM} lists {warm:.0f} MiB, after {LISTS} {readings[-1]:.0f} MiB ({per_list:.2f} MiB per list)")
    # Unbounded, 10 more lists would have added about 225 MB; allow allocator noise.
    assert grown < 100, readings
    assert max(readings[WARM:]) - warm < 150, readings
