"""Reading ``/metrics`` in tests: the Prometheus text, parsed by
prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape(base: str) -> Samples:
    """A scrape of the live server at ``base`` (started with ``METRICS_TOKEN=TOKEN``)."""
    response = httpx.get(f"{base}/metrics", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def requests_of(found: dict[Any, float], **labels: str) -> float:
    """The sum of tollgate_http_requests_total over the samples matching ``labels``."""
    wanted = set(labels.items())
    return sum(v for (name, got), v in found.items() if name == "tollgate_http_requests_total" and wanted <= got)
