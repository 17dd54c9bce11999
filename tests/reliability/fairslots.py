"""Fair share bounds waiting (issue 17, item 5), on two slots.

Alice floods: four threads resubmit her jobs as they end, so she holds her
quota (two running, two queued). Bob sends jobs one after another. Every
frame's arrival is timed on the client, and for each of Bob's jobs the
scenario counts how many of Alice's jobs started between Bob's call and his
`started` frame (they overtook him) and how long he waited, in units of
Alice's job time.

Two variants, one server each:

* plain: Bob's jobs are as small as Alice's. A waiting client is first in the
  fair queue, so he gets the next slot that frees (the share cap changes
  nothing here; the wait is bounded by Alice's shortest remaining job).
* memory: the memory budget fits two of Alice's jobs, or Bob's bigger one
  alone. Without the share cap each slot Alice frees goes to her next queued
  job, which fits where Bob's does not, up to the overtake limit (2 x slots);
  with the cap she holds at most one slot while Bob waits, so he starts as
  soon as her running jobs are done.

Estimates are budget-independent (Adam: no L-BFGS history), read from the
`started` frames of two jobs on the plain variant's server before its flood.
"""

from __future__ import annotations

import pathlib
import tempfile
import threading
import time

from stylize_api.v1 import stylize_pb2 as pb

from .harness import Profile, ScenarioResult, ServerProc, make_request, ms, percentile, scenario, spawn_server, stylize

CLOCK_SLACK = 0.05  # seconds; see where the overtakes are counted
ALICE, BOB = [("authorization", "Bearer token-a")], [("authorization", "Bearer token-b")]


def _alice(seed: int) -> pb.StylizeRequest:
    return make_request(size=48, iterations=30, seed=seed, optimizer=pb.OPTIMIZER_ADAM)


def _bob(seed: int, big: bool) -> pb.StylizeRequest:
    if big:
        return make_request(size=96, content=(96, 96), iterations=2, seed=seed, optimizer=pb.OPTIMIZER_ADAM)
    return make_request(size=48, iterations=2, seed=seed, optimizer=pb.OPTIMIZER_ADAM)


def _args(tmp: pathlib.Path, *extra: str) -> list[str]:
    tokens = tmp / "tokens"
    tokens.write_text("alice:token-a\nbob:token-b\n")
    return ["--auth-token-file", str(tokens), "--max-concurrent-jobs", "2", "--queue-size", "8"] + [
        "--max-jobs-per-client",
        "4",
        "--max-side",
        "128",
        "--max-pixels",
        str(128 * 128),
        *extra,
    ]


def _estimates(server: ServerProc) -> tuple[int, int]:
    """Device memory of one of Alice's jobs and of Bob's big one, as the server estimates them."""
    alice = stylize(server.stub(), _alice(1), metadata=ALICE, timeout=300)
    bob = stylize(server.stub(), _bob(2, big=True), metadata=BOB, timeout=300)
    assert alice.started is not None and bob.started is not None, (alice.details, bob.details)
    return alice.started.estimate.device_memory_bytes, bob.started.estimate.device_memory_bytes


def run_fair_slots(profile: Profile) -> list[ScenarioResult]:
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp)
        # The plain variant's server first tells the two estimates (they do not depend on the budget).
        with spawn_server(*_args(path)) as server:
            s, b = _estimates(server)
            plain = _run(profile, server, "fair share, two slots", big=False)
        budget = (max(2 * s, b) + s + b) // 2  # two of Alice's fit, or Bob's alone; not his beside one of hers
        with spawn_server(*_args(path, "--device-memory-budget", str(budget))) as server:
            memory = _run(profile, server, "fair share, memory-bound", big=True, fits=(s, b, budget))
        return [plain, memory]


