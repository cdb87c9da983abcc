"""Registered schemas and batch validation jobs.

A :class:`ValidationJob` row is the truth about a job; Redis (RQ) only
carries its id to a worker. The fields that recovery relies on:

- ``attempts`` counts claims by a worker and fences writes: a run writes only
  while the row is ``running`` with the attempt number it claimed, so a run
  that was presumed dead and replaced can never overwrite its successor.
- ``heartbeat_at`` is written with the progress (about once a second) by the
  running attempt; a ``running`` row whose heartbeat is older than
  ``VALIDATION_STALE_SECONDS`` has lost its worker.
- ``enqueued_at`` is when the id was last handed to RQ; a ``queued`` row whose
  RQ entry is gone after that is handed over again.
"""

from __future__ import annotations

import uuid

from django.db import models

from project.exactjson import JSONDecoder, JSONEncoder
from quotas.models import Account

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"


class Schema(models.Model):
    """One immutable version of an account's named schema."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="schemas")
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=64)
    # The JSON text as registered (orjson), so that what is served back is
    # exactly what was compiled; jsonb would reorder keys.
    document = models.TextField()
    draft = models.CharField(max_length=16)
    # The resources its references resolved to by `$id`, pinned when it was
    # registered: {uri: "name/version"} (validation.registry).
    pins = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "name", "version"], name="validation_schema_unique_version"),
        ]
        indexes = [models.Index(fields=["account", "name", "-created_at"], name="validation_schema_latest")]

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


class SchemaResource(models.Model):
    """A URI a registered schema defines with ``$id`` (its root, or a
    subschema at ``pointer``), for the account's other schemas to reference.
    One name owns a URI: its versions may define it again, other names not."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    uri = models.CharField(max_length=2048)
    name = models.CharField(max_length=100)
    schema = models.ForeignKey(Schema, on_delete=models.CASCADE, related_name="resources")
    pointer = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schema", "uri"], name="validation_resource_unique")]
        indexes = [models.Index(fields=["account", "uri"], name="validation_resource_uri")]

    def __str__(self) -> str:
        return self.uri


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobFormat(models.TextChoices):
    NDJSON = "ndjson"
    JSON = "json"
    CSV = "csv"


# How ``record`` numbers a job's records, by format (the report's and the
# API's ``record_kind``): the 1-based line of an NDJSON upload (blank lines
# count), the 0-based index in a JSON array, the 1-based data row of a CSV
# upload (the header is not a row).
RECORD_KINDS = {JobFormat.NDJSON: "line", JobFormat.JSON: "index", JobFormat.CSV: "row"}


class ValidationJob(models.Model):
    """A batch validation of one uploaded file against one schema version."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="validation_jobs")
    schema = models.ForeignKey(Schema, on_delete=models.PROTECT, related_name="jobs")
    format = models.CharField(max_length=8, choices=JobFormat.choices)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # How an invalid record is reported: Tollgate's list of errors, or one of
    # the specification's output formats (flag, basic, detailed).
    output = models.CharField(max_length=8, default="list")

    # The upload in default storage (emptied once a finished job's file is deleted).
    upload = models.CharField(max_length=255, blank=True)
    upload_bytes = models.PositiveBigIntegerField(default=0)
    total = models.PositiveBigIntegerField(help_text="Records counted while the upload streamed.")

    # Quota: units reserved at upload (0 when the limiter was unreachable in
    # fail-open mode), when, and what was given back.
    units_reserved = models.PositiveBigIntegerField(default=0)
    reserved_at = models.FloatField(help_text="Epoch seconds of the reservation (refunds use its windows).")
    refund_units = models.PositiveBigIntegerField(default=0)
    refunded_at = models.DateTimeField(null=True, blank=True)

    processed = models.PositiveBigIntegerField(default=0)
    valid_count = models.PositiveBigIntegerField(default=0)
    invalid_count = models.PositiveBigIntegerField(default=0)
    # Errors quote numbers as sent (a Decimal, an integer beyond 64 bits: project.exactjson).
    first_errors = models.JSONField(default=list, blank=True, encoder=JSONEncoder, decoder=JSONDecoder)
    report = models.CharField(max_length=255, blank=True, help_text="The errors NDJSON in default storage.")
    report_truncated = models.BooleanField(
        default=False, help_text="The report reached its cap (a multiple of the upload); later lines were left out."
    )
    error = models.JSONField(null=True, blank=True, help_text="Why a failed job failed: {code, message}.")

    attempts = models.PositiveIntegerField(default=0)
    recoveries = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=100, blank=True, help_text="host:pid of the latest run.")

    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the worker deleted the job's files (upload, report) after the
    # retention period (VALIDATION_RETENTION_DAYS); the row stays.
    files_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="validation_job_account"),
            models.Index(fields=["status", "heartbeat_at"], name="validation_job_status"),
            models.Index(
                fields=["finished_at"],
                condition=models.Q(files_deleted_at__isnull=True, finished_at__isnull=False),
                name="validation_job_retention",
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.status})"

    @property
    def rq_id(self) -> str:
        """The RQ job id: stable, so that handing a job over twice is harmless."""
        return f"validation-{self.id}"

    @property
    def record_kind(self) -> str:
        return RECORD_KINDS[JobFormat(self.format)]

    @property
    def has_report(self) -> bool:
        """Whether ``/errors`` answers: a succeeded job, or a cancelled one
        (the report of what it processed before it stopped)."""
        return self.status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED)

    @property
    def is_finished(self) -> bool:
        return self.status not in ACTIVE_STATUSES
