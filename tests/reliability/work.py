"""Who gets the device, and work never thrown away (issue 9).

* Fair share: two clients by token; one floods (its quota's worth of long
  jobs, resubmitted as they end, plus one over its quota), the other sends
  small jobs one after another. Each of the small client's jobs is queued
  first and runs next; the flooder's extra job gets CLIENT_QUOTA.
* A deadline during the style pass: eight styles at four times the output's
  side; the slot is free again in a fraction of the whole pass.
* Partial at the time limit: a job estimated over --max-job-seconds is
  refused (OVER_TIME_LIMIT) unless it sets accept_partial; with it, the limit
  stops it and it ends OK with its best image (complete=false, TIME_LIMIT),
  kept for reattach.
* Reattach: a job whose connection drops goes on and a new call attaches to
  it (one optimization of the requested iterations); a finished job's result
  is replayed byte for byte without recomputation.
"""

from __future__ import annotations

import pathlib
import tempfile
import threading
import time

import grpc

from stylize_api.v1 import stylize_pb2 as pb
from tests.support.secret import with_job_secret

from .harness import (
    CallOutcome,
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

ALICE, BOB = [("authorization", "Bearer token-a")], [("authorization", "Bearer token-b")]


def run_fair(profile: Profile) -> list[ScenarioResult]:
    """Fair share and the deadline in the style pass, on one server with two tokens."""
    with tempfile.TemporaryDirectory() as tmp, spawn_server(*fair_server_args(pathlib.Path(tmp))) as server:
        return [run_fair_share(server, profile), run_deadline_in_style_pass(server, profile)]


def fair_server_args(tmp: pathlib.Path) -> list[str]:
    tokens = tmp / "fair-tokens"
    tokens.write_text("alice:token-a\nbob:token-b\n")
    return ["--auth-token-file", str(tokens), "--max-concurrent-jobs", "1", "--queue-size", "8"] + [
        "--max-jobs-per-client",
        "4",
        "--max-styles",
        "8",
        "--max-side",
        "128",
        "--max-pixels",
        str(128 * 128),
    ]


def run_fair_share(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("fair share") as res:
        stop_at = time.monotonic() + profile.fair_seconds
        flood: list[CallOutcome] = []
        lock = threading.Lock()

        def flooder(i: int) -> None:
            while time.monotonic() < stop_at:
                outcome = stylize(server.stub(), make_request(iterations=40, seed=i), metadata=ALICE, timeout=300)
                with lock:
                    flood.append(outcome)

        threads = [threading.Thread(target=flooder, args=(i,), daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        server.wait_metric("stylize_queue_depth", lambda v: v >= 3, timeout=60)
        extra = stylize(server.stub(), make_request(iterations=2), metadata=ALICE)
        small: list[CallOutcome] = []
        positions: list[int] = []  # where each of the small client's queued jobs entered the queue

        def first_queued(frame: pb.StylizeResponse, call: object, box: list[int]) -> None:
            if frame.HasField("queued") and not box:
                box.append(frame.queued.position)

        while time.monotonic() < stop_at:
            box: list[int] = []
            small.append(
                stylize(
                    server.stub(),
                    make_request(iterations=2, seed=99),
                    metadata=BOB,
                    on_frame=lambda f, c, b=box: first_queued(f, c, b),
                )
            )
            positions += box
        for thread in threads:
            thread.join(300)
        flood_waits = [o.result.queue_wait_seconds for o in flood if o.result]
        small_waits = [o.result.queue_wait_seconds for o in small if o.result]
        res.figures.update(
            seconds=profile.fair_seconds,
            flood_jobs=len([o for o in flood if o.ok]),
            small_jobs=len([o for o in small if o.ok]),
            small_queue_wait_p50_ms=ms(percentile(small_waits, 50)),
            small_queue_wait_p95_ms=ms(percentile(small_waits, 95)),
            flood_queue_wait_p50_ms=ms(percentile(flood_waits, 50)),
            flood_job_p50_ms=ms(percentile([o.result.compute_seconds for o in flood if o.result], 50)),
            extra_job=f"{extra.code.name}: {extra.details[:60]}",
            small_entered_at_positions=sorted(set(positions)),
        )
        res.check(
            "the flooder's job over its quota is CLIENT_QUOTA",
            extra.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 4" in extra.details,
            f"{extra.code.name}: {extra.details}",
        )
        res.check("the small client was never refused", all(o.ok for o in small), str({o.code.name for o in small}))
        res.check("the small client ran jobs while flooded", len(small) >= 2, f"{len(small)} jobs")
        res.check("every queued small job was queued first (position 1)", set(positions) <= {1}, str(positions))
        res.check(
            "the small client waits less than the flooder",
            (percentile(small_waits, 50) or 0) < (percentile(flood_waits, 50) or 0),
            f"{ms(percentile(small_waits, 50))} ms vs {ms(percentile(flood_waits, 50))} ms",
            soft=True,
        )
    return res


def run_deadline_in_style_pass(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("deadline in the style pass") as res:
        styles = 8
        request = make_request(size=64, iterations=1)
        del request.styles[:]
        for i in range(styles):
            request.styles.add().image.data = make_request(seed=40 + i).styles[0].image.data
        request.style_scale = 4.0
        whole = stylize(server.stub(), request, metadata=ALICE, timeout=300)
        full = whole.result.compute_seconds if whole.result else 0.0
        iterations0 = server.metric("stylize_iterations_total")
        held0 = server.metric("stylize_job_duration_seconds_sum")
        request.seed = 7
        cut = stylize(server.stub(), request, metadata=ALICE, timeout=max(0.2, full / styles))
        server.wait_metric("stylize_jobs_in_progress", lambda v: v == 0, timeout=60)
        held = server.metric("stylize_job_duration_seconds_sum") - held0
        ran = server.metric("stylize_iterations_total") - iterations0
        res.figures.update(styles=styles, style_pass_ms=ms(full), deadline_ms=ms(full / styles), slot_held_ms=ms(held))
        res.check("the whole job ran", whole.ok, f"{whole.code.name}")
        res.check("the deadline ended the call", cut.code is grpc.StatusCode.DEADLINE_EXCEEDED, cut.code.name)
        res.check("stopped before its first iteration", ran == 0, f"{ran} iterations")
        res.check("the slot was held less than half the pass", held < full / 2, f"{held:.2f} s of {full:.2f} s")
    return res


def run_partial_at_time_limit(profile: Profile) -> ScenarioResult:
    with (
        scenario("partial at the time limit") as res,
        spawn_server("--max-job-seconds", "2", "--grace-seconds", "5") as server,
    ):
        # Without accept_partial the job is refused: its estimate is over the limit.
        refused = stylize(server.stub(), make_request(size=64, iterations=2000), timeout=60)
        request = make_request(size=64, iterations=2000, request_id="partial", accept_partial=True)
        outcome = stylize(server.stub(), request, timeout=120)
        result = outcome.result
        iterations = server.metric("stylize_iterations_total")
        again = stylize(server.stub(), request, timeout=60)
        res.figures.update(
            refused_code=refused.code.name,
            refused_ms=round(refused.latency * 1000, 1),
            code=outcome.code.name,
            complete=bool(result and result.complete),
            stop_reason=pb.StopReason.Name(result.stop_reason) if result else None,
            iterations=result.iterations if result else None,
            iterations_requested=result.iterations_requested if result else None,
            counted_time_limit=server.metric("stylize_jobs_stopped_total", reason="time_limit"),
        )
        res.check(
            "OK with the best image so far, complete=false, TIME_LIMIT",
            outcome.ok
            and result is not None
            and not result.complete
            and result.stop_reason == pb.STOP_REASON_TIME_LIMIT
            and 0 < result.iterations < 2000,
            f"{outcome.code.name} {result}" if result is None else f"{result.iterations} iterations",
        )
        res.check("counted as stopped for time_limit", res.figures["counted_time_limit"] == 1, "")
        res.check(
            "without accept_partial: refused, naming the estimate and the limit",
            refused.code is grpc.StatusCode.FAILED_PRECONDITION
            and "limit of 2 s per job" in refused.details
            and "what would fit" in refused.details,
            f"{refused.code.name}: {refused.details[:160]}",
        )
        res.check(
            "the partial result is kept for reattach",
            again.ok
            and again.started is not None
            and again.started.reattached
            and server.metric("stylize_iterations_total") == iterations,
            f"{again.code.name}",
        )
    return res


def run_reattach(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("reattach") as res:
        request = make_request(size=48, iterations=200, request_id="reattach")
        before = server.metric("stylize_iterations_total")
        lost = with_job_secret(grpc.insecure_channel(server.address))
        seen: list[int] = []

        def drop(frame: pb.StylizeResponse, call: object) -> None:
            if frame.HasField("progress") and frame.progress.iteration >= 3 and not seen:
                seen.append(frame.progress.iteration)
                lost.close()

        first = stylize(server.stub(lost), request, on_frame=drop)
        t0 = time.monotonic()
        running = stylize(server.stub(), request)
        running_ms = ms(running.first_frame_at)
        ran = server.metric("stylize_iterations_total") - before
        counted = server.metric("stylize_iterations_total")
        finished = stylize(server.stub(), request)
        recomputed = server.metric("stylize_iterations_total") - counted
        res.figures.update(
            dropped_at_iteration=seen[0] if seen else None,
            first_call=first.code.name,
            reattach_first_frame_ms=running_ms,
            iterations_run=ran,
            finished_replay_ms=ms(finished.latency),
            recomputed_iterations=recomputed,
            seconds=round(time.monotonic() - t0, 2),
        )
        res.check("the dropped call ended", first.code is not grpc.StatusCode.OK, first.code.name)
        res.check(
            "reattached to the running job, one optimization of 200 iterations",
            running.ok and running.started is not None and running.started.reattached and ran == 200,
            f"{running.code.name}, {ran} iterations",
        )
        res.check(
            "a finished job's result replayed byte for byte, nothing recomputed",
            finished.ok
            and finished.started is not None
            and finished.started.reattached
            and recomputed == 0
            and running.result is not None
            and finished.result is not None
            and finished.result.image.data == running.result.image.data,
            f"{finished.code.name}, recomputed {recomputed}",
        )
        other = make_request(size=48, iterations=3)
        other.request_id = request.request_id
        refused = stylize(server.stub(), other)
        res.check(
            "another request under that id is REQUEST_ID_IN_USE",
            refused.code is grpc.StatusCode.ALREADY_EXISTS,
            f"{refused.code.name}",
        )
    return res
