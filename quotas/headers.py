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
"""

from __future__ import annotations

from quotas.limiter import Decision


def policy_header(decision: Decision) -> str:
    return ", ".join(f'"{s.name}";q={s.limit};w={s.window}' for s in decision.states)


def decision_headers(decision: Decision) -> dict[str, str]:
    """The headers describing ``decision``; empty for a plan without limits."""
    tightest = decision.most_restrictive
    if tightest is None:
        return {}
    headers = {
        "RateLimit-Policy": policy_header(decision),
        "RateLimit": ", ".join(f'"{s.name}";r={s.remaining};t={s.reset}' for s in decision.states),
        "X-RateLimit-Limit": str(tightest.limit),
        "X-RateLimit-Remaining": str(tightest.remaining),
        "X-RateLimit-Reset": str(decision.reset_at(tightest)),
    }
    if not decision.allowed:
        headers["Retry-After"] = str(decision.retry_after)
    return headers
