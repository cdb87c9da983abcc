"""The errors the quotas app answers with. Codes are part of the API."""

from __future__ import annotations

from collections.abc import Mapping

from project.errors import ApiError
from quotas.decision import Decision, LimitState
from quotas.headers import decision_headers

MISSING_KEY_MESSAGE = "Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
# One message for malformed, unknown, revoked, expired keys and inactive
# accounts: a caller learns nothing about which.
INVALID_KEY_MESSAGE = "The API key is invalid, revoked or expired."


class MissingApiKey(ApiError):
    status, code, message = 401, "missing_api_key", MISSING_KEY_MESSAGE

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Bearer realm="tollgate"'})


class InvalidApiKey(ApiError):
    status, code, message = 401, "invalid_api_key", INVALID_KEY_MESSAGE

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Bearer realm="tollgate", error="invalid_token"'})


class LimitExceeded(ApiError):
    """429: a rate limit (``rate_limited``) or a quota (``quota_exceeded``)
    would be exceeded; nothing was consumed."""

    status = 429

    def __init__(self, *, code: str, message: str, details: dict[str, object], headers: Mapping[str, str]) -> None:
        super().__init__(message, code=code, details=details, headers=headers)

    @classmethod
    def of(cls, decision: Decision, state: LimitState, retry_after: int) -> LimitExceeded:
        """The 429 for ``state`` of ``decision``: ``rate_limited`` or
        ``quota_exceeded``, with the policy, ``Retry-After`` and the limit
        headers."""
        if state.kind == "rate":
            code = "rate_limited"
            message = f"Rate limit {state.name} exceeded ({state.limit} requests per {state.window} s)."
        else:
            code = "quota_exceeded"
            window = "UTC day" if state.name == "daily-quota" else "UTC month"
            message = f"Quota {state.name} exceeded ({state.limit} units per {window})."
        return cls(
            code=code,
            message=f"{message} Retry after {retry_after} s.",
            details={"policy": state.name, "limit": state.limit, "window": state.window, "retry_after": retry_after},
            headers={**decision_headers(decision), "Retry-After": str(retry_after)},
        )


class LimiterUnavailable(ApiError):
    """503 under RATELIMIT_FAIL_MODE=closed while Redis does not answer."""

    status, code = 503, "rate_limiter_unavailable"
    message = "Rate limiting is temporarily unavailable; retry shortly."

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})


class InvalidUsageQuery(ApiError):
    """400: a parameter of ``/usage/history`` is malformed or out of range;
    ``details.parameter`` names it."""

    status, code, message = 400, "invalid_usage_query", "The usage query is invalid."

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message, details={"parameter": parameter})


class UnknownKey(ApiError):
    """404: no key of the caller's account has this prefix."""

    status, code, message = 404, "unknown_key", "No API key of this account has that prefix."
