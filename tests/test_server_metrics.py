"""`/metrics` scraped over HTTP from a real in-process server and parsed with
prometheus_client's parser: after a known sequence of calls the counters have
moved by exactly the expected amounts. (The registry is process-wide, so the
test compares before and after.)"""

from __future__ import annotations

import grpc
import pytest

from tests.support.metrics import has_sample, scrape, value, wait_for_value
from tests.support.server import StreamReader, is_kind, long_request, running_server, small_request


def test_metrics_after_a_known_run(engine):
    with running_server(engine=engine, max_concurrent_jobs=1) as srv:
        port = srv.metrics_port
        before = scrape(port)
        names = set(before)
        # The names and types the monitoring rules and dashboard are written against.
        expected = {
            "stylize_requests": ("counter", {"code"}),
            "stylize_refusals": ("counter", {"reason"}),
            "stylize_jobs_in_progress": ("gauge", set()),
            "stylize_queue_depth": ("gauge", set()),
            "stylize_queue_wait_seconds": ("histogram", {"le"}),
            "stylize_job_duration_seconds": ("histogram", {"le"}),
            "stylize_iteration_seconds": ("histogram", {"le"}),
            "stylize_iterations": ("counter", set()),
            "stylize_jobs_stopped": ("counter", {"reason"}),
            "stylize_model_load_seconds": ("gauge", set()),
            "stylize_device_memory_bytes": ("gauge", set()),
            "stylize_memory_budget_bytes": ("gauge", set()),
            "stylize_memory_reserved_bytes": ("gauge", set()),
            "stylize_job_estimated_memory_bytes": ("histogram", {"le"}),
            "stylize_job_estimated_seconds": ("histogram", {"le"}),
            "stylize_open_calls": ("gauge", set()),
            "stylize_result_store_bytes": ("gauge", set()),
            "stylize_precision_info": ("gauge", {"precision"}),
        }
        for family, (kind, labels) in expected.items():
            assert family in names, family
            assert before[family].type == kind, family
            seen = {label for sample in before[family].samples for label in sample.labels}
            assert seen <= labels, (family, seen)  # no per-client (or any other) label
        assert value(before, "stylize_precision_info", precision=srv.server.engine.model_info.precision) >= 1
        assert {s.labels["reason"] for s in before["stylize_jobs_stopped"].samples} >= {
            "client",
            "deadline",
            "time_limit",
            "shutdown",
        }
        assert has_sample(before, "process_cpu_seconds_total")  # the default process metrics
        assert value(before, "stylize_model_load_seconds") > 0

        stub = srv.stub()
        ok = [list(stub.Stylize(small_request(iterations=n), timeout=60)) for n in (3, 4)]
        assert all(frames[-1].HasField("result") for frames in ok)
        with pytest.raises(grpc.RpcError):
            list(stub.Stylize(small_request(size=4), timeout=30))
        cancelled = StreamReader(stub.Stylize(long_request(), timeout=120))
        cancelled.wait_for(is_kind("progress"))
        cancelled.call.cancel()
        assert cancelled.wait_done() == grpc.StatusCode.CANCELLED

        wait_for_value(
            port,
            "stylize_requests_total",
            lambda v: v >= value(before, "stylize_requests_total", code="CANCELLED") + 1,
            code="CANCELLED",
        )
        wait_for_value(port, "stylize_jobs_in_progress", lambda v: v == 0)
        after = scrape(port)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert delta("stylize_requests_total", code="OK") == 2
        assert delta("stylize_requests_total", code="INVALID_ARGUMENT") == 1
        assert delta("stylize_requests_total", code="CANCELLED") == 1
        assert delta("stylize_jobs_stopped_total", reason="client") == 1
        assert delta("stylize_jobs_stopped_total", reason="deadline") == 0
        assert delta("stylize_queue_wait_seconds_count") == 3  # the invalid request never reached the queue
        assert delta("stylize_refusals_total", reason="INVALID_OPTION") == 1
        assert delta("stylize_job_estimated_memory_bytes_count") == 3
        assert delta("stylize_job_estimated_seconds_count") == 3
        assert delta("stylize_job_duration_seconds_count") == 3
        done = delta("stylize_iterations_total")
        assert done >= 3 + 4 + 1  # and the cancelled job's iterations
        assert delta("stylize_iteration_seconds_count") == done
        assert delta("stylize_iteration_seconds_sum") > 0
        assert value(after, "stylize_queue_depth") == 0
        # Histogram buckets are cumulative and end at +Inf == count.
        assert value(after, "stylize_job_duration_seconds_bucket", le="+Inf") == value(
            after, "stylize_job_duration_seconds_count"
        )
