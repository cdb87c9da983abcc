"""``GET /metrics``: Prometheus text format, for ``Authorization: Bearer
<METRICS_TOKEN>`` (404 while ``METRICS_TOKEN`` is unset, 401 without it).

Two kinds of figures:

- what the web processes recorded (``project.metrics``): requests, latency,
  limiter round trips, Redis and database errors; summed over every gunicorn
  worker, dead ones included (prometheus_client's multiprocess files);
- the state of the service, read when scraped (:class:`StateCollector`):
  validation jobs from the job table (the truth; the worker runs on another
  dyno and shares only the database and Redis with the web, so its work is
  counted from the rows it writes), RQ's queue depth and the workers alive by
  their heartbeats (``health.rq_stats``), accounts near their quotas. A part
  that cannot be read (Redis or the database down) is left out and
  ``tollgate_scrape_part_up{part}`` says 0; the scrape still answers.

Every label is bounded (statuses, queues, windows; never a key or an account).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from health import rq_stats, usage
from project import metrics
from project.errors import error_response
from quotas.backends import get_backend
from validation.models import JobStatus, ValidationJob

log = logging.getLogger("tollgate.health")

# Job durations (finished_at - started_at of finished jobs), in seconds.
JOB_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
# An account is "near" a quota past this share of it.
NEAR_QUOTA = 0.9
_FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _jobs(now: datetime) -> Iterator[Metric]:
    by_status = GaugeMetricFamily("tollgate_jobs", "Validation jobs in the job table, by status.", labels=["status"])
    counts = dict.fromkeys(JobStatus.values, 0)
    for row in ValidationJob.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    for status, count in counts.items():
        by_status.add_metric([status], count)
    yield by_status
    waiting = GaugeMetricFamily(
        "tollgate_jobs_waiting", "Validation jobs that need a worker (queued or running, job table)."
    )
    waiting.add_metric([], counts[JobStatus.QUEUED] + counts[JobStatus.RUNNING])
    yield waiting

    oldest = ValidationJob.objects.filter(status=JobStatus.QUEUED).aggregate(oldest=Min("created_at"))["oldest"]
    age = GaugeMetricFamily(
        "tollgate_jobs_oldest_queued_age_seconds", "How long the oldest queued job has waited (0: none waits)."
    )
    age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    yield age

    totals = ValidationJob.objects.aggregate(valid=Sum("valid_count"), invalid=Sum("invalid_count"))
    records = CounterMetricFamily(
        "tollgate_job_records_validated",
        "Records validated by jobs, valid or not (from the job rows; a job run again counts from zero again).",
        labels=["result"],
    )
    records.add_metric(["valid"], totals["valid"] or 0)
    records.add_metric(["invalid"], totals["invalid"] or 0)
    yield records

    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    done = ValidationJob.objects.filter(status__in=_FINISHED, started_at__isnull=False, finished_at__isnull=False)
    buckets = {
        f"le{index}": Count("pk", filter=Q(duration__lte=timedelta(seconds=bound)))
        for index, bound in enumerate(JOB_BUCKETS)
    }
    durations: dict[str, Any] = done.annotate(duration=duration).aggregate(
        total=Count("pk"), seconds=Sum("duration"), **buckets
    )
    histogram = HistogramMetricFamily(
        "tollgate_job_duration_seconds", "Run time of finished jobs (started to finished), from the job rows."
    )
    spent = durations["seconds"]
    histogram.add_metric(
        [],
        [
            *((str(bound), durations[f"le{index}"]) for index, bound in enumerate(JOB_BUCKETS)),
            ("+Inf", durations["total"]),
        ],
        sum_value=spent.total_seconds() if isinstance(spent, timedelta) else float(spent or 0) / 1e6,
    )
    yield histogram


def _rq(now: datetime) -> Iterator[Metric]:
    stats = rq_stats.read_all(now)
    depth = GaugeMetricFamily("tollgate_queue_depth", "Jobs in RQ's queue (the transport).", labels=["queue"])
    for queue in stats.queues:
        depth.add_metric([queue.name], queue.queued)
    yield depth
    workers = GaugeMetricFamily(
        "tollgate_workers",
        "RQ workers by liveness: live (heartbeat within its bound) or lost (registered, silent).",
        labels=["state"],
    )
    workers.add_metric(["live"], stats.alive_workers)
    workers.add_metric(["lost"], stats.lost_workers)
    yield workers


def _webhooks() -> Iterator[Metric]:
    from webhooks.models import Delivery, DeliveryStatus

    by_status = GaugeMetricFamily(
        "tollgate_webhook_deliveries",
        "Webhook deliveries in the delivery table, by status (failed: given up after WEBHOOK_RETRY_HOURS; "
        "rows leave after WEBHOOK_DELIVERY_RETENTION_DAYS).",
        labels=["status"],
    )
    counts = dict.fromkeys(DeliveryStatus.values, 0)
    retrying = 0
    for row in (
        Delivery.objects.order_by()
        .values("status")
        .annotate(n=Count("pk"), retrying=Count("pk", filter=Q(attempts__gt=0)))
    ):
        counts[row["status"]] = row["n"]
        if row["status"] == DeliveryStatus.PENDING:
            retrying = row["retrying"]
    for status, count in counts.items():
        by_status.add_metric([status], count)
    yield by_status
    failing = GaugeMetricFamily(
        "tollgate_webhook_deliveries_retrying",
        "Pending webhook deliveries whose last attempt failed (waiting for their next one).",
    )
    failing.add_metric([], retrying)
    yield failing


def _quotas(now: float) -> Iterator[Metric]:
    directory = usage.read_directory()
    used = get_backend().usage([account.pk for account in directory.accounts], now=now)
    near = GaugeMetricFamily(
        "tollgate_accounts_near_quota",
        f"Active accounts past {NEAR_QUOTA:.0%} of a quota (first {usage.MAX_ACCOUNTS} accounts).",
        labels=["window"],
    )
    lines = usage.account_usage(directory, used)
    for window in ("day", "month"):
        count = 0
        for line in lines:
            quotaline = line.today if window == "day" else line.month
            if line.is_active and quotaline.quota and quotaline.used is not None:
                count += quotaline.used >= NEAR_QUOTA * quotaline.quota
        near.add_metric([window], count)
    yield near


class StateCollector(Collector):
    """The service's state, read at scrape time (see the module docstring)."""

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        moment = datetime.fromtimestamp(now, tz=UTC)
        up = GaugeMetricFamily(
            "tollgate_scrape_part_up", "Whether a part of this scrape could be read (1) or not (0).", labels=["part"]
        )
        parts: list[tuple[str, Any]] = [
            ("jobs", lambda: list(_jobs(moment))),
            ("webhooks", lambda: list(_webhooks())),
        ]
        if not settings.DEMO_MODE:
            parts += [("rq", lambda: list(_rq(moment))), ("quotas", lambda: list(_quotas(now)))]
        for name, read in parts:
            try:
                families = read()
            except (RedisError, OSError, DatabaseError) as exc:
                log.warning("/metrics: %s unavailable (%s)", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


class _Recorded(Collector):
    """This process's own instruments (no multiprocess directory)."""

    def collect(self) -> Iterator[Metric]:
        return iter(metrics.REGISTRY.collect())


def exposition() -> bytes:
    """The whole scrape, in Prometheus text format."""
    metrics.recorder.flush()  # this process's latest; the others' are at most FLUSH_SECONDS old
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_Recorded())
    registry.register(StateCollector())
    return generate_latest(registry)


def _token_ok(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        return error_response(404, "not_found", "Metrics are off: set METRICS_TOKEN to turn them on.")
    if not _token_ok(request, token):
        return error_response(
            401,
            "authentication_required",
            "Send 'Authorization: Bearer <METRICS_TOKEN>'.",
            headers={"WWW-Authenticate": 'Bearer realm="tollgate-metrics"'},
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
