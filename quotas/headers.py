"""Rate-limit response headers.

- ``RateLimit-Policy`` and ``RateLimit``, IETF httpapi
  draft-ietf-httpapi-ratelimit-headers (checked against -10 to -12; RFC 9651
  structured-field lists, each policy a quoted String with Integer
  parameters)::

      RateLimit-Policy: "per-minute";q=100;w=60, "daily-quota";q=10000;w=86400;tollgate-unit="records"
      RateLimit: "per-minute";r=42;t=18, "daily-quota";r=9000;t=43200

  A rate limit counts requests (the draft's default quota unit, so no
  ``qu``); a quota counts validated instances and job records, which no
  registered ``qu`` value names, so it says so in a vendor-prefixed
  parameter, as the draft asks of service-specific ones. No ``pk``: the
  partition (the key for rate limits, its account for quotas) is the caller.

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

from django.http import HttpResponse
from django.http.response import ResponseHeaders

from quotas.contract import Subject
from quotas.decision import Decision
from quotas.policy import Window

# The unit of a quota policy (one per instance validated or job record).
QUOTA_UNIT = ';tollgate-unit="records"'


def decision_headers(decision: Decision) -> dict[str, str]:
    """The headers describing ``decision``; empty for a plan without limits."""
    headers = decision.headers
    if headers is None:
        headers = decision.headers = {name: value for name, value in _entries(decision).values()}
    return headers


def add_headers(response: HttpResponse, decision: Decision) -> None:
    """Give ``response`` the headers of ``decision``, unless it has its own
    (a 429 raised in the view carries them already)."""
    headers = response.headers
    if type(headers) is ResponseHeaders:
        # Straight into the mapping Django keeps (lowercased name -> (name,
        # value)): every name and value here is ASCII text this module wrote,
        # which is all ResponseHeaders.__setitem__ would check, once per
        # header per request. tests/quotas/test_middleware.py reads them back.
        if "ratelimit" not in headers._store:
            headers._store.update(_entries(decision))
    elif "RateLimit" not in response:
        for name, value in _entries(decision).values():
            response[name] = value


def _entries(decision: Decision) -> dict[str, tuple[str, str]]:
    """The headers as ``{lowercased name: (name, value)}``, built once per
    decision straight from its reply."""
    entries = decision.header_entries
    if entries is not None:
        return entries
    reply, windows = decision.reply, decision.windows
    texts = decision.subject.memo.get("headers")
    if texts is None or (texts[0] is not windows and texts[0] != windows):
        texts = _texts(decision.subject, windows)
    _, policy, template, limits = texts
    tightest = reply.tightest - 1
    if tightest < 0:
        entries = decision.header_entries = {}
        return entries
    entries = {
        "ratelimit-policy": ("RateLimit-Policy", policy),
        "ratelimit": ("RateLimit", template % reply.shown),
        "x-ratelimit-limit": ("X-RateLimit-Limit", limits[tightest]),
        "x-ratelimit-remaining": ("X-RateLimit-Remaining", str(reply.shown[2 * tightest])),
        "x-ratelimit-reset": ("X-RateLimit-Reset", str(-(-(decision.at_ms + reply.reset_ms[tightest]) // 1000))),
    }
    if not reply.admitted:
        entries["retry-after"] = ("Retry-After", str(decision.retry_after))
    decision.header_entries = entries
    return entries


def _texts(subject: Subject, windows: tuple[Window, ...]) -> tuple[object, str, str, list[str]]:
    """What depends only on the subject and its quota windows: the
    ``RateLimit-Policy`` value, a template of the ``RateLimit`` value and
    each limit as text."""
    names = [(rate.name, rate.count, rate.period) for rate in subject.rates]
    names += [(quota.name, quota.count, window.seconds) for quota, window in zip(subject.quotas, windows, strict=True)]
    texts = (
        windows,
        ", ".join(
            f'"{name}";q={limit};w={seconds}' + (QUOTA_UNIT if index >= len(subject.rates) else "")
            for index, (name, limit, seconds) in enumerate(names)
        ),
        ", ".join(f'"{name}";r=%d;t=%d' for name, _, _ in names),
        [str(limit) for _, limit, _ in names],
    )
    subject.memo["headers"] = texts
    return texts
