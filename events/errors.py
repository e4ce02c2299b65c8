"""Why a provider webhook was refused. Each is answered before anything is stored or
changed, so the provider keeps the event and retries it (a forgery never succeeds)."""

from rest_framework import status

from common.errors import ApplicationError


class WebhooksNotConfiguredError(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "payment_webhooks_not_configured"
    message = "PAYMENT_WEBHOOK_SECRET is not set: provider events cannot be verified yet."


class WebhookHeadersMissingError(ApplicationError):
    code = "webhook_headers_missing"
    message = "webhook-id, webhook-timestamp and webhook-signature headers are required."
    field = "webhook-signature"


class WebhookTimestampError(ApplicationError):
    code = "webhook_timestamp_out_of_tolerance"
    message = "webhook-timestamp is not a Unix time within 5 minutes of now."
    field = "webhook-timestamp"


class WebhookSignatureError(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "webhook_signature_invalid"
    message = "webhook-signature does not match the body with the shared secret."
    field = "webhook-signature"


class WebhookPayloadError(ApplicationError):
    code = "webhook_payload_invalid"
    message = "The event is not one this service understands."
