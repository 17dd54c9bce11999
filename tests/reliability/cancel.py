"""Cancellation storm: many clients go away at random points of their calls.

Each client of a wave picks a moment to leave: right after its `queued`
frame (a queued job), right after `started`, after a few progress frames (a
running job), after a random delay from another thread, or through a short
deadline. Afterwards every slot must be free again (stylize_jobs_in_progress
and stylize_queue_depth scraped from /metrics back to 0), the server must have
counted the stops, and a full set of new jobs must run.
"""

from __future__ import annotations

import threading
import time

import grpc

from stylize_api.v1 import stylize_pb2 as pb

from .harness import (
    CallOutcome,
    Profile,
    ScenarioResult,
    ServerProc,
    make_request,
    ms,
    result_problems,
    rng_for,
    scenario,
    stylize,
)

PLANS = ("after_queued", "after_started", "after_progress", "timer", "deadline")
LONG_JOB = 400  # iterations: long enough to be running when the client leaves


def _client(
    server: ServerProc, index: int, wave: int, clients: int, out: dict[int, tuple[str, CallOutcome, bool]]
) -> None:
    rng = rng_for("cancel", wave * 1000 + index)
    plan = PLANS[(index + wave) % len(PLANS)]
    stub = server.stub(server.channel())
    # Half the clients name their jobs: such a job outlives a lost stream (for
    # reattach), so these leave as the client library does, with the Cancel
    # RPC first. The others just drop the call, which stops the job at once.
    named = index % 2 == 1
    fields = {"request_id": f"cancel-{wave}-{index}"} if named else {}
    request = make_request(size=rng.choice((32, 40)), iterations=LONG_JOB, seed=index, **fields)
    state: dict[str, object] = {"cancelled_while": None, "call": None}
    progress_target = rng.randint(1, 5)

    def leave(call, where: str) -> None:
        # Only the current attempt's call, and only once.
        if state["call"] is call and state["cancelled_while"] is None:
            state["cancelled_while"] = where
            if named:
                try:
                    stub.Cancel(pb.CancelRequest(request_id=request.request_id), timeout=10)
                except grpc.RpcError:
                    pass  # NOT_FOUND: the job had not been admitted yet; the call's cancel covers it
            call.cancel()

    def on_frame(frame, call) -> None:
        kind = frame.WhichOneof("frame")
        if plan == "after_queued" and kind == "queued":
            leave(call, "queued")
        elif plan == "after_queued" and kind == "started":
            leave(call, "running")  # it never had to wait: leave as soon as it runs
        elif (plan == "after_started" and kind == "started") or (
            plan == "after_progress" and kind == "progress" and frame.progress.iteration >= progress_target
        ):
            leave(call, "running")

    def on_call(call) -> None:
        state["call"], state["cancelled_while"] = call, None
        if plan == "timer":
            threading.Timer(rng.uniform(0.05, 1.5), leave, args=(call, "timer")).start()

    time.sleep(rng.uniform(0, 0.1 * clients))  # a storm over seconds, not a single burst
    for _attempt in range(20):  # a turned-away client retries with backoff
        timeout = rng.uniform(0.3, 2.0) if plan == "deadline" else 120
        outcome = stylize(stub, request, timeout=timeout, on_frame=on_frame, on_call=on_call)
        if outcome.code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
        time.sleep(rng.uniform(0.1, 0.5))
    out[index] = (str(state["cancelled_while"] or plan), outcome, outcome.saw_started)


def run_cancel_storm(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("cancellation storm") as res:
        # Start from an idle server, so that no earlier job's stop is counted here.
        server.wait_metric("stylize_jobs_in_progress", lambda v: v == 0, timeout=60)
        server.wait_metric("stylize_queue_depth", lambda v: v == 0, timeout=60)
        cancelled_before = server.metric("stylize_jobs_stopped_total")
        codes: dict[str, int] = {}
        where: dict[str, int] = {}
        unexpected: list[str] = []
        stopped_queued = stopped_running = 0
        stopped_seen = 0  # stops of calls the server had admitted (the client saw a frame)
        for wave in range(profile.cancel_waves):
            out: dict[int, tuple[str, CallOutcome, bool]] = {}
            threads = [
                threading.Thread(target=_client, args=(server, i, wave, profile.cancel_clients, out), daemon=True)
                for i in range(profile.cancel_clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            for plan, outcome, started in out.values():
                codes[outcome.code.name] = codes.get(outcome.code.name, 0) + 1
                if outcome.code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                    if started:
                        stopped_running += 1
                    else:
                        stopped_queued += 1
                    where[plan] = where.get(plan, 0) + 1
                    stopped_seen += bool(outcome.kinds)
                elif outcome.code not in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    unexpected.append(f"{plan}: {outcome.code.name}: {outcome.details}")
            # Every slot must come free before the next wave (and at the end).
            _, drain_in = server.wait_metric("stylize_jobs_in_progress", lambda v: v == 0, timeout=30)
            _, queue_in = server.wait_metric("stylize_queue_depth", lambda v: v == 0, timeout=30)
        cancelled = server.metric("stylize_jobs_stopped_total") - cancelled_before
        # The next jobs run: a full house of concurrent jobs, all whole.
        info = server.info().queue
        n_next = info.max_concurrent_jobs + info.capacity
        follow: list[list[str]] = [[] for _ in range(n_next)]

        def next_job(i: int) -> None:
            request = make_request(size=32, iterations=5, seed=50 + i)
            follow[i] = result_problems(stylize(server.stub(), request, timeout=120), request)

        threads = [threading.Thread(target=next_job, args=(i,), daemon=True) for i in range(n_next)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        in_progress = server.metric("stylize_jobs_in_progress")
        depth = server.metric("stylize_queue_depth")
        res.figures.update(
            clients=profile.cancel_clients * profile.cancel_waves,
            waves=profile.cancel_waves,
            codes=codes,
            stopped_while_queued=stopped_queued,
            stopped_while_running=stopped_running,
            stops_by_plan=where,
            server_counted_cancelled=int(cancelled),
            slots_free_after_ms=ms(drain_in),
            queue_empty_after_ms=ms(queue_in),
            next_jobs_ok=sum(1 for f in follow if not f),
        )
        res.check(
            "only CANCELLED, DEADLINE_EXCEEDED, OK or RESOURCE_EXHAUSTED", not unexpected, "; ".join(unexpected[:5])
        )
        res.check("jobs stopped while queued", stopped_queued > 0, f"{stopped_queued}")
        res.check("jobs stopped while running", stopped_running > 0, f"{stopped_running}")
        # A call cancelled before the server saw it is never counted; every
        # admitted one must be.
        res.check(
            "server counted every stop of an admitted job (stylize_jobs_stopped_total)",
            stopped_seen <= cancelled <= stopped_queued + stopped_running,
            f"server {int(cancelled)}, admitted and stopped {stopped_seen}, "
            f"all stops {stopped_queued + stopped_running}",
        )
        res.check(
            "stylize_jobs_in_progress and stylize_queue_depth back to 0",
            in_progress == 0 and depth == 0,
            f"in progress {in_progress}, queue depth {depth}",
        )
        bad = [p for f in follow for p in f]
        res.check(f"the next {n_next} jobs run", not bad, "; ".join(bad[:5]))
    return res
