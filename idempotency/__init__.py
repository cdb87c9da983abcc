"""Idempotency-Key for every POST under ``/api/v1/`` (``idempotency.middleware``)."""
