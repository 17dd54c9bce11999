"""Malformed requests, from a fixed corpus and from hypothesis (the requests
and their mutations are built in malformed.py).

Each must end with a clean status: OK (a whole result, when the mutations
happened to be valid), INVALID_ARGUMENT with a message, RESOURCE_EXHAUSTED
(too large) or ALREADY_EXISTS (two requests drew one request_id). Never
INTERNAL, UNKNOWN or a dropped connection; afterwards the
process is alive, logged no error, and a good request succeeds.

Then the same at the byte level (wirefuzz.py), through a raw channel, on
every method: bytes that do not parse as the method's request type must be
INVALID_ARGUMENT with reason MALFORMED_REQUEST (issue 17, item 7).

Hypothesis runs derandomized (the same requests every run), without a
deadline, database or shrinking: a failure is recorded with the request that
caused it, not minimized against a live server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stylize_api.v1 import stylize_pb2 as pb

from . import malformed, wirefuzz
from .harness import Profile, ScenarioResult, ServerProc, result_problems, scenario, stylize
from .malformed import Mutation, base_request, corpus, mutations

# ALREADY_EXISTS: two fuzzed requests that drew the same request_id are
# different requests under one id (REQUEST_ID_IN_USE), a documented refusal.
CLEAN = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}


@dataclass
class _Record:
    sent: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    invalid_without_message: int = 0
    wire_sent: int = 0
    wire_malformed: int = 0


def _send(server: ServerProc, stub, request: pb.StylizeRequest, label: str, rec: _Record) -> None:
    outcome = stylize(stub, request, timeout=60)
    rec.sent += 1
    rec.codes[outcome.code.name] = rec.codes.get(outcome.code.name, 0) + 1
    if outcome.code not in CLEAN:
        rec.failures.append(f"{label}: {outcome.code.name}: {outcome.details}")
    elif outcome.code is grpc.StatusCode.INVALID_ARGUMENT and not outcome.details.strip():
        rec.failures.append(f"{label}: INVALID_ARGUMENT without a message")
    elif outcome.code is grpc.StatusCode.OK:
        problems = result_problems(outcome, request)
        if problems:
            rec.failures.append(f"{label}: OK but {'; '.join(problems)}")


def run_fuzz(server: ServerProc, profile: Profile) -> ScenarioResult:
    with scenario("fuzzed input") as res:
        malformed.OVER_LIMIT_BASE = int(server.info().limits.max_message_bytes)
        stub = server.stub()
        rec = _Record()
        for label, mutate in corpus():
            request = base_request()
            mutate(request)
            _send(server, stub, request, f"corpus[{label}]", rec)
        corpus_count = rec.sent

        @settings(
            max_examples=profile.fuzz_examples,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(st.lists(mutations(), min_size=1, max_size=3))
        def fuzz_one(muts: list[Mutation]) -> None:
            request = base_request()
            for m in muts:
                m(request)
            _send(server, stub, request, f"example {rec.sent - corpus_count}", rec)

        fuzz_one()
        channel = server.channel()

        def send_bytes(label: str, method: str, data: bytes) -> None:
            code, details, reason = wirefuzz.call(channel, method, data)
            rec.wire_sent += 1
            rec.wire_malformed += not wirefuzz.parses(method, data)
            rec.codes[code.name] = rec.codes.get(code.name, 0) + 1
            wrong = wirefuzz.problem(method, data, code, details, reason, CLEAN)
            if wrong:
                rec.failures.append(f"{label}: {wrong}")

        for label, method, data in wirefuzz.corpus():
            send_bytes(f"bytes[{label}]", method, data)

        @settings(
            max_examples=max(20, profile.fuzz_examples // 3),
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(wirefuzz.wire_cases())
        def fuzz_bytes(case: tuple[str, bytes]) -> None:
            send_bytes(f"bytes example {rec.wire_sent}", *case)

        fuzz_bytes()
        alive = server.popen.poll() is None
        good = base_request()
        after = stylize(stub, good, timeout=60) if alive else None
        records = server.records()
        serving = next((i for i, r in enumerate(records) if r.get("event") == "serving"), 0)
        # TensorFlow's native start-up lines (logger "stderr") before "serving"
        # are its own noise, e.g. "failed call to cuInit" on a machine without a GPU.
        errors = [
            r
            for i, r in enumerate(records)
            if r.get("level") in ("ERROR", "CRITICAL") and (i > serving or r.get("logger") != "stderr")
        ]
        tracebacks = server.output.count(b"Traceback")
        internal = server.metric("stylize_requests_total", code="INTERNAL") if alive else None
        unknown = server.metric("stylize_requests_total", code="UNKNOWN") if alive else None
        res.figures.update(
            requests=rec.sent,
            corpus_cases=corpus_count,
            generated=rec.sent - corpus_count,
            byte_level=rec.wire_sent,
            byte_level_unparsable=rec.wire_malformed,
            codes=dict(sorted(rec.codes.items())),
            failures=len(rec.failures),
        )
        res.check(
            f"sent at least {profile.fuzz_examples} malformed requests",
            rec.sent >= profile.fuzz_examples,
            f"{rec.sent} sent ({corpus_count} from the corpus)",
        )
        res.check(
            "every one got a clean status (OK / INVALID_ARGUMENT with a message / RESOURCE_EXHAUSTED / ALREADY_EXISTS)",
            not rec.failures,
            "; ".join(rec.failures[:8]),
        )
        res.check("the server process is alive", alive, f"exit code {server.popen.poll()}")
        res.check(
            "a good request afterwards succeeds",
            after is not None and not result_problems(after, good),
            "; ".join(result_problems(after, good)) if after else "server gone",
        )
        res.check(
            "no INTERNAL/UNKNOWN counted, no ERROR logged, no traceback",
            not internal and not unknown and not errors and not tracebacks,
            f"INTERNAL {internal}, UNKNOWN {unknown}, errors {[e.get('event') for e in errors[:3]]}, "
            f"tracebacks {tracebacks}",
        )
    return res
