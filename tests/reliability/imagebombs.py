"""Images built to hurt the server's first steps (issue 17, items 2 and 4).

* PNG text bomb: clients send requests of 17 images, each with 63 zTXt
  chunks of 1 MiB (inflated; about 1 KB on the wire) before its pixels,
  back to back, while health is checked sequentially. Admission reads the
  headers from the bytes (nothing inflated on the event loop); the decode
  executor refuses the request (DECODE_FAILED). Reported: health p99 and max
  with no load, 1 and 3 bomb clients. Before: 9 ms -> 3,740 ms (1 client).
* Decode memory: the peak RSS rise of a 64 px job whose content is a 16-bit
  grey PNG, with that image as a mask, with a palette+tRNS mask, and two such
  requests at once, against the documented bound (4 bytes a pixel, 160 MB at
  40 MP); and each mode Pillow opens here decoded alone in a subprocess.
  Before: 764, 688, 811 and 1,387 MB.

Both accept a `command` and `env` to run another build of the server (the
figures before the fix).
"""

from __future__ import annotations

import functools
import pathlib
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.decodemem import decode_peak_mb
from tests.support.hostile_images import MODES, mode_bytes, text_bomb_png

from .harness import Profile, ScenarioResult, ServerProc, make_request, ms, scenario, spawn_server, stylize

STYLES = 8
# The documented bound of one decode: Pillow's buffer of 4-byte pixels (160 MB at 40 MP).
BYTES_PER_PIXEL = 4
SERVER_SLACK_MB = 32.0  # the request's bytes, the 64 px job, allocator noise


# ------------------------------------------------------------ text bombs
@functools.cache
def _text_bomb_request() -> pb.StylizeRequest:
    bomb = text_bomb_png(40, 32, chunks=63, inflated=1 << 20)
    styles = [pb.StyleImage(image=pb.Image(data=bomb), mask=pb.Image(data=bomb)) for _ in range(STYLES)]
    return pb.StylizeRequest(content=pb.Image(data=bomb), styles=styles, size=32, iterations=1)


def _health_while(server: ServerProc, seconds: float, clients: int) -> tuple[list[float], int, dict[str, int]]:
    """Sequential health checks for `seconds` while `clients` threads send
    text bombs back to back: (latencies, timeouts past 5 s, bomb codes)."""
    stop = threading.Event()
    codes: dict[str, int] = {}
    lock = threading.Lock()

    def bomber() -> None:
        stub = server.stub(server.channel())
        while not stop.is_set():
            outcome = stylize(stub, _text_bomb_request(), timeout=60)
            key = f"{outcome.code.name}" + (f" {outcome.details.split(':')[0]}" if not outcome.ok else "")
            with lock:
                codes[key] = codes.get(key, 0) + 1

    threads = [threading.Thread(target=bomber, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    timeouts = 0
    with grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        time.sleep(0.2 if clients else 0)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            except grpc.RpcError:
                timeouts += 1
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(120)
    return latencies, timeouts, codes


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.99 * len(ordered)) - 1)]


