"""``Idempotency-Key`` on every POST under ``/api/v1/``.

Placed right after ``QuotaMiddleware``: by the time its ``process_view``
runs, the key is authenticated (``request.meter``) and nothing has been
charged but what the view's metering charges before the view (one request,
no units, for every POST). Then:

- no header: nothing happens;
- a malformed key: 400 ``invalid_idempotency_key``;
- a new key: the body is read (spooled to disk past 1 MiB, bounded by what
  the view would accept) and hashed with method, path, query and content
  type, the key is claimed, and the view runs on the spooled body; its
  answer is kept (unless it is a 429 or a 5xx, which a retry must be able
  to redo) or the claim forgotten;
- the same key and request again: the kept answer, byte for byte, with
  ``Idempotent-Replayed: true``. The view does not run, so nothing is
  charged but the request itself: ``QuotaMiddleware`` counts a view that
  did not charge as one request and no units, as it does every refused call;
- the same key for another request: 422 ``idempotency_key_reused``; while
  the first still runs: 409 ``idempotency_in_progress``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from typing import IO, Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from gunicorn.http.errors import ParseException

from idempotency import services
from idempotency.exceptions import InvalidIdempotencyKey
from project.database import database_unavailable
from project.errors import ApiError

log = logging.getLogger("tollgate.idempotency")

PREFIX = "/api/v1/"
HEADER = "HTTP_IDEMPOTENCY_KEY"
MAX_KEY_LENGTH = 255
CHUNK = 64 * 1024
SPOOL_IN_MEMORY = 1024 * 1024
# Room for a multipart body's boundaries and fields around the file.
MULTIPART_SLACK = 64 * 1024


def parse_key(raw: str) -> str:
    """The key of the header; InvalidIdempotencyKey if it is empty, longer
    than 255 characters or not printable ASCII."""
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not all(" " <= char <= "~" for char in key):
        raise InvalidIdempotencyKey(details={"max_length": MAX_KEY_LENGTH})
    return key


class _Chained:
    """``read()`` over what was spooled, then the rest of the source."""

    def __init__(self, spooled: IO[bytes], rest: Any) -> None:
        self.spooled, self.rest = spooled, rest

    def read(self, size: int = -1) -> bytes:
        data = self.spooled.read(size)
        if data or size == 0:
            return data
        return self.rest.read(size) if size and size > 0 else self.rest.read()


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self.get_response(request)
        except BaseException:
            claim = getattr(request, "idempotency_claim", None)
            if claim is not None:
                services.key_release(claim=claim)
            raise
        claim = getattr(request, "idempotency_claim", None)
        if claim is None:
            return response
        try:
            if services.storable(response):
                services.key_store(claim=claim, response=response)
            else:
                services.key_release(claim=claim)
        except DatabaseError:
            # The answer stands; the claim stays until IDEMPOTENCY_LOCK_SECONDS
            # (a retry meanwhile gets 409), then a retry runs again.
            log.warning("Could not keep the answer to an Idempotency-Key of %s", request.path_info, exc_info=True)
        return response

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        raw = request.META.get(HEADER)
        if raw is None or request.method != "POST" or not request.path_info.startswith(PREFIX):
            return None
        meter = getattr(request, "meter", None)
        if meter is None:
            return None  # not metered, hence not an account's call
        try:
            key = parse_key(raw)
            digest = self._spool_body(request, self._cap(meter))
            if digest is None:
                return None  # larger than the view accepts: it answers 413, nothing to keep
            outcome = services.key_claim(
                account_id=meter.record.account_id,
                key=key,
                fingerprint=services.fingerprint(
                    method=request.method,
                    path=request.path_info,
                    query=request.META.get("QUERY_STRING", ""),
                    content_type=request.META.get("CONTENT_TYPE", ""),
                    body_digest=digest,
                ),
                method=request.method,
                path=request.path_info,
            )
        except ApiError as error:
            return error.response()
        except (OperationalError, InterfaceError) as exc:
            # Here, before the view, ApiErrorMiddleware does not see it.
            return database_unavailable(exc).response()
        if isinstance(outcome, services.Claim):
            request.idempotency_claim = outcome  # type: ignore[attr-defined]
            return None
        return services.replay(outcome)

    @staticmethod
    def _cap(meter: Any) -> int:
        return max(int(meter.record.max_upload_bytes) + MULTIPART_SLACK, int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0))

    @staticmethod
    def _spool_body(request: HttpRequest, cap: int) -> bytes | None:
        """Read the body into a spooled file that the view then reads
        instead, and return its SHA-256; None (the stream left readable) when
        the body is larger than ``cap``."""
        declared = request.META.get("CONTENT_LENGTH")
        if declared:
            try:
                if int(declared) > cap:
                    return None
            except ValueError:
                return None  # the view says what is wrong with it
            source: Any = request._stream  # type: ignore[attr-defined]
        elif request.META.get("wsgi.input_terminated"):
            source = request.META["wsgi.input"]  # chunked
        else:
            return hashlib.sha256(b"").digest()
        spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        digest, total = hashlib.sha256(), 0
        while True:
            try:
                chunk = source.read(CHUNK)
            except (ParseException, OSError, ValueError) as exc:
                raise ApiError(
                    f"The request body is malformed: {type(exc).__name__}"[:300], code="invalid_request"
                ) from None
            if not chunk:
                break
            spooled.write(chunk)
            digest.update(chunk)
            total += len(chunk)
            if total > cap:
                spooled.seek(0)
                _replace_stream(request, declared, _Chained(spooled, source))
                return None
        spooled.seek(0)
        _replace_stream(request, declared, spooled)
        request._idempotency_spool = spooled  # type: ignore[attr-defined]  # closed with the request
        return digest.digest()


def _replace_stream(request: HttpRequest, declared: str | None, stream: Any) -> None:
    if declared:
        request._stream = stream  # type: ignore[attr-defined]
    else:
        request.META["wsgi.input"] = stream
