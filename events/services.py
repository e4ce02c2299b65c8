"""Telling the shop what happened to its carts: the outbox and its delivery.

    event_cart_paid(cart=cart, payment=payment)   # inside the transaction that paid it
    event_deliver(event_id=event.pk)              # the `deliver_event` task calls this
    event_redeliver(event=event)                  # the admin's "redeliver now"

Recording writes an `Event` row in the caller's transaction, so the state change and its
event commit together, and queues the delivery task once that transaction commits. A
crash between the commit and the queueing, or a worker that dies while delivering, only
delays the event: `events_requeue_due` (the worker runs it at start and every
EVENTS_SWEEP_SECONDS) queues every pending event whose time has passed.

Delivering claims the event with one conditional UPDATE (its `next_attempt_at` moves
forward by a lease; an event waits while an earlier one of its cart is still to deliver,
so a shop hears a cart's changes in their order: never `cart.refunded` before the
`cart.paid` it follows), POSTs the body signed as Standard Webhooks (`webhook-id` is the
event's id on every try), logs the try as an `EventDelivery`, and on anything but a 2xx
schedules the next try with exponential backoff, until EVENTS_RETRY_FOR_SECONDS after
the event; then the event is `failed`.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import requests
import simplejson
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, Q
from django.utils import timezone
from standardwebhooks import Webhook

from common import money
from common.compiled import CompiledQuery
from common.http import Deadline, WatchedAdapter
from events.models import Event, EventDelivery, EventStatus, EventType
from observability.context import HEADER as REQUEST_ID_HEADER
from observability.context import current_request_id, request_id_bound

logger = logging.getLogger(__name__)

USER_AGENT = "shop-events/1.0"
SWEEP_BATCH = 500
_ERROR_LENGTH = 300


# -- recording -----------------------------------------------------------------------------


def event_cart_paid(*, cart, payment) -> Event:
    """`cart.paid`: the cart and the attempt that paid it."""
    data = {"cart": _cart_data(cart), "payment": _payment_data(payment)}
    return event_record(type=EventType.CART_PAID, cart=cart, data=data)


def event_cart_payment_failed(*, cart, payment) -> Event:
    """`cart.payment_failed`: an attempt declined (`failed`) or proven not charged
    (`error`); the cart can be paid again."""
    data = {"cart": _cart_data(cart), "payment": _payment_data(payment)}
    return event_record(type=EventType.CART_PAYMENT_FAILED, cart=cart, data=data)


def event_cart_refunded(*, cart, refund) -> Event:
    """`cart.refunded`: a refund the shop asked for was made."""
    data = {"cart": _cart_data(cart), "refund": _refund_data(refund)}
    return event_record(type=EventType.CART_REFUNDED, cart=cart, data=data)


# The cart's last numbered event (the unique index on cart and number, read backwards).
LAST_OF_CART = CompiledQuery(
    lambda cart_id: (
        Event.objects.filter(cart_id=cart_id, sequence__isnull=False)
        .order_by("-sequence")
        .only("id", "sequence")[:1]
    ),
    cart_id=uuid.UUID,
)


def event_record(*, type: str, cart, data: dict) -> Event:
    """Write the event in the current transaction; its delivery is queued on commit.

    The caller holds the cart's row lock (every change of a cart takes it), so the
    event's number, one more than the cart's last, is the order of the changes; the
    unique index on (cart, number) refuses a second event with the same one."""
    now = timezone.now()
    last = LAST_OF_CART.run(cart_id=cart.pk)
    sequence = last[0].sequence + 1 if last else 1
    event = Event(type=type, cart=cart, created=now, sequence=sequence)
    envelope = {
        "id": str(event.id),
        "type": type,
        "created": _iso(now),
        "sequence": sequence,
        "data": data,
    }
    event.body = simplejson.dumps(envelope, use_decimal=True, separators=(",", ":"))
    if settings.SHOP_WEBHOOK_URL:
        event.next_attempt_at = now
    else:
        event.status = EventStatus.NOT_SENT
    event.save()
    if event.status == EventStatus.PENDING:
        transaction.on_commit(lambda: _queue_delivery(event.pk))
    return event


def _cart_data(cart) -> dict:
    currency = cart.currency
    amount = money.quantizer(currency)  # the currency's minor unit found once
    return {
        "id": str(cart.pk),
        "currency": currency,
        "subtotal": amount(cart.subtotal),
        "amount_discounted": amount(cart.amount_discounted),
        "total": amount(cart.total),
        "amount_refunded": amount(cart.amount_refunded),
        "payment_status": cart.payment_status,
    }


def _payment_data(payment) -> dict:
    return {
        "id": str(payment.pk),
        "status": payment.status,
        "amount": money.quantize(payment.amount, payment.currency),
        "currency": payment.currency,
        "payment_method": payment.payment_method,
        "provider_payment_id": payment.provider_payment_id,
        "decline_code": payment.decline_code,
        "error_code": payment.error_code,
        "completed": _iso(payment.completed) if payment.completed else None,
    }


def _refund_data(refund) -> dict:
    return {
        "id": str(refund.pk),
        "payment_id": str(refund.payment_id),
        "status": refund.status,
        "amount": money.quantize(refund.amount, refund.currency),
        "currency": refund.currency,
        "reason": refund.reason,
        "provider_refund_id": refund.provider_refund_id,
        "completed": _iso(refund.completed) if refund.completed else None,
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _queue_delivery(event_id, run_after: datetime | None = None) -> None:
    """Queue the delivery task. If that fails the event is still in the outbox, and the
    worker's sweep queues it."""
    from events.tasks import deliver_event

    try:
        deliver_event.using(run_after=run_after).enqueue(str(event_id))
    except Exception:
        logger.exception("Event %s: could not queue its delivery; the sweep will", event_id)


