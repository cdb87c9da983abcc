"""Streaming a job's upload into Django's default storage, counted on the way.

The body is read from the request as a stream, chunk by chunk, and each chunk
goes to the storage backend (``STORAGES["default"]``: the filesystem, or a
bucket as a multipart upload, ``project.s3_storage``) and to the format's
record counter. Nothing holds the whole upload in memory (a bucket's upload
holds one 8 MiB part), and ``request.body`` is never touched.

Size: a ``Content-Length`` over the plan's limit is refused before a byte is
read; a chunked body (no length; gunicorn de-chunks it and says so with
``wsgi.input_terminated``) is counted as it streams and refused as soon as it
passes the limit. Either way the partial file is deleted. A body whose framing
is broken (a chunk size that is not hexadecimal, a body that ends early) is a
400 ``invalid_request``, like a malformed multipart body.

Multipart bodies are read with Django's own streaming multipart ``Parser``
(the one ``request.FILES`` uses), driven part by part so that the ``file``
part streams to storage instead of to Django's upload handlers.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import default_storage
from django.http import HttpRequest
from django.http.multipartparser import (  # type: ignore[attr-defined]
    FIELD,
    FILE,
    ChunkIter,
    LazyStream,
    MultiPartParserError,
    Parser,
    exhaust,
)
from django.utils.http import parse_header_parameters
from gunicorn.http.errors import ParseException

from project.storage import BUCKET_ERRORS, STORAGE_ERRORS, describe, discard
from validation.exceptions import InvalidRequest, PayloadTooLarge, StorageUnavailable, UnsupportedFormat
from validation.formats import Counter, counter_for

log = logging.getLogger("tollgate.validation")

CHUNK_BYTES = 1 << 20
# Multipart framing (boundaries, part headers, the schema field) on top of the file.
MULTIPART_SLACK = 64 * 1024
MAX_FIELD_BYTES = 4096

FORMATS = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/json": "json",
    "text/csv": "csv",
}
EXTENSIONS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json", ".csv": "csv"}
SUFFIX = {"ndjson": "ndjson", "json": "json", "csv": "csv"}


@dataclass(frozen=True, slots=True)
class Upload:
    """A stored upload: its storage name, size in bytes, record count and format."""

    name: str
    size: int
    records: int
    format: str
    schema_field: str | None = None


class _Stream:
    """A read-only, forward-only file over an iterator of chunks, which is
    all ``Storage.save`` needs (the filesystem calls ``chunks()``; a bucket
    ``read()``s one part at a time)."""

    closed = False

    def __init__(self, chunks: Iterator[bytes], name: str) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.name = name

    def readable(self) -> bool:
        return True

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        if self._buffer:
            yield self._buffer
            self._buffer = b""
        yield from self._chunks

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative), joined once:
        a bucket reads a whole part this way."""
        parts, have = [self._buffer] if self._buffer else [], len(self._buffer)
        self._buffer = b""
        while size < 0 or have < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        del parts
        if 0 <= size < len(data):
            data, self._buffer = data[:size], data[size:]
        return data

    def seekable(self) -> bool:
        return False

    def seek(self, *args: Any) -> int:
        raise io.UnsupportedOperation("a streamed upload cannot seek")

    def close(self) -> None:
        return None


def body_chunks(request: HttpRequest) -> Iterator[bytes]:
    """The request body as a stream of chunks, with or without Content-Length.
    Raises InvalidRequest when the body's framing is broken."""
    if request.META.get("CONTENT_LENGTH"):
        read = request.read
    elif request.META.get("wsgi.input_terminated"):
        read = request.META["wsgi.input"].read  # chunked: Django's stream would read nothing
    else:
        return
    while True:
        try:
            chunk = read(CHUNK_BYTES)
        except (ParseException, OSError, ValueError) as exc:
            # gunicorn de-chunks while we read: a broken chunk surfaces here
            # (OSError: the client went away mid-body).
            raise InvalidRequest(f"The request body is malformed: {type(exc).__name__}: {exc}"[:300]) from None
        if not chunk:
            return
        yield chunk


def _limited(chunks: Iterator[bytes], counter: Counter, max_bytes: int, sizes: list[int]) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(details={"max_upload_bytes": max_bytes})
        counter.feed(chunk)
        yield chunk
    sizes.append(total)


