"""The serving core's front door under hostile or lazy clients (issue 9).

* Header-only streams: calls that send their headers and never the request.
  Without a token they are refused from the metadata alone; with one they
  hold an open call until --request-receive-seconds, past --max-open-calls
  they are refused at once. Health keeps answering in milliseconds and a
  normal job completes.
* Unread streams: clients that start jobs and never read. Their jobs run and
  end, --send-timeout-seconds ends the calls, memory stays flat, health
  answers, and a kept result is fetched again by request id.
* The decompression bomb of the issue: content, 8 styles and an init image,
  each a 6320x6320 PNG of ~130 KB. Refused from its headers by the default
  --max-request-pixels; an allowed two-image version is decoded one image at
  a time. The peak RSS grows by less than 300 MB either way.
* Distinct layer lists: RSS per never-seen style layer list, which the
  engine's bounded step cache keeps flat (the engine's own test is in `make
  test`; this scenario reports the figure).
"""

from __future__ import annotations

import contextlib
import functools
import pathlib
import tempfile

import grpc

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.images import big_flat_png
from tests.support.streams import HeaderOnlyStreams, error_reason, health_latencies, p99

from .harness import Profile, ScenarioResult, ServerProc, make_request, ms, rng_for, scenario, spawn_server, stylize

TOKEN = "reliability-token"
BOMB_SIDE = 6320
BOMB_BOUND_MB = 300.0


def _health(res: ScenarioResult, server: ServerProc, n: int, label: str, bound: float) -> None:
    """Health answers from the event loop whatever the other calls do."""
    latencies = health_latencies(server.address, n)
    res.figures[f"health_p99_ms_{label}"] = ms(p99(latencies))
    res.check(f"health p99 < {bound * 1000:.0f} ms {label}", p99(latencies) < bound, f"{ms(p99(latencies))} ms")


def run_header_only(profile: Profile) -> ScenarioResult:
    n = profile.header_only_streams
    with scenario("header-only streams") as res, tempfile.TemporaryDirectory() as tmp:
        tokens = pathlib.Path(tmp) / "tokens"
        tokens.write_text(f"reliability:{TOKEN}\n")
        auth = [("authorization", f"Bearer {TOKEN}")]
        args = ("--auth-token-file", str(tokens), "--max-open-calls", "64", "--request-receive-seconds", "3")
        with spawn_server(*args) as server:
            with HeaderOnlyStreams(server.address, n, channels=8) as streams:
                _health(res, server, 200, "(no token)", profile.health_p99_seconds)
                codes = dict(streams.wait_done(60))
            res.figures.update(streams=n, no_token_codes={c.name: k for c, k in codes.items()})
            res.check(
                "without a token: all UNAUTHENTICATED, never waiting for the request",
                codes == {grpc.StatusCode.UNAUTHENTICATED: n},
                str(codes),
            )
            with HeaderOnlyStreams(server.address, n, metadata=auth, channels=8) as streams:
                server.wait_metric("stylize_open_calls", lambda v: v >= 64, timeout=60)
                _health(res, server, 200, "(64 calls held open)", profile.health_p99_seconds)
                held = dict(streams.wait_done(90))
            reasons = dict(streams.reasons)
            res.figures.update(token_codes={c.name: k for c, k in held.items()}, token_reasons=reasons)
            res.check(
                "with a token: 64 held to RECEIVE_TIMEOUT, the rest CALL_LIMIT at once",
                reasons == {"RECEIVE_TIMEOUT": 64, "CALL_LIMIT": n - 64},
                str(reasons),
            )
            server.wait_metric("stylize_open_calls", lambda v: v == 0, timeout=30)
            outcome = stylize(server.stub(), make_request(iterations=2), metadata=auth)
            res.check("a normal job completes", outcome.ok, f"{outcome.code.name}: {outcome.details}")
    return res


