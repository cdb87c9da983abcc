"""A table-less model that gives the operations page its admin row and its
permission, the way django-rq's ``Dashboard`` does: nothing is stored."""

from __future__ import annotations

from django.db import models


class Operations(models.Model):
    """The admin's operations page (queues, workers, Redis, usage).

    Staff see it with the ``health.view_operations`` permission (superusers
    always); retrying or discarding failed jobs needs a superuser. django-rq's
    dashboard (``/admin/django-rq/``), which can empty, delete, requeue and
    stop, needs ``health.manage_queues`` ("Can manage queues").
    """

    class Meta:
        managed = False  # no table: admin integration only
        default_permissions = ("view",)
        permissions = [("manage_queues", "Can manage queues")]
        verbose_name = "operations"
        verbose_name_plural = "operations"

    def __str__(self) -> str:
        return "operations"
