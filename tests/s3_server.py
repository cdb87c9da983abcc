"""A private S3-compatible server for the suite: moto's standalone server
(real HTTP on a free loopback port, so boto3 and django-storages run
unpatched), which a test may stop, pause (SIGSTOP) and start again.

moto keeps its buckets in memory: a killed server comes back empty, a paused
one keeps everything.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import boto3
import httpx

from tests.redis_server import ServerProcess, free_port, wait_until_up

REGION = "us-east-1"
ACCESS_KEY = "tests-access-key"
SECRET_KEY = "tests-secret-key"


class S3Server(ServerProcess):
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            probe = lambda: httpx.get(f"{self.endpoint}/moto-api/", timeout=1)  # noqa: E731
            wait_until_up(
                probe, self.process, f"moto_server on port {self.port}", errors=(httpx.HTTPError,), timeout=30
            )
        except RuntimeError:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        self.kill()

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def pending_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""
        listing = self.client().list_multipart_uploads(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Uploads", []))

    def env(self, bucket: str, **extra: str) -> dict[str, str]:
        """The service's environment variables for ``bucket`` on this server."""
        return {
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            **extra,
        }

    def storages(self, bucket: str, **options: Any) -> dict[str, Any]:
        """A ``STORAGES`` setting whose default is ``bucket`` on this server,
        as ``project.settings`` builds it from :meth:`env`."""
        from django.conf import settings

        return {
            **settings.STORAGES,
            "default": {
                "BACKEND": "project.s3_storage.StreamingS3Storage",
                "OPTIONS": {
                    "bucket_name": bucket,
                    "endpoint_url": self.endpoint,
                    "region_name": REGION,
                    "access_key": ACCESS_KEY,
                    "secret_key": SECRET_KEY,
                    **options,
                },
            },
        }