def run_unread(profile: Profile) -> ScenarioResult:
    n = profile.unread_streams
    window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024), ("grpc.use_local_subchannel_pool", 1)]
    with scenario("unread streams") as res:
        args = ("--send-timeout-seconds", "1", "--queue-size", str(n), "--max-open-calls", str(2 * n))
        with spawn_server(*args) as server:
            # Warm every shape first, so that what follows measures the calls, not compilation.
            stylize(server.stub(), make_request(size=48, iterations=2, preview_max_side=48))
            rss_before = server.rss_mb()
            done0 = server.metric("stylize_job_duration_seconds_count")
            # 50 streams a connection: an unread stream keeps its HTTP/2 stream
            # (the server's last frames wait in the client's full window), so a
            # lazy client past --max-streams-per-connection blocks only itself.
            lazy = [server.stub(server.channel(options=window)) for _ in range(-(-n // 50))]
            requests = [
                make_request(size=48, iterations=2, preview_max_side=48, seed=i, request_id="unread") for i in range(n)
            ]
            calls = [lazy[i // 50].Stylize(r, timeout=600) for i, r in enumerate(requests)]
            _health(res, server, 200, "(streams unread)", profile.health_p99_seconds)
            normal = stylize(server.stub(), make_request(iterations=2))
            server.wait_metric("stylize_job_duration_seconds_count", lambda v: v >= done0 + n + 1, timeout=600)
            _, drained = server.wait_metric("stylize_open_calls", lambda v: v == 0, timeout=120)
            rss_after = server.rss_mb()
            iterations = server.metric("stylize_iterations_total")
            again = stylize(server.stub(), requests[0])
            recomputed = server.metric("stylize_iterations_total") - iterations
            codes: set[str] = set()
            for call in calls:
                with contextlib.suppress(grpc.RpcError):
                    list(call)
                codes.add(call.code().name)
                if call.code() is not grpc.StatusCode.OK:
                    codes.add(f"reason:{error_reason(call)}")  # type: ignore[arg-type]
            res.figures.update(
                streams=n,
                calls_closed_after_jobs_ms=ms(drained),
                rss_growth_mb=round(rss_after - rss_before, 1),
                unread_codes=sorted(codes),
                reattach_recomputed_iterations=recomputed,
            )
            res.check("a normal job completes meanwhile", normal.ok, f"{normal.code.name}: {normal.details}")
            res.check(
                "unread calls end as broken connections (UNAVAILABLE without ErrorInfo)",
                "UNAVAILABLE" in codes and codes <= {"OK", "UNAVAILABLE", "reason:None"},
                str(sorted(codes)),
            )
            res.check("RSS flat (< 64 MiB growth)", rss_after - rss_before < 64, f"{rss_after - rss_before:.1f} MiB")
            res.check(
                "a result nobody took is fetched again without recomputation",
                again.ok and again.started is not None and again.started.reattached and recomputed == 0,
                f"{again.code.name}, recomputed {recomputed}",
            )
    return res


@functools.cache
def _bomb_image(seed: int) -> bytes:
    return big_flat_png(BOMB_SIDE, BOMB_SIDE, seed=seed)


def bomb_request(styles: int, init: bool) -> pb.StylizeRequest:
    request = pb.StylizeRequest(
        content=pb.Image(data=_bomb_image(0)),
        styles=[pb.StyleImage(image=pb.Image(data=_bomb_image(1 + i))) for i in range(styles)],
        size=64,
        iterations=1,
    )
    if init:
        request.init, request.init_image.data = pb.INIT_IMAGE, _bomb_image(9)
    return request


def _peak_growth_mb(server: ServerProc, request: pb.StylizeRequest) -> tuple[float, object]:
    with contextlib.suppress(OSError):  # VmHWM starts afresh (Linux >= 4.0)
        pathlib.Path(f"/proc/{server.pid}/clear_refs").write_text("5")
    before = server.rss_mb()
    outcome = stylize(server.stub(), request, timeout=300)
    return server.peak_rss_mb() - before, outcome


def run_bomb(profile: Profile) -> ScenarioResult:
    with scenario("decompression bomb") as res:
        issue = bomb_request(styles=8, init=True)  # 10 images, 400 M pixels decoded
        allowed = bomb_request(styles=1, init=False)  # 80 M pixels: exactly the default per-request cap
        wire = sum(len(i.data) for i in [issue.content, issue.init_image, *(s.image for s in issue.styles)])
        with spawn_server() as server:
            stylize(server.stub(), make_request(size=64, iterations=1))  # warm the 64 px step
            refused_mb, refused = _peak_growth_mb(server, issue)
            decoded_mb, decoded = _peak_growth_mb(server, allowed)
        res.figures.update(
            wire_kb=round(wire / 1024),
            refused_code=refused.code.name,  # type: ignore[attr-defined]
            refused_peak_growth_mb=round(refused_mb, 1),
            decoded_code=decoded.code.name,  # type: ignore[attr-defined]
            decoded_peak_growth_mb=round(decoded_mb, 1),
        )
        res.check(
            "the issue's bomb is refused from its headers (TOO_LARGE)",
            refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "per request" in refused.details,  # type: ignore[attr-defined]
            f"{refused.code.name}: {refused.details}",  # type: ignore[attr-defined]
        )
        res.check("an allowed 80 M-pixel request is served", decoded.ok, f"{decoded.code.name}")  # type: ignore[attr-defined]
        for label, growth in (("refused", refused_mb), ("decoded one image at a time", decoded_mb)):
            res.check(f"peak RSS growth < {BOMB_BOUND_MB:g} MB ({label})", growth < BOMB_BOUND_MB, f"{growth:.0f} MB")
    return res


LAYERS = [f"relu{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for i in range(1, n + 1)]


def _layer_lists(n: int) -> list[list[str]]:
    rng = rng_for("layers")
    seen: set[tuple[str, ...]] = set()
    lists: list[list[str]] = []
    while len(lists) < n:
        chosen = rng.sample(LAYERS, rng.randint(1, 5))
        if tuple(sorted(chosen)) not in seen:
            seen.add(tuple(sorted(chosen)))
            lists.append(chosen)
    return lists


def run_layer_lists(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("distinct layer lists") as res:
        lists = _layer_lists(profile.layer_lists)
        # More lists than the step cache holds (--max-compiled-steps, 8): each later one evicts one.
        warm = min(12, len(lists) // 2)
        rss: list[float] = []
        failed: list[str] = []
        for index, layers in enumerate(lists):
            request = make_request(size=32, iterations=1, seed=index)
            request.style_layers.extend(pb.LayerWeight(layer=name) for name in layers)
            outcome = stylize(server.stub(), request)
            if not outcome.ok:
                failed.append(f"{layers}: {outcome.code.name} {outcome.details}")
            rss.append(server.rss_mb())
        growth = rss[-1] - rss[warm - 1]
        per_list = growth / max(1, len(lists) - warm)
        res.figures.update(
            lists=len(lists),
            rss_after_warmup_mb=round(rss[warm - 1], 1),
            rss_end_mb=round(rss[-1], 1),
            rss_per_list_mb=round(per_list, 2),
        )
        res.check("every list served", not failed, "; ".join(failed[:3]))
        res.check(
            "RSS flat over distinct lists once the cache is full (< 3 MB per list, allocator noise; 22.5 MB before)",
            per_list < 3.0,
            f"{per_list:.2f} MB",
        )
    return res
