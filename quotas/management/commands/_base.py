"""Shared behaviour of the quotas management commands: a refused argument is
a clear message and exit status 2 (like argparse's own errors), with nothing
changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

T = TypeVar("T")

EXIT_BAD_ARGUMENTS = 2


def run_service(action: Callable[[], T]) -> T:
    """Run ``action`` in a transaction; a ValidationError becomes a
    CommandError with exit status 2 and rolls everything back."""
    try:
        with transaction.atomic():
            return action()
    except ValidationError as error:
        raise CommandError("; ".join(error.messages), returncode=EXIT_BAD_ARGUMENTS) from None
