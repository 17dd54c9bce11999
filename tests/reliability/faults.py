"""Faults: the process is told to stop, is killed, or its clients misbehave.

* SIGTERM with jobs running and queued: health goes NOT_SERVING, new calls
  get UNAVAILABLE, the running jobs finish whole within the grace period,
  the queued ones get UNAVAILABLE, and the process exits 0.
* SIGKILL mid-stream: the client sees UNAVAILABLE; retrying on the same
  channel succeeds once a new server is up on the same port.
* A client that stops reading its stream: the job still ends (metrics show
  its iterations done and its slot free) while the client reads nothing, the
  server's memory stays bounded (frames are coalesced, not queued), and the
  client, once it reads again, gets the rest of the stream and its result.
* Slow clients (a pause after every frame): they get their results whole,
  with progress frames skipped rather than queued, and a fast client beside
  them is served as usual.
"""

from __future__ import annotations

import signal
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .harness import (
    CallOutcome,
    Profile,
    ScenarioResult,
    ServerProc,
    free_port,
    make_request,
    ms,
    percentile,
    result_problems,
    scenario,
    spawn_server,
    stylize,
)


# ------------------------------------------------------------------ SIGTERM
def run_sigterm(profile: Profile) -> ScenarioResult:
    with (
        scenario("SIGTERM drain") as res,
        spawn_server(
            "--max-concurrent-jobs",
            "2",
            "--queue-size",
            "4",
            "--grace-seconds",
            "120",
            "--max-side",
            "128",
            "--max-pixels",
            str(128 * 128),
        ) as server,
    ):
        n_running, n_queued = 2, 3
        iterations = profile.sigterm_iterations
        outcomes: dict[str, CallOutcome] = {}
        progressed = threading.Semaphore(0)
        queued = threading.Semaphore(0)

        def client(name: str, release: threading.Semaphore, on: str) -> None:
            request = make_request(size=32, iterations=iterations, seed=hash(name) % 100, request_id=name)
            told = {"done": False}

            def on_frame(frame, call) -> None:
                if not told["done"] and frame.WhichOneof("frame") == on:
                    told["done"] = True
                    release.release()

            outcomes[name] = stylize(server.stub(), request, timeout=300, on_frame=on_frame)
            if not told["done"]:
                release.release()  # never block the scenario on a client that failed early

        threads = []
        for i in range(n_running):
            threads.append(threading.Thread(target=client, args=(f"running-{i}", progressed, "progress"), daemon=True))
            threads[-1].start()
        for _ in range(n_running):
            progressed.acquire(timeout=120)
        for i in range(n_queued):
            threads.append(threading.Thread(target=client, args=(f"queued-{i}", queued, "queued"), daemon=True))
            threads[-1].start()
        for _ in range(n_queued):
            queued.acquire(timeout=120)
        health = health_pb2_grpc.HealthStub(server.channel())
        t_signal = time.monotonic()
        server.signal(signal.SIGTERM)
        # While the running jobs drain: health NOT_SERVING, new calls UNAVAILABLE.
        deadline = time.monotonic() + 10
        health_status = None
        while time.monotonic() < deadline:
            try:
                health_status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
            except grpc.RpcError as exc:
                health_status = exc.code().name
            if health_status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.05)
        late = stylize(server.stub(), make_request(), timeout=30)
        code = server.wait_exit(timeout=240)
        exit_after = time.monotonic() - t_signal
        for t in threads:
            t.join(30)
        running = [outcomes.get(f"running-{i}") for i in range(n_running)]
        waiting = [outcomes.get(f"queued-{i}") for i in range(n_queued)]
        problems = []
        for i, o in enumerate(running):
            if o is None:
                problems.append(f"running-{i}: no outcome")
            else:
                request = make_request(size=32, iterations=iterations)
                problems += [f"running-{i}: {p}" for p in result_problems(o, request)]
        res.figures.update(
            running_jobs=n_running,
            queued_jobs=n_queued,
            iterations=iterations,
            running_completed=sum(1 for o in running if o is not None and o.ok),
            queued_codes=sorted({o.code.name for o in waiting if o is not None}),
            late_call_code=late.code.name,
            exit_code=code,
            exit_after_signal_ms=ms(exit_after),
        )
        res.check(
            "health NOT_SERVING while draining",
            health_status == health_pb2.HealthCheckResponse.NOT_SERVING,
            f"health was {health_status}",
        )
        res.check("running jobs completed whole within the grace period", not problems, "; ".join(problems))
        res.check(
            "queued jobs got UNAVAILABLE",
            all(o is not None and o.code is grpc.StatusCode.UNAVAILABLE for o in waiting),
            "; ".join(f"{o.code.name}: {o.details}" for o in waiting if o is not None),
        )
        res.check(
            "a new call during the drain got UNAVAILABLE",
            late.code is grpc.StatusCode.UNAVAILABLE,
            f"{late.code.name}: {late.details}",
        )
        res.check(
            "exit code 0", code == 0, f"exit code {code}" + ("" if code == 0 else f"; log tail:\n{server.tail(10)}")
        )
    return res


