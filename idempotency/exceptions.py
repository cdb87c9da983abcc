from project.errors import ApiError


class InvalidIdempotencyKey(ApiError):
    status, code = 400, "invalid_idempotency_key"
    message = "Idempotency-Key must be 1 to 255 printable ASCII characters."


class IdempotencyKeyReused(ApiError):
    status, code = 422, "idempotency_key_reused"
    message = "This Idempotency-Key was used for a different request; use a new key for a new request."


class IdempotencyInProgress(ApiError):
    status, code = 409, "idempotency_in_progress"
    message = "The first request with this Idempotency-Key is still running; retry shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "1"})