# -- delivering ----------------------------------------------------------------------------


# A cart's events in the order they are delivered: by their numbers, the order of the
# changes whatever the recording replicas' clocks said. Events without one (recorded by
# the release before numbering, during its rollout) go first, by their time: one total
# order, so no two events can each wait for the other.
DELIVERY_ORDER = (F("sequence").asc(nulls_first=True), "created", "id")


def _earlier_to_deliver(event: Event):
    """The events of the event's cart before it in DELIVERY_ORDER, still to deliver."""
    if event.sequence is None:
        before = Q(sequence__isnull=True) & (
            Q(created__lt=event.created) | Q(created=event.created, id__lt=event.pk)
        )
    else:
        before = Q(sequence__isnull=True) | Q(sequence__lt=event.sequence)
    return Event.objects.filter(before, cart_id=event.cart_id, status=EventStatus.PENDING)


def event_deliver(*, event_id) -> EventDelivery | None:
    """Try to deliver the event once, if it is pending and due, and no earlier event of
    its cart is still to deliver (else None: delivered already, another worker has it,
    not yet due, or waiting behind its cart's earlier event)."""
    now = timezone.now()
    event = Event.objects.filter(pk=event_id).only("cart_id", "created", "sequence").first()
    if event is None:
        return None
    lease_until = now + timedelta(seconds=settings.EVENTS_DELIVERY_LEASE_SECONDS)
    claimed = (
        Event.objects.filter(pk=event_id, status=EventStatus.PENDING, next_attempt_at__lte=now)
        .exclude(Exists(_earlier_to_deliver(event)))
        .update(next_attempt_at=lease_until, attempts=F("attempts") + 1)
    )
    if not claimed:
        _wait_behind_earlier(event_id, now)
        return None
    event = Event.objects.get(pk=event_id)
    # The delivery's log lines carry the id of the request that made the event.
    with request_id_bound(event.request_id or current_request_id()):
        return _deliver_claimed(event, lease_until)


def _deliver_claimed(event: Event, lease_until: datetime) -> EventDelivery:
    url = settings.SHOP_WEBHOOK_URL
    status_code, error, latency_ms = _post(event, url)
    succeeded = status_code is not None and 200 <= status_code < 300
    finished = timezone.now()
    next_retry = None if succeeded else _next_retry(event, finished)
    with transaction.atomic():
        delivery = EventDelivery.objects.create(
            event=event,
            attempt=event.attempts,
            url=url[:500],
            status_code=status_code,
            error=error[:_ERROR_LENGTH],
            latency_ms=latency_ms,
            next_retry_at=next_retry,
        )
        still_ours = Event.objects.filter(pk=event.pk, next_attempt_at=lease_until)
        if succeeded:
            if still_ours.update(
                status=EventStatus.DELIVERED, delivered_at=finished, next_attempt_at=None
            ):
                _send_on_next_of_cart(event, finished)
        elif next_retry is None:
            logger.error(
                "Event %s: not delivered after %s tries, giving up", event.pk, event.attempts
            )
            if still_ours.update(status=EventStatus.FAILED, next_attempt_at=None):
                _send_on_next_of_cart(event, finished)
        elif still_ours.update(next_attempt_at=next_retry):
            transaction.on_commit(lambda: _queue_delivery(event.pk, next_retry))
    if not succeeded:
        logger.warning(
            "Event %s: try %s answered %s; next try %s",
            event.pk,
            event.attempts,
            status_code or error,
            next_retry,
        )
    return delivery


def _wait_behind_earlier(event_id, now: datetime) -> None:
    """A due event that an earlier one of its cart holds back is due when that one is:
    the sweep leaves it until then, and that one's delivery sends it on."""
    event = Event.objects.filter(
        pk=event_id, status=EventStatus.PENDING, next_attempt_at__lte=now
    ).first()
    if event is None:
        return
    ahead = _earlier_to_deliver(event).order_by("next_attempt_at").first()
    if ahead is None:  # sent on meanwhile: its own task (or the sweep) delivers it
        return
    Event.objects.filter(
        pk=event.pk, status=EventStatus.PENDING, next_attempt_at=event.next_attempt_at
    ).update(next_attempt_at=max(ahead.next_attempt_at or now, now))
    logger.info("Event %s: waits for the earlier event %s of its cart", event.pk, ahead.pk)