# ------------------------------------------------------------------ SIGKILL
def run_sigkill(profile: Profile) -> ScenarioResult:
    with scenario("SIGKILL and restart") as res:
        port = free_port()
        args = ("--max-concurrent-jobs", "2", "--queue-size", "4", "--max-side", "128", "--max-pixels", str(128 * 128))
        first = ServerProc(args, port=port)
        restarted: list[ServerProc] = []
        try:
            first.wait_ready()
            first.wait_serving()
            # The client's own channel lives across the kill (as a real client's does).
            client_channel = first.channel(target=f"127.0.0.1:{port}")
            stub = first.stub(client_channel)
            request = make_request(size=32, iterations=400, request_id="killed")
            progressed = threading.Event()

            def on_frame(frame, call) -> None:
                if frame.WhichOneof("frame") == "progress":
                    progressed.set()

            box: dict[str, CallOutcome] = {}
            t = threading.Thread(
                target=lambda: box.update(o=stylize(stub, request, timeout=120, on_frame=on_frame)), daemon=True
            )
            t.start()
            progressed.wait(120)
            first.signal(signal.SIGKILL)
            t_kill = time.monotonic()
            t.join(60)
            killed = box.get("o")
            first.wait_exit(30)

            # Restart on the same port (in the background, like a supervisor)
            # while the client retries with backoff on its same channel.
            def restart() -> None:
                proc = ServerProc(args, port=port)
                restarted.append(proc)
                proc.wait_ready()

            threading.Thread(target=restart, daemon=True).start()
            retry_request = make_request(size=32, iterations=5, request_id="retried")
            attempts, delay, outcome = 0, 0.1, None
            while time.monotonic() - t_kill < 240:
                attempts += 1
                outcome = stylize(stub, retry_request, timeout=60)
                if outcome.code is not grpc.StatusCode.UNAVAILABLE:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            recovered = time.monotonic() - t_kill
            res.figures.update(
                killed_stream_code=killed.code.name if killed else None,
                killed_stream_iterations_seen=len(killed.progress_iterations) if killed else None,
                retry_attempts=attempts,
                recovered_after_ms=ms(recovered),
                retry_code=outcome.code.name if outcome else None,
            )
            res.check(
                "the killed stream ended UNAVAILABLE",
                killed is not None and killed.code is grpc.StatusCode.UNAVAILABLE,
                f"{killed.code.name}: {killed.details}" if killed else "no outcome",
            )
            res.check(
                "the retry against the restarted server succeeded",
                outcome is not None and not result_problems(outcome, retry_request),
                "; ".join(result_problems(outcome, retry_request)) if outcome else "no retry",
            )
        finally:
            first.close()
            for proc in restarted:
                proc.close()
    return res