def run_text_bomb(
    profile: Profile, command: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> ScenarioResult:
    seconds = 10.0 if profile.name == "full" else 4.0
    with scenario("PNG text bomb") as res:
        args = ("--max-styles", str(STYLES), "--max-message-mb", "4")
        with spawn_server(*args, command=command, env=env) as server:
            stylize(server.stub(), make_request(iterations=1))
            wire = len(_text_bomb_request().SerializeToString())
            res.figures["request_kb"] = round(wire / 1024)
            for clients in (0, 1, 3):
                latencies, timeouts, codes = _health_while(server, seconds, clients)
                label = "idle" if clients == 0 else f"{clients} client{'s' * (clients > 1)}"
                res.figures[f"health_p99_ms_({label})"] = ms(_p99(latencies))
                res.figures[f"health_max_ms_({label})"] = ms(max(latencies))
                if clients:
                    res.figures[f"bombs_({label})"] = codes
                    res.figures[f"health_timeouts_({label})"] = timeouts
                    res.check(f"no health check past 5 s ({label})", timeouts == 0, f"{timeouts} timed out")
                    # Soft: a flood of cheap refusals competes for the same cores;
                    # the hard line is the readiness probe's 5 s above.
                    res.check(
                        f"health p99 < {profile.health_p99_seconds * 1000:.0f} ms ({label})",
                        _p99(latencies) < profile.health_p99_seconds,
                        f"{ms(_p99(latencies))} ms",
                        soft=True,
                    )
                    res.check(
                        f"every bomb refused as the content's DECODE_FAILED ({label})",
                        set(codes) == {"INVALID_ARGUMENT content"},
                        str(codes),
                    )
            outcome = stylize(server.stub(), make_request(iterations=1))
            res.check("a normal job completes afterwards", outcome.ok, f"{outcome.code.name}: {outcome.details}")
    return res


# ------------------------------------------------------- decode memory
def _peak_growth_mb(server: ServerProc, requests: Sequence[pb.StylizeRequest]) -> tuple[float, list[str]]:
    pathlib.Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM starts afresh
    before = server.rss_mb()
    codes: list[str] = [""] * len(requests)

    def send(i: int) -> None:
        codes[i] = stylize(server.stub(server.channel()), requests[i], timeout=300).code.name

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return server.peak_rss_mb() - before, codes


def _request(content: bytes, mask: bytes | None = None) -> pb.StylizeRequest:
    request = make_request(size=64, iterations=1)
    request.content.data = content
    if mask is not None:
        request.styles[0].mask.data = mask
    return request


def run_decode_memory(
    profile: Profile, command: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> ScenarioResult:
    side = 6000 if profile.name == "full" else 2000
    pixels = side * side
    bound = BYTES_PER_PIXEL * pixels / 1e6  # MB, the documented figure's unit
    with scenario("decode memory") as res, tempfile.TemporaryDirectory() as tmp:
        grey16 = mode_bytes("I;16", "PNG", side, side)
        palette = mode_bytes("P+tRNS", "PNG", side, side)
        res.figures.update(side=side, bound_mb=round(bound, 1), grey16_kb=len(grey16) // 1024)
        res.figures["palette_trns_kb"] = len(palette) // 1024
        plain = make_request(size=64, iterations=1).content.data
        cases: list[tuple[str, list[pb.StylizeRequest], float]] = [
            ("16-bit grey content", [_request(grey16)], bound),
            ("16-bit grey mask", [_request(plain, grey16)], bound),
            ("palette+tRNS mask", [_request(plain, palette)], bound),
            ("two at once", [_request(grey16), _request(plain, palette)], 2 * bound),
        ]
        args = ("--max-input-pixels", str(max(pixels, 40_000_000)), "--max-message-mb", "8")
        with spawn_server(*args, command=command, env=env) as server:
            stylize(server.stub(), make_request(size=64, iterations=1))  # warm the 64 px step
            for label, requests, limit in cases:
                growth, codes = _peak_growth_mb(server, requests)
                res.figures[f"peak_growth_mb_({label})"] = round(growth * 1.048576, 1)  # MiB -> MB
                res.check(f"{label}: served", set(codes) == {"OK"}, str(codes))
                res.check(
                    f"{label}: peak growth within {limit:.0f} MB (+{SERVER_SLACK_MB:g})",
                    growth * 1.048576 <= limit + SERVER_SLACK_MB,
                    f"{growth * 1.048576:.0f} MB",
                )
            res.figures["rss_after_mb"] = round(server.rss_mb(), 1)
        # Each mode alone, in a fresh interpreter: the decode's own peak, as content and as mask.
        folder = pathlib.Path(tmp)
        per_mode: dict[str, Any] = {}
        mode_side = side if profile.name == "full" else 1000
        limit = BYTES_PER_PIXEL * mode_side * mode_side / 1e6 + 8 * 1.048576
        pythonpath = (env or {}).get("PYTHONPATH")
        for mode, fmt in MODES:
            path = folder / f"{mode.replace(';', '_').replace('+', '_')}.{fmt.lower()}"
            path.write_bytes(mode_bytes(mode, fmt, mode_side, mode_side))
            rises = [
                decode_peak_mb(path, kind, (64, 64), pythonpath=pythonpath)["rise_mb"] for kind in ("content", "mask")
            ]
            peak = max(float(r) for r in rises) * 1.048576  # type: ignore[arg-type]
            per_mode[mode] = round(peak, 1)
            res.check(f"{mode}: decode within {limit:.0f} MB", peak <= limit, f"{peak:.0f} MB")
        res.figures["mode_side"] = mode_side
        res.figures["per_mode_peak_mb"] = per_mode
        res.figures["per_mode_worst_mb"] = max(per_mode.values())
        res.figures["per_mode_median_mb"] = round(statistics.median(per_mode.values()), 1)
    return res
