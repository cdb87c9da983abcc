"""Filters for the operations page: durations and quota bars."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``; None -> ``"-"``. Whole seconds, two units
    at most: an operator reads an order of magnitude, not a stopwatch."""
    if seconds is None:
        return "-"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value][:2]
    return " ".join(shown) or "0 s"


@register.filter
def bar_width(percent: float | None) -> str:
    """A CSS width for a quota bar, capped at 100%."""
    return f"{min(100.0, percent or 0.0):.1f}%"
