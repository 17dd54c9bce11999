"""The HTTP path's overhead over gRPC (issue 20): one `stylize-server
--http-port` subprocess, the same 256 px job sent alternately over gRPC
(Stylize, frames read as they come) and over HTTP (POST /v1/stylize, the
event stream, GET result_url), `--rounds` times each.

* first frame: from sending the request to the first frame (gRPC) or the
  first event (HTTP: the POST's 202 and the event stream's first event
  included);
* total: from sending the request to the result's bytes in hand.

    python benchmarks/http_bench.py --out benchmarks/results [--rounds 3] [--iterations 20]

Prints a table and writes http_bench.json. float32, random weights (the
weights change values, not cost).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.reliability.harness import free_port, image_bytes, make_request, spawn_server  # noqa: E402
from tests.support.http import HttpApi  # noqa: E402

SIZE = 256
SECRET = "http-bench-job-secret"


def over_grpc(server: object, iterations: int) -> tuple[float, float]:
    request = make_request(size=SIZE, iterations=iterations, content=(320, 240), style=(256, 256), progress_interval=5)
    t0 = time.perf_counter()
    first = None
    for frame in server.stub().Stylize(request, timeout=600):  # type: ignore[attr-defined]
        if first is None:
            first = time.perf_counter() - t0
        if frame.HasField("result") and frame.result.chunk_index + 1 >= max(1, frame.result.chunk_count):
            break
    return float(first or 0.0), time.perf_counter() - t0


def over_http(api: HttpApi, iterations: int) -> tuple[float, float]:
    options = {"size": SIZE, "iterations": iterations, "progressInterval": 5}
    content, style = image_bytes(320, 240, seed=1), image_bytes(256, 256, seed=1001)
    t0 = time.perf_counter()
    status, body, _ = api.post_job(content, [style], options)
    assert status == 202, body
    conn = api.connection()
    conn.request("GET", body["events_url"], headers=api.headers)
    response = conn.getresponse()
    first = None
    for line in response:
        if line.startswith(b"data:") and first is None:
            first = time.perf_counter() - t0
        if line.startswith(b"event: result"):
            break
    conn.close()
    status, image, _ = api.request("GET", body["result_url"])
    assert status == 200 and image
    return float(first or 0.0), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    port = free_port()
    rows: dict[str, list[tuple[float, float]]] = {"grpc": [], "http": []}
    with spawn_server("--http-port", str(port), "--warmup-sizes", "256") as server:
        api = HttpApi(port, {"Stylize-Job-Secret": SECRET}, timeout=600)
        over_grpc(server, 2)  # compile the shapes once, outside the figures
        over_http(api, 2)
        for _ in range(args.rounds):
            rows["grpc"].append(over_grpc(server, args.iterations))
            rows["http"].append(over_http(api, args.iterations))
    result = {
        "size": SIZE,
        "iterations": args.iterations,
        "rounds": args.rounds,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    print(f"{SIZE} px, {args.iterations} iterations, median of {args.rounds} (ms)")
    print(f"{'':8} {'first frame':>12} {'total':>10}")
    for name, values in rows.items():
        first = statistics.median(v[0] for v in values) * 1000
        total = statistics.median(v[1] for v in values) * 1000
        result[name] = {"first_frame_ms": round(first, 1), "total_ms": round(total, 1), "runs": values}
        print(f"{name:8} {first:12.1f} {total:10.1f}")
    for key in ("first_frame_ms", "total_ms"):
        result[f"http_minus_grpc_{key}"] = round(result["http"][key] - result["grpc"][key], 1)  # type: ignore[index]
    print(
        f"{'http-grpc':8} {result['http_minus_grpc_first_frame_ms']:12.1f} {result['http_minus_grpc_total_ms']:10.1f}"
    )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "http_bench.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
