"""The full reliability and security run behind `make reliability`.

    python -m tests.reliability.run --out reliability-results [--profile full|fast] [--only load,fuzz]

Runs every scenario against real `stylize-server` subprocesses (random
weights, loopback, small images), prints a table, and writes
`OUT/reliability.json` (every figure and check) and `OUT/reliability.md` (the
table for the README). Exit status 1 when a hard check failed; soft checks
(timings, and the reflection question) are shown as WARN.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.reliability import (  # noqa: E402
    calls,
    cancel,
    fairslots,
    faults,
    frontdoor,
    fuzz,
    httpfront,
    imagebombs,
    load,
    memory,
    security,
    work,
)
from tests.reliability.harness import PROFILES, Profile, ScenarioResult, main_server_args, spawn_server  # noqa: E402

# Scenarios on the shared server, in order (memory last but one: it reports
# growth after everything else has warmed the process; the log scan last).
SHARED: tuple[tuple[str, Callable[..., ScenarioResult]], ...] = (
    ("load", load.run_load),
    ("overload", load.run_overload),
    ("rejection", load.run_rejection_cost),
    ("cancel", cancel.run_cancel_storm),
    ("stalled", faults.run_stalled_client),
    ("slow", faults.run_slow_clients),
    ("fuzz", fuzz.run_fuzz),
    ("limit", security.run_message_limit),
    ("reattach", work.run_reattach),
    ("memory", memory.run_memory),
    ("layers", frontdoor.run_layer_lists),
    ("logs", security.run_log_scan),
)
OWN_SERVER: tuple[tuple[str, Callable[[Profile], ScenarioResult | list[ScenarioResult]]], ...] = (
    ("sigterm", faults.run_sigterm),
    ("sigkill", faults.run_sigkill),
    ("security", security.run_security),
    ("headers", frontdoor.run_header_only),
    ("unread", frontdoor.run_unread),
    ("bomb", frontdoor.run_bomb),
    ("fair", work.run_fair),
    ("fairslots", fairslots.run_fair_slots),
    ("hog-calls", calls.run_call_hog),
    ("hog-streams", calls.run_stream_hog),
    ("previews", calls.run_shared_previews),
    ("partial", work.run_partial_at_time_limit),
    ("textbomb", imagebombs.run_text_bomb),
    ("decodemem", imagebombs.run_decode_memory),
    ("masks", memory.run_masked_budget),
    ("http-sse", httpfront.run_unread_sse),
    ("http-slowloris", httpfront.run_slowloris),
)
NAMES = [n for n, _ in SHARED] + [n for n, _ in OWN_SERVER]

# The figures shown in the table (all of them go to the JSON).
HEADLINE: dict[str, tuple[str, ...]] = {
    "load": (
        "clients",
        "jobs_completed",
        "jobs_per_second",
        "queue_wait_p50_ms",
        "queue_wait_p95_ms",
        "job_time_p50_ms",
        "job_time_p95_ms",
        "rejected",
    ),
    "overload": (
        "clients",
        "jobs_completed",
        "rejected",
        "reject_p50_ms",
        "reject_p99_ms",
        "job_time_p50_ms",
        "job_time_vs_load_p50",
        "rss_growth_mb",
    ),
    "rejection cost": ("reject_tiny_p50_ms", "reject_1mpx_jpeg_p50_ms", "ratio"),
    "cancellation storm": (
        "clients",
        "stopped_while_queued",
        "stopped_while_running",
        "server_counted_cancelled",
        "slots_free_after_ms",
        "next_jobs_ok",
    ),
    "stalled client": (
        "iterations",
        "progress_frames_after_stall",
        "unbuffered_would_be_mb",
        "rss_growth_mb",
        "result_by_reattach",
    ),
    "slow clients": ("slow_clients", "frame_delay_ms", "progress_frames_received", "fast_jobs_meanwhile"),
    "fuzzed input": ("requests", "byte_level", "byte_level_unparsable", "codes", "failures"),
    "message size limit": ("limit_bytes", "at_limit", "one_byte_over"),
    "memory over time": (
        "jobs",
        "rss_after_warmup_mb",
        "rss_end_mb",
        "rss_growth_mb",
        "rss_growth_second_half_mb",
        "rss_per_novel_shape_kb",
    ),
    "masks under a budget": ("regions", "size", "budget_mb", "estimates_mb", "peak_rss_growth_mb", "peak_over_budget"),
    "no image bytes in logs": ("log_lines", "found"),
    "SIGTERM drain": ("running_completed", "queued_codes", "late_call_code", "exit_code", "exit_after_signal_ms"),
    "SIGKILL and restart": ("killed_stream_code", "retry_attempts", "recovered_after_ms", "retry_code"),
    "header-only streams": (
        "streams",
        "no_token_codes",
        "health_p99_ms_(no token)",
        "token_reasons",
        "health_p99_ms_(64 calls held open)",
    ),
    "unread streams": (
        "streams",
        "health_p99_ms_(streams unread)",
        "calls_closed_after_jobs_ms",
        "rss_growth_mb",
        "unread_codes",
        "reattach_recomputed_iterations",
    ),
    "decompression bomb": (
        "wire_kb",
        "refused_code",
        "refused_peak_growth_mb",
        "decoded_code",
        "decoded_peak_growth_mb",
    ),
    "PNG text bomb": (
        "request_kb",
        "health_p99_ms_(idle)",
        "health_p99_ms_(1 client)",
        "health_p99_ms_(3 clients)",
        "health_max_ms_(3 clients)",
        "health_timeouts_(3 clients)",
        "bombs_(1 client)",
    ),
    "decode memory": (
        "side",
        "bound_mb",
        "peak_growth_mb_(16-bit grey content)",
        "peak_growth_mb_(16-bit grey mask)",
        "peak_growth_mb_(palette+tRNS mask)",
        "peak_growth_mb_(two at once)",
        "mode_side",
        "per_mode_worst_mb",
    ),
    "distinct layer lists": ("lists", "rss_after_warmup_mb", "rss_end_mb", "rss_per_list_mb"),
    "fair share": (
        "seconds",
        "flood_jobs",
        "small_jobs",
        "small_entered_at_positions",
        "small_queue_wait_p50_ms",
        "flood_queue_wait_p50_ms",
        "extra_job",
    ),
    **dict.fromkeys(
        ("fair share, two slots", "fair share, memory-bound"),
        (
            "alice_jobs",
            "bob_jobs",
            "alice_job_p50_ms",
            "alice_job_max_ms",
            "bob_wait_p50_ms",
            "bob_wait_max_ms",
            "bob_wait_max_in_alice_jobs",
            "alice_starts_while_bob_waited",
        ),
    ),
    "one client holds the calls (A)": (
        "alice_streams",
        "alice_held",
        "alice_ends",
        "bob_tries",
        "bob_served",
        "bob_success",
        "bob_refusals",
        "bob_job_p50_ms",
    ),
    "one client's streams on one job (B)": (
        "alice_streams",
        "alice_attached_max",
        "alice_ends",
        "bob_tries",
        "bob_served",
        "bob_success",
        "bob_refusals",
        "bob_job_p50_ms",
    ),
    "previews of a job read by 16 streams": (
        "size",
        "iterations",
        "compute_s_1_stream",
        "compute_s_16_streams",
        "slowdown",
        "cpu_s_1_stream",
        "cpu_s_16_streams",
        "previews_sent",
        "renders_per_report",
    ),
    "deadline in the style pass": ("styles", "style_pass_ms", "deadline_ms", "slot_held_ms"),
    "partial at the time limit": (
        "refused_code",
        "refused_ms",
        "code",
        "complete",
        "stop_reason",
        "iterations",
        "iterations_requested",
    ),
    "unread SSE streams": (
        "streams",
        "health_p99_ms_(1000 unread streams)",
        "rss_growth_mb",
        "rss_growth_while_held_mb",
        "calls_closed_after_ms",
    ),
    "slowloris headers (HTTP)": ("connections", "closed", "closed_after_max_s", "health_p99_ms_(300 slow connections)"),
    "reattach": (
        "dropped_at_iteration",
        "iterations_run",
        "reattach_first_frame_ms",
        "finished_replay_ms",
        "recomputed_iterations",
    ),
    "security: token, mTLS, logs": (
        "refused_cases",
        "let_in",
        "health_without_token",
        "reflection_without_token",
        "tls",
        "secrets_found_in_log",
    ),
}


def _status(result: ScenarioResult) -> str:
    if result.hard_failures:
        return "FAIL"
    return "WARN" if result.soft_failures else "PASS"


def _fmt(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def headline(result: ScenarioResult) -> str:
    keys = HEADLINE.get(result.name) or tuple(k for k in result.figures if not k.startswith("_"))
    return "; ".join(f"{k.replace('_', ' ')} {_fmt(result.figures[k])}" for k in keys if k in result.figures)


def markdown(results: list[ScenarioResult], profile: Profile, seconds: float) -> str:
    lines = [
        f"Reliability run (`make reliability`, profile {profile.name}), {_dt.datetime.now(_dt.UTC):%Y-%m-%d}, "
        f"{platform.machine()} {os.cpu_count()} CPUs, random weights, loopback, {seconds:.0f} s in all.",
        "",
        "| Scenario | Result | Figures |",
        "|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {_status(r)} | {headline(r)} |")
    notes = [(r.name, c) for r in results for c in r.checks if not c.ok]
    if notes:
        lines += ["", "Checks that did not hold:", ""]
        lines += [f"- {name}: {'(soft) ' if c.soft else ''}{c.name}: {c.detail}" for name, c in notes]
    return "\n".join(lines) + "\n"


def print_table(results: list[ScenarioResult]) -> None:
    width = max(len(r.name) for r in results)
    print()
    print(f"{'scenario':<{width}}  result   secs  figures")
    print(f"{'-' * width}  ------  -----  -------")
    for r in results:
        print(f"{r.name:<{width}}  {_status(r):<6}  {r.seconds:5.1f}  {headline(r)}")
        for c in r.checks:
            if not c.ok:
                print(f"{'':<{width}}  {'warn' if c.soft else 'FAILED'}: {c.name}: {c.detail[:300]}")
    print()


def run(profile: Profile, only: set[str]) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []

    def done(r: ScenarioResult) -> None:
        results.append(r)
        print(f"[{_status(r)}] {r.name} ({r.seconds:.1f} s): {headline(r)}", flush=True)

    shared = [(n, f) for n, f in SHARED if n in only]
    if shared:
        with spawn_server(*main_server_args(profile)) as server:
            load_result = None
            for name, fn in shared:
                if name == "overload":
                    r = fn(server, profile, load_result)
                else:
                    r = fn(server, profile)
                if name == "load":
                    load_result = r
                done(r)
    for name, fn in OWN_SERVER:
        if name in only:
            outcome = fn(profile)
            for r in outcome if isinstance(outcome, list) else [outcome]:
                done(r)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="reliability-results", help="folder for reliability.json and .md")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--only", default="", help=f"comma list of scenarios: {','.join(NAMES)}")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or set(NAMES)
    unknown = only - set(NAMES)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {NAMES}")
    profile = PROFILES[args.profile]
    t0 = time.monotonic()
    results = run(profile, only)
    seconds = time.monotonic() - t0
    print_table(results)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "profile": profile.name,
        "settings": profile.__dict__,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "machine": {"cpus": os.cpu_count(), "arch": platform.machine(), "python": platform.python_version()},
        "passed": all(not r.hard_failures for r in results),
        "scenarios": [r.to_json() for r in results],
    }
    (out / "reliability.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "reliability.md").write_text(markdown(results, profile, seconds))
    print(f"wrote {out / 'reliability.json'} and {out / 'reliability.md'} ({seconds:.0f} s)")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
