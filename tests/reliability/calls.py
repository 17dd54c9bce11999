"""One authenticated client must not lock the others out (issue 17, item 1).

Two tokens, alice and bob, and the server's per-client call limits at their
defaults (--max-calls-per-client 8, --reserved-calls an eighth of
--max-open-calls, --max-streams-per-job 2):

* A: alice keeps 64 header-only streams open and reopens each as it ends
  (--request-receive-seconds 3). Bob sends small jobs one after another,
  every half second; each must be served. Before the limits, the pod's 64
  calls were all alice's and bob got CALL_LIMIT on every try.
* B: alice opens 64 streams with one request_id, attaching them to one job,
  and reopens each as it ends. Bob, as in A.
* Shared previews: one job with a preview every iteration, read by 1 stream
  and by 16 (the limits raised for the figure): the job's compute time, and
  previews rendered per report shown.

`command`/`env` run another build of the server (the figures before the
limits); the new flags are then left out.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import pathlib
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from grpc import aio

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.streams import STYLIZE, error_reason

from .harness import (
    Profile,
    ScenarioResult,
    ServerProc,
    make_request,
    ms,
    percentile,
    scenario,
    spawn_server,
    stylize,
)

TOKENS = {"alice": "reliability-alice-token", "bob": "reliability-bob-token"}
ALICE = (("authorization", f"Bearer {TOKENS['alice']}"),)
BOB = (("authorization", f"Bearer {TOKENS['bob']}"),)
LIMITS = ("--max-calls-per-client", "8", "--reserved-calls", "-1", "--max-streams-per-job", "2")
BOB_EVERY = 0.5  # seconds between the starts of bob's tries


class Hog:
    """`n` Stylize calls one client keeps open: each is opened again as soon as
    it ends, until the block exits. With `request`, each call sends it (so all
    attach to the job its request_id names) and reads its frames; without, a
    call sends its headers and never a request. On a grpc.aio loop of its own."""

    def __init__(
        self, address: str, n: int, metadata: Sequence[tuple[str, str]], request: pb.StylizeRequest | None = None
    ) -> None:
        self.address, self.n, self.metadata, self.request = address, n, tuple(metadata), request
        self.ends: collections.Counter[str] = collections.Counter()  # reason, or the code without one
        self.attached = 0  # streams that got `started` and have not ended
        self.attached_max = 0
        self.details: dict[str, str] = {}  # the first message of each end
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hog", daemon=True)
        self._stop: asyncio.Event | None = None
        self._calls: set[Any] = set()
        self._future: Any = None

    def __enter__(self) -> Hog:
        self._thread.start()
        self._future = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
        try:
            self._future.result(60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _shutdown(self) -> None:
        assert self._stop is not None
        self._stop.set()
        for call in list(self._calls):
            call.cancel()

    async def _one(self, channel: aio.Channel) -> None:
        assert self._stop is not None
        headers_only = channel.stream_stream(STYLIZE, response_deserializer=pb.StylizeResponse.FromString)
        unary = channel.unary_stream(
            STYLIZE,
            request_serializer=pb.StylizeRequest.SerializeToString,
            response_deserializer=pb.StylizeResponse.FromString,
        )
        while not self._stop.is_set():
            if self.request is None:
                call = headers_only(metadata=self.metadata, timeout=300)
            else:
                call = unary(self.request, metadata=self.metadata, timeout=300)
            self._calls.add(call)
            started = False
            try:
                async for frame in call:
                    if not started and frame.WhichOneof("frame") == "started":
                        started = True
                        self.attached += 1
                        self.attached_max = max(self.attached_max, self.attached)
                end = "OK"
            except aio.AioRpcError as error:
                end = error_reason(error) or error.code().name
                self.details.setdefault(end, error.details() or "")
            except asyncio.CancelledError:
                end = "CANCELLED"
            finally:
                self._calls.discard(call)
                self.attached -= started
            if not self._stop.is_set():
                self.ends[end] += 1
                if end not in ("OK", "RECEIVE_TIMEOUT"):  # refused: again a moment later, not in a busy loop
                    await asyncio.sleep(0.1)

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * 2**20)]
        channels = [aio.insecure_channel(self.address, options=options) for _ in range(4)]
        try:
            await asyncio.gather(*(self._one(channels[i % 4]) for i in range(self.n)))
        finally:
            for channel in channels:
                await channel.close()


def _server_args(tmp: str, command: Sequence[str] | None, *extra: str) -> list[str]:
    tokens = pathlib.Path(tmp) / "tokens"
    tokens.write_text("".join(f"{name}:{token}\n" for name, token in TOKENS.items()))
    limits = LIMITS if command is None else ()
    return ["--auth-token-file", str(tokens), "--precision", "float32", *limits, *extra]


def _bob(server: ServerProc, seconds: float) -> tuple[int, int, dict[str, int], list[float]]:
    """Bob's small jobs, one every BOB_EVERY s for `seconds`: (tries, served,
    refusals by reason, seconds of each served call)."""
    tries = served = 0
    latencies: list[float] = []
    refusals: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        calls: list[Any] = []
        outcome = stylize(server.stub(), make_request(iterations=2), metadata=BOB, timeout=30, on_call=calls.append)
        tries += 1
        if outcome.ok:
            served += 1
            latencies.append(outcome.latency)
        else:
            refusals[error_reason(calls[0]) or outcome.code.name] += 1
        time.sleep(max(0.0, t0 + tries * BOB_EVERY - time.monotonic()))
    return tries, served, dict(refusals), latencies


def _bob_figures(res: ScenarioResult, server: ServerProc, seconds: float) -> None:
    tries, served, refusals, latencies = _bob(server, seconds)
    res.figures.update(bob_tries=tries, bob_served=served, bob_success=round(served / max(1, tries), 3))
    res.figures["bob_job_p50_ms"] = ms(percentile(latencies, 50))
    res.figures["bob_refusals"] = refusals
    res.check("bob is served on every try", tries > 0 and served == tries, f"{served} of {tries}: {refusals}")


def _names_the_client(res: ScenarioResult, server: ServerProc, reason: str) -> None:
    refused = [r for r in server.records() if r.get("event") == "job ended" and r.get("reason") == reason]
    res.check(
        f"the log names the client refused with {reason}",
        bool(refused) and all(r.get("client") == "alice" for r in refused),
        f"{len(refused)} lines, clients {sorted({str(r.get('client')) for r in refused})}",
    )
    res.check("no token in the log", not any(t.encode() in server.output for t in TOKENS.values()))


def run_call_hog(
    profile: Profile, command: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> ScenarioResult:
    n = profile.hog_streams
    with scenario("one client holds the calls (A)") as res, tempfile.TemporaryDirectory() as tmp:
        args = _server_args(tmp, command, "--request-receive-seconds", "3")
        with spawn_server(*args, command=command, env=env) as server:
            stylize(server.stub(), make_request(iterations=1), metadata=BOB)  # warm
            with Hog(server.address, n, ALICE) as alice:
                server.wait_metric("stylize_open_calls", lambda v: v >= 8, timeout=30)
                held = server.metric("stylize_open_calls")
                _bob_figures(res, server, profile.hog_seconds)
            res.figures.update(alice_streams=n, alice_held=held, alice_ends=dict(alice.ends))
            res.check(
                "alice is refused with CLIENT_CALL_LIMIT",
                alice.ends.get("CLIENT_CALL_LIMIT", 0) > 0,
                str(dict(alice.ends)),
            )
            _names_the_client(res, server, "CLIENT_CALL_LIMIT")
    return res


def run_stream_hog(
    profile: Profile, command: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> ScenarioResult:
    n = profile.hog_streams
    with (
        scenario("one client's streams on one job (B)") as res,
        tempfile.TemporaryDirectory() as tmp,
        spawn_server(*_server_args(tmp, command), command=command, env=env) as server,
    ):
        stylize(server.stub(), make_request(iterations=1), metadata=BOB)  # warm
        request = make_request(size=64, iterations=2000, progress_interval=10, request_id="hog")
        with Hog(server.address, n, ALICE, request=request) as alice:
            server.wait_metric("stylize_jobs_in_progress", lambda v: v >= 1, timeout=60)
            time.sleep(1.0)  # the streams attach
            _bob_figures(res, server, profile.hog_seconds)
            held = server.metric("stylize_open_calls")
        server.stub().Cancel(pb.CancelRequest(request_id=request.request_id), metadata=ALICE, timeout=10)
        res.figures.update(
            alice_streams=n,
            alice_attached_max=alice.attached_max,
            alice_open_calls=held,
            alice_ends=dict(alice.ends),
        )
        res.check(
            "at most --max-streams-per-job (2) streams on alice's job",
            alice.attached_max <= 2,
            f"{alice.attached_max} attached",
        )
        _names_the_client(res, server, "JOB_STREAM_LIMIT")
    return res


def _watched_job(server: ServerProc, request: pb.StylizeRequest, streams: int) -> tuple[float, float, list[set[int]]]:
    """`request` read by `streams` streams (each on its own thread), attached
    while it waits behind a blocker: its compute seconds, the server's CPU
    seconds meanwhile, and the iterations each stream got a preview of."""
    blocker = server.stub().Stylize(make_request(size=64, iterations=2000), metadata=BOB, timeout=300)
    next(f for f in blocker if f.WhichOneof("frame") == "progress")
    calls = [server.stub().Stylize(request, metadata=ALICE, timeout=300) for _ in range(streams)]
    for call in calls:
        next(iter(call))  # queued: attached
    cpu0 = server.metric("process_cpu_seconds_total")
    blocker.cancel()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        read = list(pool.map(list, calls))
    cpu = server.metric("process_cpu_seconds_total") - cpu0
    shown = [{f.progress.iteration for f in fs if f.HasField("progress") and f.progress.preview.data} for fs in read]
    return read[0][-1].result.compute_seconds, cpu, shown


def run_shared_previews(
    profile: Profile, command: Sequence[str] | None = None, env: dict[str, str] | None = None
) -> ScenarioResult:
    """1 stream, then 16, `profile.preview_rounds` times; the least of each (the
    machine's other load only ever adds)."""
    many = 16
    with scenario("previews of a job read by 16 streams") as res, tempfile.TemporaryDirectory() as tmp:
        extra = ["--max-concurrent-jobs", "1", "--max-preview-side", "256", "--max-side", "256"]
        args = _server_args(tmp, command, *extra)
        if command is None:  # the limits raised, for the figure
            args += ["--max-calls-per-client", "64", "--reserved-calls", "0", "--max-streams-per-job", str(many)]
        one: list[tuple[float, float]] = []
        sixteen: list[tuple[float, float]] = []
        renders, reports, sent = 0.0, 0, 0
        with spawn_server(*args, command=command, env=env) as server:
            side = profile.preview_side
            fields = {"size": side, "iterations": profile.preview_iterations, "preview_max_side": side}
            stylize(server.stub(), make_request(**fields), metadata=BOB)  # warm the shape
            for _ in range(profile.preview_rounds):
                seconds, cpu, _ = _watched_job(server, make_request(**fields, request_id="one"), 1)
                one.append((seconds, cpu))
                renders0 = server.metric("stylize_preview_renders_total")
                seconds, cpu, shown = _watched_job(server, make_request(**fields, request_id="many"), many)
                sixteen.append((seconds, cpu))
                renders += server.metric("stylize_preview_renders_total") - renders0
                reports += len(set().union(*shown))
                sent += sum(len(s) for s in shown)
        (one_s, one_cpu), (many_s, many_cpu) = min(one), min(sixteen)
        res.figures.update(
            size=profile.preview_side,
            iterations=profile.preview_iterations,
            rounds=profile.preview_rounds,
            compute_s_1_stream=round(one_s, 3),
            compute_s_16_streams=round(many_s, 3),
            slowdown=round(many_s / one_s, 3) if one_s else None,
            cpu_s_1_stream=round(one_cpu, 2),
            cpu_s_16_streams=round(many_cpu, 2),
            previews_sent=sent,
            renders=renders,
            renders_per_report=round(renders / max(1, reports), 2),
        )
        if command is None:
            res.check("one render per report shown", renders == reports, f"{renders} for {reports}")
        res.check("16 streams cost the job < 10%", many_s < 1.1 * one_s, f"{one_s:.2f} s vs {many_s:.2f} s", soft=True)
    return res
