"""The errors the quotas app answers with. Codes are part of the API."""

from __future__ import annotations

from collections.abc import Mapping

from project.errors import ApiError

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


class LimiterUnavailable(ApiError):
    """503 under RATELIMIT_FAIL_MODE=closed while Redis does not answer."""

    status, code = 503, "rate_limiter_unavailable"
    message = "Rate limiting is temporarily unavailable; retry shortly."

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(headers={"Retry-After": str(retry_after)})
