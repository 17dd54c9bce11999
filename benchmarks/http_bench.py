"""The HTTP path's overhead over gRPC (issue 20): one `stylize-server
--http-port` subprocess, the same 256 px job sent alternately over gRPC
(Stylize, frames read as they come) and over HTTP (POST /v1/stylize, the
event stream, GET result_url), `--rounds` times each.

* first frame: from sending the request to the first frame (gRPC) or the
  first event (HTTP: the POST's 202 and the event stream's first event
  included);
* total: from sending the request to the result's bytes in hand;
* total less compute: the total less the server's compute seconds of the job
  (its Result frame's): what the protocol, admission and delivery add, which
  the compute time's noise on a shared machine would otherwise hide.

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


Run = tuple[float, float, float]  # first frame, total, total less the server's compute seconds


def over_grpc(server: object, iterations: int) -> Run:
    request = make_request(size=SIZE, iterations=iterations, content=(320, 240), style=(256, 256), progress_interval=5)
    t0 = time.perf_counter()
    first = None
    for frame in server.stub().Stylize(request, timeout=600):  # type: ignore[attr-defined]
        if first is None:
            first = time.perf_counter() - t0
        if frame.HasField("result") and frame.result.chunk_index + 1 >= max(1, frame.result.chunk_count):
            compute = frame.result.compute_seconds
            break
    total = time.perf_counter() - t0
    return float(first or 0.0), total, total - compute


def over_http(api: HttpApi, iterations: int) -> Run:
    options = {"size": SIZE, "iterations": iterations, "progressInterval": 5}
    content, style = image_bytes(320, 240, seed=1), image_bytes(256, 256, seed=1001)
    t0 = time.perf_counter()
    status, body, _ = api.post_job(content, [style], options)
    assert status == 202, body
    conn = api.connection()
    conn.request("GET", body["events_url"], headers=api.headers)
    response = conn.getresponse()
    first = None
    result = False
    compute = 0.0
    for line in response:
        if line.startswith(b"data:") and first is None:
            first = time.perf_counter() - t0
        if result and line.startswith(b"data:"):
            compute = float(json.loads(line[5:])["result"]["computeSeconds"])
            break
        result = line.startswith(b"event: result")
    conn.close()
    status, image, _ = api.request("GET", body["result_url"])
    assert status == 200 and image
    total = time.perf_counter() - t0
    return float(first or 0.0), total, total - compute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    port = free_port()
    rows: dict[str, list[Run]] = {"grpc": [], "http": []}
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
    keys = ("first_frame_ms", "total_ms", "outside_compute_ms")
    print(f"{'':9} {'first frame':>12} {'total':>10} {'total less compute':>19}")
    for name, values in rows.items():
        medians = [statistics.median(v[i] for v in values) * 1000 for i in range(3)]
        result[name] = {**{k: round(m, 1) for k, m in zip(keys, medians)}, "runs": values}
        print(f"{name:9} {medians[0]:12.1f} {medians[1]:10.1f} {medians[2]:19.1f}")
    extra = [round(result["http"][k] - result["grpc"][k], 1) for k in keys]  # type: ignore[index]
    result["http_minus_grpc"] = dict(zip(keys, extra))
    print(f"{'http-grpc':9} {extra[0]:12.1f} {extra[1]:10.1f} {extra[2]:19.1f}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "http_bench.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
