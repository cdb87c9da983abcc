"""Running one batch job: stream the stored upload through the engine.

Contract of :func:`job_run`:

- It runs only a ``queued`` row, which it claims (``running``, attempt + 1)
  in one conditional UPDATE; anything else (finished, cancelled, running
  elsewhere) is left alone. Two deliveries of one job run it once.
- Every later write is fenced by the attempt it claimed (its number and start
  time): if the row was cancelled, or recovery (or an operator's retry) gave
  the job to another run, the next write matches no row and this run stops
  without touching the result.
- A run always starts from the first record and writes its error report to
  a local temporary file, saved to storage at the end: a job run again
  (after a crash) gives exactly the same result. A report saved by a run that
  could not record it is deleted again.
- Records are validated by the guard's child (``validation.guard``), each
  within ``VALIDATION_RECORD_TIME_LIMIT`` seconds: a record past it is the
  record error ``validation_timeout`` and the job goes on; past
  ``VALIDATION_MAX_TIMEOUTS`` such records the job fails
  (``too_many_timeouts``) and is refunded.
- Progress (and the heartbeat recovery watches) is written about once a
  second (``VALIDATION_PROGRESS_SECONDS``), also while one long record runs,
  so a cancelled job stops within about that long.
- The upload is streamed from storage as the engine consumes it (from a
  bucket: one GET, read as it goes, ``project.s3_storage``).
- Output is bounded (``validation.bounds``): ``first_errors`` by count and
  bytes, each report line by bytes, the report by a multiple of the upload
  (``report_truncated`` past it); strings are made storable.
- A failure on our side fails the job with its code and refunds its quota:
  storage that fails (the upload cannot be read, the report cannot be
  written: ``storage_unavailable``), a schema that no longer compiles (its
  code, e.g. ``schema_too_complex``), data the database refused or any other
  bug (``internal_error``). Only a database that cannot be reached leaves the
  row running, for recovery.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import tempfile
import time
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, InterfaceError, OperationalError
from django.db.models import F
from django.utils import timezone

from project import exactjson
from project.errors import ApiError
from project.storage import STORAGE_ERRORS, describe, discard
from validation import guard
from validation.bounds import FIRST_ERRORS, FIRST_ERRORS_BYTES, ErrorBudget, report_cap, storable_error
from validation.depth import max_depth
from validation.jobs import job_fail, job_finished_send, refund_claim, refund_claimed, upload_discard
from validation.models import JobStatus, ValidationJob
from validation.readers import raw_batches
from validation.schemas import schema_validator

log = logging.getLogger("tollgate.validation")

DEFAULT_PROGRESS_SECONDS = 1.0
# A record may take this long; a job this many such records (each costs the
# worker the budget and a restart of its child) before it fails.
DEFAULT_RECORD_TIME_LIMIT = 2.0
DEFAULT_MAX_TIMEOUTS = 10


class Interrupted(Exception):
    """The run no longer owns the row (cancelled, or superseded by recovery)."""


class JobFailed(Exception):
    """The job cannot go on: fail it with ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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


def _fail(job: ValidationJob, code: str, message: str) -> str:
    job_fail(job_id=job.pk, attempt=job.attempts, code=code, message=message)
    return "failed"


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
    except JobFailed as failure:
        log.warning("Job %s attempt %s failed: %s", job.pk, job.attempts, failure.message)
        return _fail(job, failure.code, failure.message)
    except ApiError as refused:  # the schema no longer compiles under today's limits
        log.warning("Job %s attempt %s: its schema is refused: %s", job.pk, job.attempts, refused.message)
        return _fail(job, refused.code, f"{refused.message} Its reserved quota was refunded.")
    except (OperationalError, InterfaceError):
        # The database cannot be reached: leave the row running; recovery
        # reruns it once its heartbeat is stale.
        log.exception("Job %s attempt %s lost its database", job.pk, job.attempts)
        raise
    except DatabaseError:
        # The database refused what the run wrote: running it again would
        # fail the same way, and recovery would report the worker as lost.
        log.exception("Job %s attempt %s could not store its results", job.pk, job.attempts)
        return _fail(job, "internal_error", "The job's results could not be stored; its reserved quota was refunded.")
    except STORAGE_ERRORS as exc:
        # Storage that fails (the upload cannot be read, the report cannot be
        # written) is not the client's doing: the job fails and is refunded.
        log.warning("Job %s attempt %s failed: storage: %s", job.pk, job.attempts, describe(exc))
        return _fail(
            job, "storage_unavailable", "Storage did not answer while the job ran; its reserved quota was refunded."
        )
    except Exception:
        # Any other error is a bug on our side: the job fails (logged with its
        # traceback) and its quota is refunded, as the contract above says,
        # rather than being retried forever by recovery.
        log.exception("Job %s attempt %s failed", job.pk, job.attempts)
        return _fail(job, "internal_error", "The job failed on the server; its reserved quota was refunded.")
    upload_discard(job_id=job.pk)
    return "succeeded"


def record_time_limit() -> float:
    return float(getattr(settings, "VALIDATION_RECORD_TIME_LIMIT", DEFAULT_RECORD_TIME_LIMIT))


