"""Scrape a server's `/metrics` over HTTP and read values from it, parsed with
prometheus_client's own text parser.

    from tests.support.metrics import scrape, value
    families = scrape(srv.metrics_port)
    value(families, "stylize_requests_total", code="OK")   # 0.0 when absent
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, Metric]:
    """Every metric family on http://host:port/metrics, by family name."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        assert response.status == 200, response.status
        text = response.read().decode("utf-8")
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample_name: str, **labels: str) -> float:
    """The value of the sample `sample_name` (e.g. "stylize_requests_total",
    "stylize_queue_wait_seconds_count") whose labels include `labels`; summed
    over matching samples; 0.0 when there is none."""
    total = 0.0
    for family in families.values():
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def has_sample(families: dict[str, Metric], sample_name: str) -> bool:
    return any(s.name == sample_name for f in families.values() for s in f.samples)


def wait_for_value(
    port: int, sample_name: str, predicate: Callable[[float], bool], timeout: float = 30, **labels: str
) -> float:
    """Scrape until `predicate(value)` holds (metrics move on other threads
    shortly after a call ends); raises AssertionError with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        current = value(scrape(port), sample_name, **labels)
        if predicate(current):
            return current
        if time.monotonic() >= deadline:
            raise AssertionError(f"{sample_name}{labels} stayed at {current}")
        time.sleep(0.05)
