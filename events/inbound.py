"""Receiving the payment provider's events (its webhooks).

    outcome = provider_event_receive(body=request.body, headers=request.headers)

1. Verify the Standard Webhooks signature with PAYMENT_WEBHOOK_SECRET and the 5-minute
   timestamp tolerance (`standardwebhooks`); a forged, stale or unsigned event raises an
   `ApplicationError` (400/401) before anything is stored.
2. Store its `webhook-id` (`ProviderEvent`, unique) and act on it in one transaction: a
   second delivery of the id finds it stored and changes nothing (a replay of a captured
   event inside the tolerance is such a second delivery). If acting fails, nothing is
   stored and the provider retries.
3. Act: `payments.provider_events.payment_settle_from_event`, which only moves attempts
   and refunds forward.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Mapping

import simplejson
from django.conf import settings
from django.db import IntegrityError, transaction
from standardwebhooks import Webhook, WebhookVerificationError

from events.errors import (
    WebhookHeadersMissingError,
    WebhookPayloadError,
    WebhookSignatureError,
    WebhooksNotConfiguredError,
    WebhookTimestampError,
)
from events.models import ProviderEvent
from payments.provider_events import EVENT_TYPES, payment_settle_from_event

logger = logging.getLogger(__name__)

DUPLICATE = "duplicate: already received"


def provider_event_receive(*, body: bytes, headers: Mapping[str, str]) -> str:
    """Verify, store and act on one provider event; returns what it changed."""
    _verify(body, headers)
    msg_id = headers.get("webhook-id") or ""
    longest = ProviderEvent.webhook_id.field.max_length
    if len(msg_id) > longest:  # the id is stored: a longer one would not fit its column
        raise WebhookPayloadError(
            f"webhook-id is longer than {longest} characters.", field="webhook-id"
        )
    try:
        event = simplejson.loads(body, use_decimal=True)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookPayloadError("The event body is not JSON.") from exc
    except RecursionError as exc:  # the parser recurses once per array or object
        raise WebhookPayloadError("The event body is nested too deeply.") from exc
    event_type = event.get("type") if isinstance(event, dict) else None
    data = event.get("data") if isinstance(event, dict) else None
    # A type that is not text (a list, an object) is no type: looking it up would fail.
    known = isinstance(event_type, str) and event_type in EVENT_TYPES
    if not known or not isinstance(data, dict):
        raise WebhookPayloadError(f"Unknown event type {event_type!r}, or no data.")
    if ProviderEvent.objects.filter(webhook_id=msg_id).exists():
        return DUPLICATE
    try:
        with transaction.atomic():
            received = ProviderEvent.objects.create(
                webhook_id=msg_id, type=event_type, body=body.decode()
            )
            try:
                outcome = payment_settle_from_event(event_type=event_type, data=data)
            except ValueError as exc:
                raise WebhookPayloadError(f"The event's data cannot be read: {exc}") from exc
            received.outcome = outcome[:200]
            received.save(update_fields=["outcome"])
    except IntegrityError:
        if ProviderEvent.objects.filter(webhook_id=msg_id).exists():
            return DUPLICATE  # the same id, delivered twice at once: the other one acts
        raise  # not a second delivery: a failure to settle, which the provider sends again
    logger.info("Provider event %s %s: %s", event_type, msg_id, outcome)
    return outcome


def _verify(body: bytes, headers: Mapping[str, str]) -> None:
    if not settings.PAYMENT_WEBHOOK_SECRET:
        raise WebhooksNotConfiguredError()
    lowered = {name.lower(): value for name, value in headers.items()}
    if not all(lowered.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")):
        raise WebhookHeadersMissingError()
    try:
        Webhook(settings.PAYMENT_WEBHOOK_SECRET).verify(body, lowered, json_parse=False)
    except WebhookVerificationError as exc:
        if "timestamp" in str(exc) or "Signature Headers" in str(exc):
            raise WebhookTimestampError() from exc
        raise WebhookSignatureError() from exc
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:  # a malformed signature
        raise WebhookSignatureError() from exc
