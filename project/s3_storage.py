"""The S3 storage backend the service uses when a bucket is configured.

``STORAGES["default"]`` is the local filesystem unless ``AWS_STORAGE_BUCKET_NAME``
is set (``project.settings``); then it is :class:`StreamingS3Storage`, which
is django-storages' ``S3Storage`` (boto3, any S3-compatible endpoint) with two
changes that a batch service needs:

- **Bounded waits.** botocore waits up to a minute per attempt and retries
  five times by default; here every call gives up after ``connect_timeout``
  / ``read_timeout`` seconds of silence, with at most ``max_attempts``
  attempts, so a hung bucket costs a request seconds, not minutes.
- **Streamed reads.** ``open(name, "rb")`` returns the object's body as a
  forward-only stream (one GET, read as it is consumed) instead of
  django-storages' ``S3File``, which downloads the whole object into memory
  first. The worker reads uploads and the API serves reports this way.

Writes stream too: ``save()`` hands the file to boto3's transfer manager,
which sends anything over ``multipart_threshold`` as a multipart upload of
``multipart_chunksize`` parts, one part in memory at a time (no threads), so a
save holds about one part whatever the file's size.
"""

from __future__ import annotations

from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from django.core.files import File
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

# Parts of a multipart upload. S3's minimum is 5 MiB; 8 MiB parts allow
# uploads up to 80 GB (10,000 parts) while one part is all a save holds.
PART_BYTES = 8 * 1024 * 1024

_OWN_OPTIONS = {"connect_timeout": 2.0, "read_timeout": 5.0, "max_attempts": 2}


class StreamingS3Storage(S3Storage):
    """django-storages' S3 backend with bounded waits and streamed reads.

    Options (``STORAGES["default"]["OPTIONS"]``): every option of
    ``S3Storage`` (``bucket_name``, ``endpoint_url``, ``region_name``,
    ``access_key``, ``secret_key``, ``location``, ``addressing_style``...),
    plus ``connect_timeout`` and ``read_timeout`` in seconds and
    ``max_attempts`` (botocore's standard retry mode; 1 = no retry).
    """

    connect_timeout: float
    read_timeout: float
    max_attempts: int

    def get_default_settings(self) -> dict[str, Any]:
        return {**super().get_default_settings(), **_OWN_OPTIONS}

    def __init__(self, **settings: Any) -> None:
        defaults = {**super().get_default_settings(), **_OWN_OPTIONS, **settings}
        if defaults.get("client_config") is None:
            settings["client_config"] = Config(
                connect_timeout=float(defaults["connect_timeout"]),
                read_timeout=float(defaults["read_timeout"]),
                retries={"max_attempts": int(defaults["max_attempts"]), "mode": "standard"},
                s3={"addressing_style": defaults.get("addressing_style")},
                signature_version=defaults.get("signature_version"),
                proxies=defaults.get("proxies"),
            )
        if defaults.get("transfer_config") is None:
            settings["transfer_config"] = TransferConfig(
                multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, use_threads=False
            )
        super().__init__(**settings)

    def _open(self, name: str, mode: str = "rb") -> File:
        if mode not in ("r", "rb"):
            return super()._open(name, mode)  # type: ignore[no-any-return]
        key = self._normalize_name(clean_name(name))
        try:
            response = self.bucket.Object(key).get()
        except ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise FileNotFoundError(f"File does not exist: {name}") from None
            raise
        stream = File(response["Body"], name=name)
        stream.size = response.get("ContentLength")
        return stream