class _Run:
    """One attempt at one job."""

    def __init__(self, job: ValidationJob) -> None:
        self.job = job
        self.fence = ValidationJob.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts, started_at=job.started_at
        )
        self.processed = self.valid = self.invalid = 0
        self.first_errors: list[dict[str, Any]] = []
        self.first_budget = ErrorBudget(FIRST_ERRORS, FIRST_ERRORS_BYTES)
        self.report_room = report_cap(job.upload_bytes)
        self.report_truncated = False
        self.seconds = record_time_limit()
        self.max_stopped = int(getattr(settings, "VALIDATION_MAX_TIMEOUTS", DEFAULT_MAX_TIMEOUTS))
        self.interval = float(getattr(settings, "VALIDATION_PROGRESS_SECONDS", DEFAULT_PROGRESS_SECONDS))
        self.next_write = time.monotonic() + self.interval
        self.record_kind = job.record_kind
        self.report_file: Any = None
        # What the row says after the last progress write (report bytes,
        # processed, valid, invalid, first errors): a cancellation refunds
        # what that write had not processed, and keeps a report of the rest.
        self.mark: tuple[int, int, int, int, int, bool] = (0, 0, 0, 0, 0, False)

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
        position = self.report_file.tell() if self.report_file is not None else 0
        self.mark = (
            position,
            self.processed,
            self.valid,
            self.invalid,
            len(self.first_errors),
            self.report_truncated,
        )

    def tick(self) -> None:
        """Write progress if it is due (between batches, and while a long
        record runs): the heartbeat, and how a cancellation is noticed."""
        if time.monotonic() >= self.next_write:
            self.write()
            self.next_write = time.monotonic() + self.interval

    def execute(self) -> None:
        # The work horse is a fork of a worker holding all of Django: without
        # this, every cyclic GC pass walks those objects (and copies their
        # pages) while the records churn through; records are acyclic and
        # freed by reference counting anyway.
        gc.freeze()
        compiled = schema_validator(schema=self.job.schema)
        checker = guard.for_this_thread(self.seconds)
        fmt, limit = self.job.format, max_depth()
        with default_storage.open(self.job.upload, "rb") as file, tempfile.TemporaryFile() as report:
            self.report_file = report
            judged = checker.judge(
                compiled,
                fmt,
                raw_batches(fmt, file),
                seconds=self.seconds,
                limit=limit,
                tick=self.tick,
                may_stop=self.max_stopped,
                output=self.job.output,
            )
            try:
                for raw, outcome in judged:
                    self.report(outcome.entries, report)
                    self.valid += len(raw) - len(outcome.entries)
                    self.processed += len(raw)
                    self.tick()
            except Interrupted:
                self.keep_partial(report)
                raise
            except guard.TooManyStopped:
                raise JobFailed(
                    "too_many_timeouts",
                    f"More than {self.max_stopped} records could not be validated within {self.seconds:g} s "
                    "each; the job was stopped and its reserved quota refunded.",
                ) from None
            self.finish(report)

    def report(self, entries: list[tuple[int, list[dict[str, Any]], bool]], report: Any) -> None:
        dumps = exactjson.dumps
        for number, errors, truncated in entries:
            if not self.report_truncated:
                entry: dict[str, Any] = {"record": number, "record_kind": self.record_kind, "errors": errors}
                if truncated:
                    entry["errors_truncated"] = True
                line = dumps(entry) + b"\n"
                if len(line) > self.report_room:
                    self.report_truncated = True
                else:
                    self.report_room -= len(line)
                    report.write(line)
            if self.first_budget.count:
                kept, _ = self.first_budget.take(
                    [{"record": number, "record_kind": self.record_kind, **storable_error(e)} for e in errors]
                )
                self.first_errors.extend(kept)
        self.invalid += len(entries)

    def keep_partial(self, report: Any) -> None:
        """The job was cancelled while this run owned it: keep the report of
        the records its last progress write counted (the ones the
        cancellation did not refund), with their counts. A run superseded by
        another leaves nothing."""
        cancelled = ValidationJob.objects.filter(
            pk=self.job.pk, status=JobStatus.CANCELLED, attempts=self.job.attempts, report=""
        )
        if not cancelled.exists():
            return
        position, self.processed, self.valid, self.invalid, first, self.report_truncated = self.mark
        del self.first_errors[first:]
        report.seek(position)
        report.truncate()
        name = self.save_report(report)
        updated = cancelled.update(
            processed=self.processed,
            valid_count=self.valid,
            invalid_count=self.invalid,
            first_errors=self.first_errors,
            report=name,
            report_truncated=self.report_truncated,
        )
        if not updated:
            discard(name)

    def save_report(self, report: Any) -> str:
        """Save the report file to storage; its name ("" if no errors)."""
        if not (self.invalid and report.tell()):
            return ""
        report.seek(0)
        target = f"reports/{self.job.account_id}/{self.job.pk}-{self.job.attempts}.ndjson"
        return default_storage.save(target, File(report, name=target))

    def finish(self, report: Any) -> None:
        name = self.save_report(report)
        # Reserved and processed agree by construction (one record splitter);
        # if they ever did not, the client pays for what was validated.
        reserved = self.job.units_reserved
        overcharge = max(0, reserved - self.processed) if reserved else 0
        finished_at = timezone.now()
        try:
            self.write(
                status=JobStatus.SUCCEEDED,
                report=name,
                report_truncated=self.report_truncated,
                finished_at=finished_at,
                refund_units=overcharge,
                **refund_claim(overcharge, finished_at),
            )
        except BaseException:
            discard(name)  # nothing will ever point at it
            raise
        if overcharge:
            log.warning("Job %s reserved %s units for %s records", self.job.pk, reserved, self.processed)
            refund_claimed(self.job, overcharge, finished_at)
        job_finished_send(job_id=self.job.pk, status=JobStatus.SUCCEEDED)
        log.info(
            "Job %s done: %s records, %s valid, %s invalid (attempt %s)",
            self.job.pk,
            self.processed,
            self.valid,
            self.invalid,
            self.job.attempts,
        )
