from project.errors import ApiError


class InvalidWebhook(ApiError):
    status, code, message = 400, "invalid_request", "The webhook endpoint is invalid."


class WebhookUrlRefused(ApiError):
    status, code, message = 400, "invalid_webhook_url", "This URL cannot receive webhooks."


class WebhookNotFound(ApiError):
    status, code, message = 404, "webhook_not_found", "No such webhook endpoint for this account."


class WebhookLimitReached(ApiError):
    status, code, message = 409, "webhook_limit_reached", "The account has as many webhook endpoints as it may."
