"""Prometheus metrics of the server: the metric objects (in prometheus-client's
one global registry, the only global state of the server), the HTTP `/metrics`
endpoint, and the device-memory gauge read from TensorFlow at scrape time.

Gauges that several in-process servers may share (tests run many) are moved with
inc()/dec(), never set(), so they stay correct when summed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stylize_api.schema import ErrorReason, StopReason

# Buckets span CPU test jobs (sub-second) to long GPU jobs (minutes).
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600, float("inf"))
_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))
_ITERATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, float("inf"))
# 64 MiB to 64 GiB, by powers of two: a 64 px preview to a 16 MP print.
_MEMORY_BUCKETS = tuple(float(2**e) for e in range(26, 37)) + (float("inf"),)
_ESTIMATE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))

REQUESTS = Counter(
    "stylize_requests",
    "Stylize calls by final gRPC status code, or DETACHED: the client went away and the job went on "
    "(it may reattach by request_id).",
    ["code"],
)
REFUSALS = Counter(
    "stylize_refusals",
    "Stylize calls refused before a job ran for them, by ErrorReason (QUEUE_FULL, CLIENT_QUOTA, TOO_LARGE, ...).",
    ["reason"],
)
JOBS_IN_PROGRESS = Gauge("stylize_jobs_in_progress", "Jobs holding a device slot now.")
QUEUE_DEPTH = Gauge("stylize_queue_depth", "Jobs waiting for a slot now.")
QUEUE_WAIT = Histogram(
    "stylize_queue_wait_seconds", "Time from admission to a slot on the device.", buckets=_WAIT_BUCKETS
)
JOB_DURATION = Histogram(
    "stylize_job_duration_seconds",
    "Time a job held its slot: decoding and optimization (any outcome).",
    buckets=_DURATION_BUCKETS,
)
ITERATION = Histogram("stylize_iteration_seconds", "Time of one optimization iteration.", buckets=_ITERATION_BUCKETS)
ITERATIONS = Counter("stylize_iterations", "Optimization iterations run, over all jobs.")
JOBS_STOPPED = Counter(
    "stylize_jobs_stopped",
    "Jobs stopped before their end: client (cancel, disconnect, Cancel RPC), deadline, time_limit "
    "(--max-job-seconds; the best image is returned), shutdown (drained).",
    ["reason"],
)
MODEL_LOAD = Gauge("stylize_model_load_seconds", "Time it took to load VGG-19 at start-up.")
MEMORY_BUDGET = Gauge("stylize_memory_budget_bytes", "Device memory the running jobs' estimates may add up to.")
MEMORY_RESERVED = Gauge("stylize_memory_reserved_bytes", "The memory estimates of the jobs holding a slot now.")
JOB_ESTIMATED_MEMORY = Histogram(
    "stylize_job_estimated_memory_bytes", "Peak device memory of admitted jobs, as estimated.", buckets=_MEMORY_BUCKETS
)
JOB_ESTIMATED_SECONDS = Histogram(
    "stylize_job_estimated_seconds", "Compute time of admitted jobs, as estimated.", buckets=_ESTIMATE_BUCKETS
)
PREVIEW_RENDERS = Counter(
    "stylize_preview_renders",
    "Progress previews rendered (shrunk and PNG-encoded); each is shared by every stream attached to its job.",
)
OPEN_CALLS = Gauge("stylize_open_calls", "Stylize calls open now (receiving, queued, running or sending).")
RESULT_STORE_BYTES = Gauge("stylize_result_store_bytes", "Bytes of results kept for reattach.")
PRECISION = Gauge("stylize_precision_info", "1 for the precision the network's convolutions run in.", ["precision"])

STOP_REASONS = tuple(r.value for r in StopReason if r is not StopReason.NONE)
for _reason in STOP_REASONS:  # export zeros so rate() works before the first stop
    JOBS_STOPPED.labels(reason=_reason)
REFUSAL_REASONS = tuple(
    r.value
    for r in ErrorReason
    if r
    not in (
        ErrorReason.DEADLINE,
        ErrorReason.CANCELLED,
        ErrorReason.NUMERICAL,
        ErrorReason.INTERNAL,
        ErrorReason.NOT_FOUND,
    )
)
for _reason in REFUSAL_REASONS:
    REFUSALS.labels(reason=_reason)


class _DeviceMemoryCollector(Collector):
    """stylize_device_memory_bytes, asked of the engine at scrape time.

    Absent (no sample) where TensorFlow does not report device memory (CPU)."""

    def __init__(self) -> None:
        self._source: Callable[[], int | None] | None = None
        self._lock = threading.Lock()

    def set_source(self, source: Callable[[], int | None] | None) -> None:
        with self._lock:
            self._source = source

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            source = self._source
        family = GaugeMetricFamily("stylize_device_memory_bytes", "Device memory TensorFlow has in use (GPU only).")
        if source is not None:
            try:
                value = source()
            except Exception:
                value = None
            if value is not None:
                family.add_metric([], float(value))
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


DEVICE_MEMORY = _DeviceMemoryCollector()
REGISTRY.register(DEVICE_MEMORY)


class MetricsEndpoint:
    """The `/metrics` HTTP server of one Server; port 0 picks a free port."""

    def __init__(self, host: str, port: int) -> None:
        self._httpd: WSGIServer
        self._thread: threading.Thread
        self._httpd, self._thread = start_http_server(port, addr=host)

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
