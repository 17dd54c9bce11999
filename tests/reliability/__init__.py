"""The reliability and security suite (issue 6).

Every scenario drives a real `stylize-server` subprocess (random weights,
loopback only, 32-128 px images) through the generated gRPC stubs and returns
a `ScenarioResult`: figures to report and checks that must hold. The same code
runs at two sizes:

* `tests/test_reliability.py` runs the FAST profile inside `make test`
  (bounded to well under three minutes on two CPU cores) and fails on any
  failed hard check;
* `python -m tests.reliability.run --out DIR` (`make reliability`) runs the
  FULL profile, prints a table and writes `DIR/reliability.json`.

Checks are hard (a property: a status code, an iteration count, a metric back
at zero, a memory bound) or soft (a timing: rejection latency, slowdown under
overload; or a question of policy: reflection without the token). Soft checks
are reported by the full run as WARN and never fail a test, because timings on
a shared CI machine are noise, not properties.

Modules: `harness` (server subprocess, calls, profiles, results), `load`
(load and overload), `cancel` (cancellation storm), `faults` (SIGTERM,
SIGKILL, stalled and slow clients), `fuzz` (malformed requests, built by
`malformed`), `memory` (memory over time), `security` (auth, mTLS, secrets in
logs, message limit), `run` (the full run).
"""
