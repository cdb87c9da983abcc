"""Storage faults: what a storage backend raises when it cannot do its job,
and deleting without letting a fault mask the error being handled.

``STORAGES["default"]`` is the filesystem or a bucket (``project.s3_storage``);
callers catch :data:`STORAGE_ERRORS` around storage calls and answer with the
documented fault (503 ``storage_unavailable`` at upload, a job failed
``storage_unavailable`` in the worker).
"""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files.storage import default_storage

log = logging.getLogger("tollgate.storage")

# The filesystem (OSError: a missing file, a full disk, permissions) or a
# bucket (refused, unreachable, timed out, access denied, no such key).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, BotoCoreError, ClientError)
# Of those, what a bucket raises. A bucket creates an object whole or not at
# all (one PUT, or a multipart upload that is completed), so a failed save
# leaves nothing to delete; the filesystem may leave a partial file.
BUCKET_ERRORS: tuple[type[BaseException], ...] = (BotoCoreError, ClientError)


def describe(exc: BaseException) -> str:
    """A one-line, secret-free account of a storage error for logs."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{type(exc).__name__}: {error.get('Code', '?')} {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def discard(name: str) -> bool:
    """Delete ``name`` from default storage if it is there. A storage error is
    logged, not raised (the caller is cleaning up after another error, or a
    later sweep retries). Returns whether the name is gone."""
    if not name:
        return True
    try:
        default_storage.delete(name)
    except STORAGE_ERRORS as exc:
        log.warning("Could not delete %s from storage (%s); it is left for a later sweep", name, describe(exc))
        return False
    return True