# --------------------------------------------------------- stalled / slow
def run_stalled_client(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("stalled client") as res:
        n = profile.stall_iterations
        size = profile.stall_size
        # Previews on every frame make each frame kilobytes: a server that
        # queued frames for a client that does not read would grow by MBs.
        request = make_request(
            size=size,
            iterations=n,
            content=(size, size * 3 // 4),
            style=(size, size),
            seed=7,
            preview_max_side=size,
            request_id="stalled",
        )
        # One job of the same shape first, long enough to fill the L-BFGS
        # history: the memory a new size costs the engine once is not memory
        # held for a stalled client.
        warm = make_request(
            size=size, iterations=25, content=(size, size * 3 // 4), style=(size, size), seed=7, preview_max_side=size
        )
        stylize(server.stub(), warm, timeout=120)
        iterations_before = server.metric("stylize_iterations_total")
        rss_before = server.rss_mb()
        # Without BDP probing the client's stream window stays at HTTP/2's
        # 64 KiB, so the server, not the client's transport, must absorb the stall.
        channel = server.channel(options=[("grpc.http2.bdp_probe", 0)])
        call = server.stub(channel).Stylize(request, timeout=600)
        frames = iter(call)
        first = next(frames)
        while first.WhichOneof("frame") != "progress":
            first = next(frames)
        # Now read nothing until the job is over on the server.
        t0 = time.monotonic()
        try:
            server.wait_metric("stylize_iterations_total", lambda v: v - iterations_before >= n, timeout=600)
            server.wait_metric("stylize_jobs_in_progress", lambda v: v == 0, timeout=60)
            job_ended, why = True, ""
        except AssertionError as exc:
            job_ended, why = False, str(exc)
        stalled_for = time.monotonic() - t0
        rss_stalled = server.rss_mb()
        kinds, progress, previews_bytes, result = [], [], 0, None
        code = grpc.StatusCode.OK
        try:
            for frame in frames:
                kind = frame.WhichOneof("frame")
                kinds.append(kind)
                if kind == "progress":
                    progress.append(frame.progress.iteration)
                    previews_bytes += len(frame.progress.preview.data)
                elif kind == "result":
                    result = frame.result
        except grpc.RpcError as exc:
            code = exc.code()
        reattached = False
        if code is grpc.StatusCode.UNAVAILABLE and result is None:
            # Stalled past --send-timeout-seconds: the server closed the stream
            # as a broken connection; the job's result waits under its request_id.
            counted = server.metric("stylize_iterations_total")
            again = stylize(server.stub(), request, timeout=120)
            if again.ok and again.started is not None and again.started.reattached:
                reattached = server.metric("stylize_iterations_total") == counted
                code, result = again.code, again.result
        frame_bytes = previews_bytes / max(1, len(progress))
        res.figures.update(
            iterations=n,
            size=size,
            stalled_for_ms=ms(stalled_for),
            progress_frames_after_stall=len(progress),
            preview_bytes_per_frame=int(frame_bytes),
            unbuffered_would_be_mb=round(n * frame_bytes / 2**20, 2),
            rss_before_mb=round(rss_before, 1),
            rss_while_stalled_mb=round(rss_stalled, 1),
            rss_growth_mb=round(rss_stalled - rss_before, 1),
            result_by_reattach=reattached,
        )
        res.check("the job ended on the server while the client read nothing", job_ended, why)
        res.check(
            "the client got its result after reading again (or, stalled past the send timeout, by reattaching "
            "without recomputation)",
            code is grpc.StatusCode.OK and result is not None and result.iterations == n,
            f"{code.name}, result {'present' if result else 'missing'}",
        )
        res.check(
            "progress frames were coalesced, not queued (at most half arrived)",
            len(progress) <= n // 2,
            f"{len(progress)} progress frames of {n} after the stall",
        )
        res.check(
            f"server RSS bounded (< {profile.stall_rss_bound_mb:g} MiB growth)",
            rss_stalled - rss_before < profile.stall_rss_bound_mb,
            f"{rss_before:.1f} -> {rss_stalled:.1f} MiB",
        )
    return res


def run_slow_clients(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("slow clients") as res:
        n = profile.slow_iterations
        slow: dict[int, CallOutcome] = {}
        fast: list[CallOutcome] = []
        stop = threading.Event()

        def slow_client(i: int) -> None:
            request = make_request(size=48, iterations=n, seed=20 + i, preview_max_side=48, request_id=f"slow-{i}")
            channel = server.channel(options=[("grpc.http2.bdp_probe", 0)])
            slow[i] = stylize(
                server.stub(channel),
                request,
                timeout=600,
                on_frame=lambda frame, call: time.sleep(profile.slow_frame_delay),
            )

        def fast_client() -> None:
            stub = server.stub()
            while not stop.is_set():
                fast.append(stylize(stub, make_request(size=32, iterations=5, seed=99), timeout=120))

        threads = [threading.Thread(target=slow_client, args=(i,), daemon=True) for i in range(profile.slow_clients)]
        helper = threading.Thread(target=fast_client, daemon=True)
        for t in threads:
            t.start()
        helper.start()
        for t in threads:
            t.join(600)
        stop.set()
        helper.join(120)
        problems = []
        for i, o in slow.items():
            request = make_request(iterations=n)
            problems += [f"slow-{i}: {p}" for p in result_problems(o, request)]
        fast_bad = [f"{o.code.name}: {o.details}" for o in fast if not o.ok]
        frames = [len(o.progress_iterations) for o in slow.values()]
        res.figures.update(
            slow_clients=profile.slow_clients,
            frame_delay_ms=ms(profile.slow_frame_delay),
            iterations=n,
            progress_frames_received=frames,
            slow_job_time_p50_ms=ms(percentile([o.result.compute_seconds for o in slow.values() if o.result], 50)),
            fast_jobs_meanwhile=len(fast),
        )
        res.check(
            "slow clients got whole results in order",
            len(slow) == profile.slow_clients and not problems,
            "; ".join(problems[:5]),
        )
        res.check("a fast client beside them was served", len(fast) > 0 and not fast_bad, "; ".join(fast_bad[:3]))
    return res
