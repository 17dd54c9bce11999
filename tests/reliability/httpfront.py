"""The HTTP front door (issue 20) under lazy and hostile clients, against a
`stylize-server --http-port` subprocess:

* SSE streams that read nothing: N connections (1,000 in the full profile)
  attach to one running job whose progress frames carry previews, with a
  4 KiB receive buffer, and never read. The server keeps at most 16 KiB per
  stream (then the send timeout closes it), so its RSS stays flat; health
  (gRPC, on the same event loop) answers, and a normal HTTP job completes.
* Slowloris headers: N connections send a header line every half second and
  never finish; each is closed once --request-receive-seconds passed without
  a whole request, and the server keeps serving meanwhile.
"""

from __future__ import annotations

import contextlib
import socket
import time

from tests.support.http import HttpApi
from tests.support.streams import health_latencies, p99

from .harness import Profile, ScenarioResult, ServerProc, free_port, image_bytes, ms, scenario, spawn_server

SECRET = "reliability-http-secret"
RSS_BOUND_MB = 64.0
HEALTH_BOUND = 0.015  # the 15 ms p99, a soft check on shared machines


def _job(api: HttpApi, size: int, iterations: int, preview: int) -> dict[str, str]:
    options = {"size": size, "iterations": iterations, "progressInterval": 1, "previewMaxSide": preview}
    status, body, _ = api.post_job(image_bytes(96, 72, seed=1), [image_bytes(64, 64, seed=2)], options)
    assert status == 202, body
    return dict(body)


def _unread_stream(port: int, path: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nStylize-Job-Secret: {SECRET}\r\n\r\n".encode())
    return sock


def _health(res: ScenarioResult, server: ServerProc, label: str) -> None:
    latencies = health_latencies(server.address, 300)
    res.figures[f"health_p99_ms_{label}"] = ms(p99(latencies))
    res.check(f"health p99 < 15 ms {label}", p99(latencies) < HEALTH_BOUND, f"{ms(p99(latencies))} ms", soft=True)


def run_unread_sse(profile: Profile) -> ScenarioResult:
    n = profile.sse_streams
    with scenario("unread SSE streams") as res:
        port = free_port()
        args = ("--http-port", str(port), "--max-open-calls", str(n + 64), "--max-streams-per-job", str(n + 8))
        with spawn_server(*args, "--send-timeout-seconds", "30", "--max-iterations", "5000") as server:
            api = HttpApi(port, {"Stylize-Job-Secret": SECRET})
            warm = _job(api, 64, 3, 64)
            api.events(warm["events_url"])
            rss_before = server.rss_mb()
            long = _job(api, 64, 4000, 64)
            streams = []
            t0 = time.monotonic()
            for _ in range(n):
                streams.append(_unread_stream(port, long["events_url"]))
            opened = time.monotonic() - t0
            server.wait_metric("stylize_open_calls", lambda v: v >= n + 1, timeout=60)
            _health(res, server, f"({n} unread streams)")
            rss_samples = []
            for _ in range(8):
                time.sleep(1.0)
                rss_samples.append(server.rss_mb())
            status, info, _ = api.json("GET", "/v1/info")
            normal = _job(api, 32, 3, 0)
            normal_events = api.events(normal["events_url"])
            iterations = server.metric("stylize_iterations_total")
            api.json("DELETE", f"/v1/jobs/{long['request_id']}")
            for sock in streams:
                with contextlib.suppress(OSError):
                    sock.close()
            _, drained = server.wait_metric("stylize_open_calls", lambda v: v == 0, timeout=60)
            rss_after = server.rss_mb()
            res.figures.update(
                streams=n,
                open_seconds=round(opened, 2),
                rss_before_mb=round(rss_before, 1),
                rss_with_streams_mb=[round(r, 1) for r in rss_samples],
                rss_growth_mb=round(max(rss_samples) - rss_before, 1),
                rss_growth_while_held_mb=round(rss_samples[-1] - rss_samples[0], 1),
                rss_after_mb=round(rss_after, 1),
                long_job_iterations=int(iterations),
                calls_closed_after_ms=ms(drained),
            )
            grew = max(rss_samples) - rss_before
            res.check(f"RSS growth < {RSS_BOUND_MB:.0f} MiB with the streams held", grew < RSS_BOUND_MB, f"{grew:.1f}")
            flat = rss_samples[-1] - rss_samples[0]
            res.check("RSS flat while they are held (< 8 MiB over 7 s)", flat < 8, f"{flat:.1f} MiB")
            res.check("GET /v1/info answers meanwhile", status == 200 and "limits" in info, str(status))
            res.check(
                "a normal HTTP job completes meanwhile", normal_events[-1][0] == "result", str(normal_events[-1][0])
            )
    return res


def run_slowloris(profile: Profile) -> ScenarioResult:
    n = profile.slowloris_connections
    receive = 3.0
    with scenario("slowloris headers (HTTP)") as res:
        port = free_port()
        with spawn_server("--http-port", str(port), "--request-receive-seconds", str(receive)) as server:
            api = HttpApi(port, {"Stylize-Job-Secret": SECRET})
            socks = []
            for i in range(n):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(f"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: ".encode())
                sock.setblocking(False)
                socks.append(sock)
            t0 = time.monotonic()
            closed_at: dict[int, float] = {}
            served = False
            while len(closed_at) < n and time.monotonic() - t0 < receive + 20:
                for i, sock in enumerate(socks):
                    if i in closed_at:
                        continue
                    try:
                        sock.send(b"a")
                        if sock.recv(1024) == b"":
                            closed_at[i] = time.monotonic() - t0
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[i] = time.monotonic() - t0
                if not served:
                    served = api.json("GET", "/v1/info")[0] == 200
                    _health(res, server, f"({n} slow connections)")
                time.sleep(0.5)
            for sock in socks:
                sock.close()
            res.figures.update(
                connections=n,
                request_receive_seconds=receive,
                closed=len(closed_at),
                closed_after_max_s=round(max(closed_at.values(), default=-1), 2),
            )
            res.check("every slow connection closed", len(closed_at) == n, f"{len(closed_at)} of {n}")
            res.check(
                "closed within the receive timeout + 2 s",
                max(closed_at.values(), default=99) < receive + 2,
                f"{max(closed_at.values(), default=-1):.2f} s",
            )
            res.check("the API answers meanwhile", served)
    return res
