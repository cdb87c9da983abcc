"""Shared helpers of the operations page's tests."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User
from django.test import Client
from rq import Queue

from tests.redis_server import RedisServer

PAGE = "/admin/health/operations/"
DATA = "/admin/health/operations/data.json"


def staff(username: str = "sam", *, allowed: bool = True) -> User:
    user = User.objects.create_user(username, password="pw-12345-long", is_staff=True)
    if allowed:
        user.user_permissions.add(Permission.objects.get(codename="view_operations"))
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rq_queue(server: RedisServer) -> Queue:
    """The validation queue on a connection of its own: an rq Worker raises
    its connection's socket timeout, which must not touch the shared pool."""
    return Queue("validation", connection=server.client())
