"""The outbox of events for the shop, the log of every delivery, and the provider's events
received.

    event = Event.objects.get(pk=...)       # cart.paid, with the exact body the shop gets
    event.deliveries.all()                  # each try: status code, latency, next retry
    ProviderEvent.objects.filter(webhook_id="msg_...").exists()   # seen already

An `Event` row is written in the transaction of the state change it reports
(`events.services.event_record`), so a change is never committed without its event, nor
an event without its change. `body` is the JSON sent, fixed when the event is recorded:
every retry sends the same bytes under the same `webhook-id` (the event's id), so a shop
dedupes on it.
"""

from __future__ import annotations

import uuid

import simplejson
from django.db import models

from common.compiled import CompiledSaves
from observability.context import current_request_id


class EventType(models.TextChoices):
    CART_PAID = "cart.paid", "cart.paid: the cart's payment succeeded"
    CART_PAYMENT_FAILED = "cart.payment_failed", "cart.payment_failed: an attempt ended uncharged"
    CART_REFUNDED = "cart.refunded", "cart.refunded: a refund of the cart was made"


class EventStatus(models.TextChoices):
    PENDING = "pending", "Pending: to be delivered (or retried)"
    DELIVERED = "delivered", "Delivered: the shop answered 2xx"
    FAILED = "failed", "Failed: retries ran out, redeliver from the admin"
    NOT_SENT = "not_sent", "Not sent: no SHOP_WEBHOOK_URL was configured"


class Event(CompiledSaves, models.Model):
    """One event for the shop, and where its delivery stands.

    `next_attempt_at` is when the next delivery may start: a delivery claims the event by
    moving it forward by the lease (one conditional UPDATE), so two workers never send
    one event at once, and a delivery whose worker died is started again once the lease
    is over.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=32, choices=EventType)
    # No index of its own: event_one_number_per_cart begins with cart_id.
    cart = models.ForeignKey(
        "cart.Cart", on_delete=models.PROTECT, related_name="events", db_index=False
    )
    body = models.TextField(help_text="The JSON body sent to the shop, the same on every try.")
    status = models.CharField(max_length=16, choices=EventStatus, default=EventStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(db_index=True)
    # The clocks of the replicas recording a cart's events may disagree; the cart's row
    # lock, held by every change that records one, does not: the number is taken under it.
    # (Not a PositiveIntegerField: its CHECK would make PostgreSQL scan the whole table,
    # every write to it stopped, when the column is added.)
    sequence = models.IntegerField(
        null=True,
        editable=False,
        help_text="The event's place among its cart's events: 1, 2, 3, in the order of the "
        "changes (empty only for an event the release before numbering recorded).",
    )
    request_id = models.CharField(
        max_length=64,
        blank=True,
        default=current_request_id,
        db_default="",
        help_text="X-Request-ID of the request that recorded it: its deliveries send and log it.",
    )

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="event_status_next"),
            models.Index(fields=["type", "-created"], name="event_type_created"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["cart", "sequence"], name="event_one_number_per_cart"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"

    @property
    def data(self) -> dict:
        """The body's `data`, amounts as Decimal."""
        return simplejson.loads(self.body, use_decimal=True)["data"]


class EventDelivery(CompiledSaves, models.Model):
    """One try to deliver an event: what the shop answered, how long it took, and when
    the next try is due (None: no retry, it was delivered or retries ran out)."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveIntegerField()
    url = models.CharField(max_length=500)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    latency_ms = models.PositiveIntegerField()
    next_retry_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["event", "attempt"]
        verbose_name_plural = "event deliveries"

    def __str__(self) -> str:
        answer = self.status_code or self.error
        return f"try {self.attempt} of {self.event_id}: {answer}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class ProviderEvent(CompiledSaves, models.Model):
    """An event the payment provider sent us, stored by its `webhook-id` before it is
    acted on: a second delivery of the same id finds it and changes nothing."""

    webhook_id = models.CharField(max_length=200, unique=True)
    type = models.CharField(max_length=64)
    body = models.TextField()
    outcome = models.CharField(max_length=200, blank=True, default="")
    received = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received"]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id}"
