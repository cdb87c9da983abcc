"""Running one batch job: stream the stored upload through the engine.

Contract of :func:`job_run`:

- It runs only a ``queued`` row, which it claims (``running``, attempt + 1)
  in one conditional UPDATE; anything else (finished, cancelled, running
  elsewhere) is left alone. Two deliveries of one job run it once.
- Every later write is fenced by the attempt it claimed: if the row was
  cancelled, or recovery gave the job to another run, the next write
  matches no row and this run stops without touching the result.
- A run always starts from the first record and writes its error report to
  a local temporary file, saved to storage at the end: a job run again
  (after a crash) gives exactly the same result.
- Progress (and the heartbeat recovery watches) is written about once a
  second (``VALIDATION_PROGRESS_SECONDS``).
- The upload is streamed from storage as the engine consumes it (from a
  bucket: one GET, read as it goes, ``project.s3_storage``).
- Storage that fails (the upload cannot be read, the report cannot be
  written) fails the job ``storage_unavailable``, and any other unexpected
  exception ``internal_error``; either way its quota is refunded. A database
  that cannot be written leaves the row running, for recovery to rerun.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import orjson
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone

from project.storage import STORAGE_ERRORS, describe, discard
from validation.engine import CompiledSchema
from validation.jobs import job_fail, job_refund, upload_discard
from validation.models import JobStatus, ValidationJob
from validation.readers import Batch, batches
from validation.schemas import schema_validator

log = logging.getLogger("tollgate.validation")

FIRST_ERRORS = 100
DEFAULT_PROGRESS_SECONDS = 1.0


class Interrupted(Exception):
    """The run no longer owns the row (cancelled, or superseded by recovery)."""


def _claim(job_id: Any) -> ValidationJob | None:
    now = timezone.now()
    claimed = ValidationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        attempts=F("attempts") + 1,
        started_at=now,
        heartbeat_at=now,
        worker=f"{socket.gethostname()}:{os.getpid()}"[:100],
    )
    if not claimed:
        return None
    return ValidationJob.objects.select_related("schema").get(pk=job_id)


def job_run(*, job_id: Any) -> str:
    """Run the job if it is queued. Returns ``succeeded``, ``failed``,
    ``interrupted`` or ``skipped`` (not queued)."""
    job = _claim(job_id)
    if job is None:
        log.info("Job %s is not queued; nothing to run", job_id)
        return "skipped"
    try:
        _Run(job).execute()
    except Interrupted:
        log.info("Job %s attempt %s stopped: the job was cancelled or handed to another run", job.pk, job.attempts)
        upload_discard(job_id=job.pk)  # only if it was cancelled (finished)
        return "interrupted"
    except DatabaseError:
        # The row cannot be written: leave it running; recovery reruns it
        # once its heartbeat is stale.
        log.exception("Job %s attempt %s lost its database", job.pk, job.attempts)
        raise
    except Exception as exc:
        # Storage that fails (the upload cannot be read, the report cannot be
        # written) is not the client's doing, and any other error is a bug on
        # our side: either way the job fails and its quota is refunded, as the
        # contract above says, rather than being retried forever by recovery.
        if isinstance(exc, STORAGE_ERRORS):
            log.warning("Job %s attempt %s failed: storage: %s", job.pk, job.attempts, describe(exc))
            code, message = "storage_unavailable", "Storage did not answer while the job ran"
        else:
            log.exception("Job %s attempt %s failed", job.pk, job.attempts)
            code, message = "internal_error", "The job failed on the server"
        job_fail(job_id=job.pk, attempt=job.attempts, code=code, message=f"{message}; its reserved quota was refunded.")
        return "failed"
    upload_discard(job_id=job.pk)
    return "succeeded"


class _Run:
    """One attempt at one job."""

    def __init__(self, job: ValidationJob) -> None:
        self.job = job
        self.fence = ValidationJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts)
        self.processed = self.valid = self.invalid = 0
        self.first_errors: list[dict[str, Any]] = []
        self.interval = float(getattr(settings, "VALIDATION_PROGRESS_SECONDS", DEFAULT_PROGRESS_SECONDS))

    def batches(self, file: Any) -> Iterator[Batch]:
        schema = orjson.loads(self.job.schema.document) if self.job.format == "csv" else None
        return batches(self.job.format, file, schema)

    def write(self, **fields: Any) -> None:
        updated = self.fence.update(
            processed=self.processed,
            valid_count=self.valid,
            invalid_count=self.invalid,
            first_errors=self.first_errors,
            heartbeat_at=timezone.now(),
            **fields,
        )
        if not updated:
            raise Interrupted()

    def execute(self) -> None:
        # The work horse is a fork of a worker holding all of Django: without
        # this, every cyclic GC pass walks those objects (and copies their
        # pages) while the records churn through; records are acyclic and
        # freed by reference counting anyway.
        gc.freeze()
        compiled = schema_validator(schema=self.job.schema)
        with default_storage.open(self.job.upload, "rb") as file, tempfile.TemporaryFile() as report:
            self.validate(compiled, self.batches(file), report)
            self.finish(report)

    def validate(self, compiled: CompiledSchema, batches: Iterator[Batch], report: Any) -> None:
        """``is_valid`` over each batch through ``map`` (the engine's own
        method, no Python frame per record); full errors only for failures."""
        is_valid, dumps, monotonic = compiled.validator.is_valid, orjson.dumps, time.monotonic
        next_write = monotonic() + self.interval
        for batch in batches:
            values = batch.values
            verdicts = list(map(is_valid, values))
            invalid = [(n, v) for n, v, ok in zip(batch.numbers, values, verdicts, strict=True) if not ok]
            self.valid += len(values) - len(invalid)
            if invalid or batch.errors:
                entries = [(n, *compiled.errors(v)) for n, v in invalid]
                entries += [(n, [error], False) for n, error in batch.errors]
                entries.sort(key=lambda entry: entry[0])
                self.report(entries, report, dumps)
            self.processed += len(batch)
            if monotonic() >= next_write:
                self.write()
                next_write = monotonic() + self.interval

    def report(self, entries: list[tuple[int, list[dict[str, Any]], bool]], report: Any, dumps: Any) -> None:
        for number, errors, truncated in entries:
            entry: dict[str, Any] = {"record": number, "errors": errors}
            if truncated:
                entry["errors_truncated"] = True
            report.write(dumps(entry) + b"\n")
            if len(self.first_errors) < FIRST_ERRORS:
                room = FIRST_ERRORS - len(self.first_errors)
                self.first_errors.extend({"record": number, **error} for error in errors[:room])
        self.invalid += len(entries)

    def finish(self, report: Any) -> None:
        name = ""
        if self.invalid:
            report.seek(0)
            target = f"reports/{self.job.account_id}/{self.job.pk}-{self.job.attempts}.ndjson"
            name = default_storage.save(target, File(report, name=target))
        # Reserved and processed agree by construction (one record splitter);
        # if they ever did not, the client pays for what was validated.
        reserved = self.job.units_reserved
        overcharge = max(0, reserved - self.processed) if reserved else 0
        try:
            self.write(status=JobStatus.SUCCEEDED, report=name, finished_at=timezone.now(), refund_units=overcharge)
        except Interrupted:
            discard(name)
            raise
        if overcharge:
            log.warning("Job %s reserved %s units for %s records", self.job.pk, reserved, self.processed)
            job_refund(job_id=self.job.pk)
        log.info(
            "Job %s done: %s records, %s valid, %s invalid (attempt %s)",
            self.job.pk,
            self.processed,
            self.valid,
            self.invalid,
            self.job.attempts,
        )