def _store(chunks: Iterator[bytes], *, account_id: int, fmt: str, max_bytes: int) -> Upload:
    counter = counter_for(fmt)
    sizes: list[int] = []
    name = f"uploads/{account_id}/{uuid.uuid4().hex}.{SUFFIX[fmt]}"
    try:
        stored = default_storage.save(name, _Stream(_limited(chunks, counter, max_bytes, sizes), name))  # type: ignore[arg-type]
        records = counter.finish()
    except STORAGE_ERRORS as exc:
        log.warning("Storage refused an upload of account %s (%s)", account_id, describe(exc))
        if not isinstance(exc, BUCKET_ERRORS):
            discard(name)  # a partial file; a bucket that failed keeps nothing (and may not answer)
        raise StorageUnavailable() from exc
    except BaseException:
        discard(name)  # the partial file of a refused upload
        raise
    return Upload(stored, sizes[0] if sizes else 0, records, fmt)


def format_of(content_type: str, *, filename: str = "", explicit: str = "") -> str:
    """The job format from an explicit ``format``, a media type or a file name."""
    if explicit:
        if explicit not in SUFFIX:
            raise UnsupportedFormat(f"Unknown format {explicit!r}: use ndjson, json or csv.")
        return explicit
    media = content_type.split(";")[0].strip().lower()
    if media in FORMATS:
        return FORMATS[media]
    for extension, fmt in EXTENSIONS.items():
        if filename.lower().endswith(extension):
            return fmt
    raise UnsupportedFormat()


def upload_receive(*, request: HttpRequest, account_id: int, max_bytes: int, explicit_format: str = "") -> Upload:
    """Stream the upload of ``request`` (raw or multipart) into storage.

    Raises PayloadTooLarge (413) before reading when Content-Length is over
    ``max_bytes``, or while streaming; UnsupportedFormat (415); InvalidUpload
    (400) for content the worker could not read; StorageUnavailable (503)
    when storage refuses or does not answer. On any error nothing stays in
    storage.
    """
    content_type = request.META.get("CONTENT_TYPE", "")
    multipart = content_type.lower().startswith("multipart/form-data")
    declared = request.META.get("CONTENT_LENGTH")
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidRequest("Content-Length is not a number.") from None
        if length > max_bytes + (MULTIPART_SLACK if multipart else 0):
            raise PayloadTooLarge(details={"max_upload_bytes": max_bytes})
    if multipart:
        return _receive_multipart(request, content_type, account_id, max_bytes, explicit_format)
    fmt = format_of(content_type, explicit=explicit_format)
    return _store(body_chunks(request), account_id=account_id, fmt=fmt, max_bytes=max_bytes)


class _ChunkReader:
    """``read()`` over an iterator of chunks, for Django's ChunkIter; keeps
    the last ``keep`` bytes read, where the closing boundary must be."""

    def __init__(self, chunks: Iterator[bytes], keep: int) -> None:
        self._chunks = chunks
        self._keep = keep
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        chunk = next(self._chunks, b"")
        self.tail = (self.tail + chunk)[-self._keep :]
        return chunk


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _receive_multipart(
    request: HttpRequest, content_type: str, account_id: int, max_bytes: int, explicit_format: str
) -> Upload:
    _, options = parse_header_parameters(content_type)
    boundary = options.get("boundary", "")
    if not boundary:
        raise InvalidRequest("The multipart body has no boundary.")
    closing = b"--" + boundary.encode("ascii", "replace") + b"--"
    reader = _ChunkReader(body_chunks(request), len(closing) + 4)
    stream = LazyStream(ChunkIter(reader, CHUNK_BYTES))  # type: ignore[arg-type]
    upload: Upload | None = None
    schema_field: str | None = None
    try:
        for item_type, meta, part in Parser(stream, boundary.encode("ascii", "replace")):
            disposition = meta.get("content-disposition", ("", {}))[1]
            field = _text(disposition.get("name", "")).strip()
            if item_type == FILE and field == "file":
                if upload is not None:
                    raise InvalidRequest("Send one 'file' part.")
                part_type = _text(meta.get("content-type", ("", {}))[0]).strip()
                filename = _text(disposition.get("filename", ""))
                fmt = format_of(part_type, filename=filename, explicit=explicit_format)
                upload = _store(iter(part), account_id=account_id, fmt=fmt, max_bytes=max_bytes)
            elif item_type == FIELD and field == "schema":
                schema_field = part.read(MAX_FIELD_BYTES).decode("utf-8", "replace").strip()
                exhaust(part)
            else:
                exhaust(part)
        if not reader.tail.rstrip().endswith(closing):
            # Django's parser takes a body cut short for a whole one: the file
            # part would be stored truncated.
            raise MultiPartParserError("it does not end with its closing boundary")
    except MultiPartParserError as exc:
        if upload is not None:
            discard(upload.name)
        raise InvalidRequest(f"The multipart body is malformed: {exc}") from None
    except BaseException:
        if upload is not None:
            discard(upload.name)
        raise
    if upload is None:
        raise InvalidRequest("The multipart body has no 'file' part.")
    return Upload(upload.name, upload.size, upload.records, upload.format, schema_field)