def _run(
    profile: Profile,
    server: ServerProc,
    name: str,
    big: bool,
    fits: tuple[int, int, int] | None = None,
) -> ScenarioResult:
    with scenario(name) as res:
        if fits is not None:
            s, b, budget = fits
            res.figures.update(alice_job_mb=round(s / 2**20, 1), bob_job_mb=round(b / 2**20, 1))
            res.check(
                "the budget fits two of Alice's jobs, or Bob's alone",
                2 * s <= budget < s + b and b <= budget,
                f"{s=} {b=} {budget=}",
            )
        lock = threading.Lock()
        alice_starts: list[float] = []  # when the server started each of Alice's jobs (client clock)
        alice_jobs: list[float] = []
        stop_at = time.monotonic() + profile.fair_seconds

        def flooder(i: int) -> None:
            seed = 100 * i
            while time.monotonic() < stop_at:
                seed += 1
                sent = time.monotonic()

                # The started frame comes after the job's images are decoded; its
                # queue_wait dates the start itself (to within the admission's ms).
                def on_alice(frame: pb.StylizeResponse, call: object, sent: float = sent) -> None:
                    if frame.HasField("started"):
                        with lock:
                            alice_starts.append(sent + frame.started.queue_wait_seconds)

                out = stylize(server.stub(), _alice(seed), metadata=ALICE, timeout=300, on_frame=on_alice)
                if out.result is not None:
                    with lock:
                        alice_jobs.append(out.result.compute_seconds)

        threads = [threading.Thread(target=flooder, args=(i,), daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        # Nobody else waits yet: Alice holds both slots and queues the rest.
        both = server.wait_metric("stylize_jobs_in_progress", lambda v: v == 2, timeout=120)
        server.wait_metric("stylize_queue_depth", lambda v: v >= 2, timeout=120)

        waits: list[float] = []
        overtakes: list[int] = []
        codes: dict[str, int] = {}
        seed = 10_000
        while time.monotonic() < stop_at:
            seed += 1
            marks: dict[str, float] = {}

            def on_bob(frame: pb.StylizeResponse, call: object, marks: dict[str, float] = marks) -> None:
                kind = frame.WhichOneof("frame")
                if kind in ("queued", "started"):
                    marks.setdefault(kind, time.monotonic())
                if kind == "started":
                    marks["start"] = marks["sent"] + frame.started.queue_wait_seconds

            marks["sent"] = time.monotonic()
            out = stylize(server.stub(), _bob(seed, big), metadata=BOB, timeout=300, on_frame=on_bob)
            codes[out.code.name] = codes.get(out.code.name, 0) + 1
            if "start" in marks:
                waits.append(marks["start"] - marks["sent"])
                queued = marks.get("queued", marks["start"])  # a job that never queued was overtaken by nobody
                with lock:
                    # Both starts are client send times plus the server's queue wait, so each is early
                    # by its own admission time (ms, more under load): Alice's job dispatched just
                    # after Bob's, into the other slot, can date before his. CLOCK_SLACK absorbs that.
                    overtakes.append(sum(1 for t in alice_starts if queued < t < marks["start"] - CLOCK_SLACK))
        for thread in threads:
            thread.join(300)

        job = percentile(alice_jobs, 50) or 0.0
        longest = max(alice_jobs, default=0.0)  # what one slot of hers can take to free, on this machine
        res.figures.update(
            seconds=profile.fair_seconds,
            alice_held_both_slots=bool(both),
            alice_jobs=len(alice_jobs),
            bob_jobs=len(waits),
            bob_codes=dict(sorted(codes.items())),
            alice_job_p50_ms=ms(job),
            alice_job_max_ms=ms(longest),
            bob_wait_p50_ms=ms(percentile(waits, 50)),
            bob_wait_max_ms=ms(max(waits, default=None)),
            bob_wait_max_in_alice_jobs=round(max(waits, default=0.0) / job, 2) if job else None,
            alice_starts_while_bob_waited=sum(overtakes),
            most_overtakes_of_one_bob_job=max(overtakes, default=0),
        )
        res.check("Alice used both slots while nobody else waited", bool(both), "")
        res.check("Bob's jobs all ran", bool(waits) and set(codes) == {"OK"}, str(codes))
        res.check(
            "no job of Alice's started while Bob waited",
            sum(overtakes) == 0,
            f"{sum(overtakes)} starts over {len(overtakes)} jobs",
        )
        res.check(
            "Bob waited at most one of Alice's jobs (her longest)",
            bool(longest) and max(waits, default=0.0) <= longest + 0.5,
            f"{ms(max(waits, default=None))} ms vs her longest job {ms(longest)} ms",
            soft=True,
        )
    return res