def _send_on_next_of_cart(event: Event, now: datetime) -> None:
    """The cart's next event to deliver, held back by this one, is due now."""
    following = (
        Event.objects.filter(cart_id=event.cart_id, status=EventStatus.PENDING)
        .exclude(pk=event.pk)
        .order_by(*DELIVERY_ORDER)
        .first()
    )
    if following is None:
        return
    Event.objects.filter(
        pk=following.pk, status=EventStatus.PENDING, next_attempt_at__gt=now
    ).update(next_attempt_at=now)
    transaction.on_commit(lambda: _queue_delivery(following.pk))


def _post(event: Event, url: str) -> tuple[int | None, str, int]:
    """POST the signed body; (status code or None, error, latency in ms)."""
    headers = signed_headers(
        secret=settings.SHOP_WEBHOOK_SECRET, msg_id=str(event.id), body=event.body
    )
    headers["Content-Type"] = "application/json"
    headers["User-Agent"] = USER_AGENT
    if event.request_id:
        headers[REQUEST_ID_HEADER] = event.request_id
    connect = min(3.0, settings.EVENTS_DELIVERY_TIMEOUT)
    started = time.monotonic()
    # The whole exchange ends by connect + read timeout (common.http), so a shop answering
    # a byte at a time cannot hold the worker past the delivery's lease; only the status
    # counts, so the body is never read.
    with (
        requests.Session() as session,
        Deadline(connect + settings.EVENTS_DELIVERY_TIMEOUT) as deadline,
    ):
        session.mount("http://", WatchedAdapter())
        session.mount("https://", WatchedAdapter())
        try:
            response = session.post(
                url,
                data=event.body.encode(),
                headers=headers,
                timeout=(connect, settings.EVENTS_DELIVERY_TIMEOUT),
                allow_redirects=False,
                stream=True,
            )
            response.close()
            status_code, error = response.status_code, ""
        except requests.RequestException as exc:
            status_code, error = None, f"{type(exc).__name__}: {exc}"
            if deadline.passed:
                error = f"Timeout: no answer within {deadline.seconds:g} s"
    latency_ms = round((time.monotonic() - started) * 1000)
    return status_code, error, latency_ms


def signed_headers(*, secret: str, msg_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for `body`: webhook-id, -timestamp, -signature."""
    now = timezone.now()
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def retry_delay(attempt: int) -> float:
    """Seconds before the try after try number `attempt`: doubling from
    EVENTS_RETRY_FIRST_SECONDS, capped, with up to a tenth less so that events failed
    together do not all come back at once."""
    base = settings.EVENTS_RETRY_FIRST_SECONDS * 2 ** min(attempt - 1, 40)
    delay = min(base, settings.EVENTS_RETRY_MAX_INTERVAL_SECONDS)
    return delay * (1 - random.random() / 10)


def _next_retry(event: Event, now: datetime) -> datetime | None:
    """When to try again, or None once EVENTS_RETRY_FOR_SECONDS since the event is over."""
    next_at = now + timedelta(seconds=retry_delay(event.attempts))
    give_up_at = event.created + timedelta(seconds=settings.EVENTS_RETRY_FOR_SECONDS)
    return next_at if next_at <= give_up_at else None


# -- redelivering and sweeping ---------------------------------------------------------------


def event_redeliver(*, event: Event) -> Event:
    """Deliver the event again now, whatever its status (the shop asked for it again, or
    its endpoint is back): the same body and `webhook-id`. Nothing changes while no
    SHOP_WEBHOOK_URL is configured."""
    if settings.SHOP_WEBHOOK_URL:
        Event.objects.filter(pk=event.pk).update(
            status=EventStatus.PENDING, next_attempt_at=timezone.now()
        )
        transaction.on_commit(lambda: _queue_delivery(event.pk))
    event.refresh_from_db()
    return event


def events_requeue_due() -> int:
    """Queue the delivery of every pending event due for longer than the lease: its task
    was lost (a crash before it was queued, a worker that died while delivering).
    Returns how many were queued; an event queued twice is delivered once (the claim)."""
    overdue_since = timezone.now() - timedelta(seconds=settings.EVENTS_DELIVERY_LEASE_SECONDS)
    due = list(
        Event.objects.filter(status=EventStatus.PENDING, next_attempt_at__lte=overdue_since)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for event_id in due:
        _queue_delivery(event_id)
    if due:
        logger.warning("Events: %s overdue deliveries queued again", len(due))
    return len(due)
