"""The errors the validation app answers with. Codes are part of the API."""

from __future__ import annotations

from typing import Any

from project.errors import ApiError, NotFound, ServiceUnavailable


class InvalidRequest(ApiError):
    status, code, message = 400, "invalid_request", "The request is invalid."


class InvalidSchema(ApiError):
    """400 with the meta-schema's (or the refused reference's) errors in
    ``details.errors``."""

    status, code, message = 400, "invalid_schema", "The schema is invalid."

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message, details={"errors": errors})


class SchemaExists(ApiError):
    status, code, message = (
        409,
        "schema_exists",
        "This name and version are registered already; versions are immutable.",
    )


class SchemaIdTaken(ApiError):
    """409: another name of the account defines this ``$id`` (its versions may
    define it again, other names not)."""

    status, code = 409, "schema_id_taken"

    def __init__(self, uri: str, owner: str) -> None:
        super().__init__(
            f"The $id {uri[:200]} is defined by the account's schema {owner!r}; only its versions may define it.",
            details={"uri": uri, "name": owner},
        )


class SchemaNotFound(NotFound):
    code, message = "schema_not_found", "No such schema."


class JobNotFound(NotFound):
    code, message = "job_not_found", "No such job."


class JobFinished(ApiError):
    status, code, message = 409, "job_finished", "The job has finished and cannot be cancelled."


class ReportUnavailable(ApiError):
    status, code, message = 409, "report_unavailable", "The job has no error report (yet)."


class TooManyInstances(ApiError):
    status, code = 400, "too_many_instances"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "The upload is larger than the plan allows."


class UnsupportedFormat(ApiError):
    status, code = 415, "unsupported_media_type"
    message = (
        "Send application/x-ndjson, application/json (an array) or text/csv, raw or as the "
        "'file' part of multipart/form-data."
    )


class InvalidUpload(ApiError):
    status, code, message = 400, "invalid_upload", "The upload cannot be read in its format."


class StorageUnavailable(ServiceUnavailable):
    """503: object storage refused or did not answer; nothing was kept."""

    code = "storage_unavailable"
    message = "Storage for uploads did not answer; nothing was stored or charged. Retry shortly."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, retry_after=5)


class ReportExpired(ApiError):
    status, code, message = 410, "report_expired", "The job's files were deleted after the retention period."


class SchemaTooComplex(ApiError):
    """400: the schema's evaluation can expand without bound; ``details.reason`` says where."""

    status, code, message = 400, "schema_too_complex", "The schema is too costly to evaluate."

    def __init__(self, reason: str) -> None:
        super().__init__(f"The schema is too costly to evaluate: {reason}", details={"reason": reason})


class TooDeep(ApiError):
    status, code, message = 400, "too_deep", "The request nests deeper than allowed."


class ValidationTimeout(ApiError):
    status, code = 422, "validation_timeout"
    message = "Validation took longer than this request's time budget; it was stopped."


class ValidationCrashed(ApiError):
    status, code = 422, "validation_crashed"
    message = "The validator stopped while validating this request; nothing was validated."
