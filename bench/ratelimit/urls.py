"""The project's URLs plus the peers' endpoints (bench only)."""

from django.urls import path

from bench.ratelimit.peers import PEERS, limited_ping
from project.urls import handler404, handler500, urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]

urlpatterns = [
    *urlpatterns,
    *(
        path(f"bench/{peer}/{name}", limited_ping(admits, name), name=f"bench-{peer}-{name}")
        for peer, admits in PEERS.items()
        for name in ("ping", "burst")
    ),
]
