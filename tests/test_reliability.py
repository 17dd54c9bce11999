"""The fast part of the reliability and security suite (issue 6), in `make test`.

The scenarios of `tests/reliability/` at the FAST profile, against real
`stylize-server` subprocesses (random weights, loopback, 32-64 px): load,
overload, a cancellation storm, stalled and slow clients, a few hundred
fuzzed requests, the message-size limit, memory over 30 jobs, image bytes in
logs, SIGTERM, SIGKILL and restart, token and mTLS; and the serving core's
(issue 9): header-only and unread streams, the decompression bomb, fair share,
a deadline in the style pass, a partial result at the time limit, reattach; and
one client against another (issue 17): held calls, streams on one job.
Each test fails on any failed hard check; timing checks (soft) are left to
`make reliability`.
"""

from __future__ import annotations

import pytest

from tests.reliability import calls, cancel, fairslots, faults, frontdoor, fuzz, load, memory, security, work
from tests.reliability.harness import FAST, ServerProc, main_server_args, spawn_server

pytestmark = pytest.mark.slow

# Scenarios whose hard checks read latency, order or time (health p99, who
# started first, within the grace) run alone on the machine: make test's
# second pass, and so do those that share their server (shared_server below).
# The others (SIGKILL and restart, token and mTLS, the decompression bomb's
# RSS) run in the first, beside other tests.
serial = pytest.mark.serial


# Tests with their own servers come first, so that at most two servers are
# alive at once (the shared one starts with the first test that needs it).
@serial
def test_sigterm_drains_running_and_refuses_queued() -> None:
    faults.run_sigterm(FAST).assert_ok()


def test_sigkill_mid_stream_then_retry_against_restarted_server() -> None:
    faults.run_sigkill(FAST).assert_ok()


def test_token_and_mtls_let_nobody_in_and_logs_keep_secrets() -> None:
    security.run_security(FAST).assert_ok()


@serial
def test_header_only_streams_cost_nothing_and_health_answers() -> None:
    frontdoor.run_header_only(FAST).assert_ok()


@serial
def test_unread_streams_end_and_their_results_stay_retrievable() -> None:
    frontdoor.run_unread(FAST).assert_ok()


def test_the_issue_s_decompression_bomb_costs_less_than_300_mb() -> None:
    result = frontdoor.run_bomb(FAST)
    result.assert_ok()
    assert result.figures["decoded_code"] == "OK"


@serial
def test_fair_share_and_a_deadline_within_the_style_pass() -> None:
    for result in work.run_fair(FAST):
        result.assert_ok()


@serial
def test_fair_share_on_two_slots_never_lets_the_flooder_overtake() -> None:
    for result in fairslots.run_fair_slots(FAST):
        result.assert_ok()


@serial
def test_partial_result_at_the_time_limit() -> None:
    work.run_partial_at_time_limit(FAST).assert_ok()


@serial
def test_a_client_holding_open_calls_leaves_another_client_served() -> None:
    result = calls.run_call_hog(FAST)
    result.assert_ok()
    assert result.figures["bob_success"] == 1.0


@serial
def test_a_client_attaching_streams_to_one_job_leaves_another_client_served() -> None:
    result = calls.run_stream_hog(FAST)
    result.assert_ok()
    assert result.figures["alice_attached_max"] <= 2


@pytest.fixture(scope="module")
def shared_server():
    with spawn_server(*main_server_args(FAST)) as server:
        yield server


@serial
def test_load_then_overload(shared_server: ServerProc) -> None:
    loaded = load.run_load(shared_server, FAST)
    loaded.assert_ok()
    overloaded = load.run_overload(shared_server, FAST, loaded)
    overloaded.assert_ok()
    assert overloaded.figures["rejected"] > 0


@serial
def test_cancellation_storm_frees_every_slot(shared_server: ServerProc) -> None:
    result = cancel.run_cancel_storm(shared_server, FAST)
    result.assert_ok()
    assert result.figures["stopped_while_queued"] > 0 and result.figures["stopped_while_running"] > 0


@serial
def test_stalled_client_is_not_buffered_and_job_ends(shared_server: ServerProc) -> None:
    faults.run_stalled_client(shared_server, FAST).assert_ok()


@serial
def test_slow_clients_get_whole_results(shared_server: ServerProc) -> None:
    faults.run_slow_clients(shared_server, FAST).assert_ok()


@serial
def test_fuzzed_requests_get_clean_status_codes(shared_server: ServerProc) -> None:
    result = fuzz.run_fuzz(shared_server, FAST)
    result.assert_ok()
    assert result.figures["requests"] >= FAST.fuzz_examples


@serial
def test_message_of_exactly_the_limit_is_served_one_byte_more_is_refused(shared_server: ServerProc) -> None:
    security.run_message_limit(shared_server, FAST).assert_ok()


@serial
def test_reattach_to_running_and_finished_jobs(shared_server: ServerProc) -> None:
    work.run_reattach(shared_server, FAST).assert_ok()


# The distinct-layer-lists scenario (frontdoor.run_layer_lists) runs in the full
# `make reliability` only: `make test` has the engine's own RSS test over 60 lists.


@serial
def test_memory_flat_over_mixed_jobs(shared_server: ServerProc) -> None:
    memory.run_memory(shared_server, FAST).assert_ok()


@serial
def test_no_image_bytes_in_server_output(shared_server: ServerProc) -> None:
    # Runs after the tests above in this module, so the output holds their traffic.
    security.run_log_scan(shared_server, FAST).assert_ok()


def test_defaults_valid_under_small_max_side() -> None:
    """Regression: a request that leaves multiscale_min_size unset must be
    valid on a server whose --max-side is below that option's default (256).
    It was not (every small-limit server refused every default request), and
    the suite's servers run with --max-side 128."""
    from stylize_server.job.options import Limits
    from stylize_server.wire import admission
    from tests.reliability.harness import make_request

    limits = Limits(max_pixels=128 * 128, max_side=128, max_iterations=100, max_styles=2, max_input_pixels=1 << 20)
    head = admission.read_request(make_request(size=32, iterations=2), limits)
    assert head.options.size == 32
