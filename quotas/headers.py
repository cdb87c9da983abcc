"""Rate-limit response headers.

- ``RateLimit-Policy`` and ``RateLimit``, IETF httpapi draft -10 syntax
  (RFC 9651 structured-field lists)::

      RateLimit-Policy: "per-minute";q=100;w=60, "daily-quota";q=10000;w=86400
      RateLimit: "per-minute";r=42;t=18, "daily-quota";r=9000;t=43200

- GitHub-style ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (epoch
  seconds) for the most restrictive policy.

``t`` (and the reset) is when the policy is whole again: the end of the UTC
window for a quota, the moment the GCRA bucket is full for a rate limit. On a
429, ``Retry-After`` says when the same request will pass.

The headers are built straight from the charge's reply, once per decision
(a leased decision answers many requests with the same headers), with the
text that depends only on the plan kept on the subject.
"""

from __future__ import annotations

from quotas.contract import Subject
from quotas.decision import Decision
from quotas.policy import Window


def decision_headers(decision: Decision) -> dict[str, str]:
    """The headers describing ``decision``; empty for a plan without limits."""
    headers = decision.headers
    if headers is None:
        headers = decision.headers = _build(decision)
    return headers


def _build(decision: Decision) -> dict[str, str]:
    subject, reply, now = decision.subject, decision.reply, decision.at_ms
    policy, parts, limits = _texts(subject, decision.windows)
    if not parts:
        return {}
    remaining = list(reply.remaining)
    resets = list(reply.reset_ms)
    for quota, window, used in zip(subject.quotas, decision.windows, reply.used, strict=True):
        remaining.append(max(quota.count - used, 0))
        resets.append(window.end_ms - now)
    if reply.violated:
        tightest = reply.violated - 1
    else:
        tightest = min(range(len(parts)), key=lambda i: (remaining[i], -resets[i]))
    headers = {
        "RateLimit-Policy": policy,
        "RateLimit": ", ".join(
            [f"{part}{left};t={-(-reset // 1000)}" for part, left, reset in zip(parts, remaining, resets, strict=True)]
        ),
        "X-RateLimit-Limit": limits[tightest],
        "X-RateLimit-Remaining": str(remaining[tightest]),
        "X-RateLimit-Reset": str(-(-(now + resets[tightest]) // 1000)),
    }
    if not reply.admitted:
        headers["Retry-After"] = str(decision.retry_after)
    return headers


def _texts(subject: Subject, windows: tuple[Window, ...]) -> tuple[str, list[str], list[str]]:
    """``RateLimit-Policy``, the start of each ``RateLimit`` item and each
    limit as text: fixed for a subject and its quota windows."""
    cached = subject.memo.get("headers")
    if cached is not None and cached[0] == windows:
        return cached[1]
    names = [(rate.name, rate.count, rate.period) for rate in subject.rates]
    names += [(quota.name, quota.count, window.seconds) for quota, window in zip(subject.quotas, windows, strict=True)]
    texts = (
        ", ".join(f'"{name}";q={limit};w={seconds}' for name, limit, seconds in names),
        [f'"{name}";r=' for name, _, _ in names],
        [str(limit) for _, limit, _ in names],
    )
    subject.memo["headers"] = (windows, texts)
    return texts
