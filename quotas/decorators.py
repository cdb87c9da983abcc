"""View decorators: how a view is metered, declared on the view and read by the middleware.

    @metered(units=0, requests=0)   # a peek: /usage consumes nothing
    @charged_in_view                # validation: the view charges N records
    @unmetered                      # public documentation under /api/

Views without a declaration cost one request and one quota unit, charged by
the middleware before the view runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

V = TypeVar("V", bound=Callable[..., object])


@dataclass(frozen=True, slots=True)
class Metering:
    requests: int = 1
    units: int = 1
    # The view calls request.meter.charge() itself, once it knows the cost.
    in_view: bool = False
    exempt: bool = False


DEFAULT = Metering()


def _declare(view: V, metering: Metering) -> V:
    view.metering = metering  # type: ignore[attr-defined]
    return view


def metered(*, requests: int = 1, units: int = 1) -> Callable[[V], V]:
    return lambda view: _declare(view, Metering(requests=requests, units=units))


def charged_in_view(view: V) -> V:
    """The view must call ``request.meter.charge(units=N)`` once it knows N;
    if it answers without charging (bad input), the middleware charges one
    request and no units afterwards."""
    return _declare(view, Metering(in_view=True))


def unmetered(view: V) -> V:
    """No key needed, nothing counted (public documents under /api/)."""
    return _declare(view, Metering(exempt=True))
