"""The fake provider's events: every processed charge and refund is pushed to a webhook URL.

    sender = WebhookSender(url="http://127.0.0.1:8000/api/webhooks/payment-provider/",
                           secret="whsec_...")
    sender.publish("payment.succeeded", payment.as_dict())   # queued, sent by a thread

Types: `payment.succeeded`, `payment.failed` (a decline), `refund.succeeded`; `data` is
the payment or refund exactly as the ledger shows it. Each event is signed as Standard
Webhooks specify (`webhook-id`, `webhook-timestamp`, `webhook-signature`, with the
`standardwebhooks` package) and retried with exponential backoff (`retry_first` seconds,
doubling, at most `retry_max` apart) until it is answered 2xx, at most `max_attempts`
times. One thread sends them, in due order.

Faults (queued with `POST /control/faults {"kind": "webhook_drop", "count": 2}`, or drawn
by `{"mode": "random", "rate": 0.3, "seed": 7, "kinds": [...webhook kinds...]}`) apply
to the next events published:

    webhook_duplicate     delivered, then delivered again (same webhook-id)
    webhook_out_of_order  held back until a later event was delivered (or delay_ms, 5000)
    webhook_delay         sent delay_ms (3000) late
    webhook_drop          never sent: the shop must find it in the ledger (reconcile)
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import requests
from standardwebhooks import Webhook

logger = logging.getLogger(__name__)

# The same development secret the service uses when PAYMENT_WEBHOOK_SECRET is not set
# (CoreRoot/settings.py DEV_WEBHOOK_SECRET): `make run` works with no configuration.
DEV_WEBHOOK_SECRET = "whsec_ZGV2ZWxvcG1lbnQtd2ViaG9vay1zZWNyZXQtbm90LWZvci1wcm9k"


class WebhookFaultKind(StrEnum):
    DUPLICATE = "webhook_duplicate"
    OUT_OF_ORDER = "webhook_out_of_order"
    DELAY = "webhook_delay"
    DROP = "webhook_drop"


WEBHOOK_FAULT_KINDS = tuple(kind.value for kind in WebhookFaultKind)
WEBHOOK_DEFAULT_DELAY_MS = {WebhookFaultKind.DELAY: 3000, WebhookFaultKind.OUT_OF_ORDER: 5000}


@dataclass
class WebhookFault:
    kind: WebhookFaultKind
    delay_ms: int
    remaining: int | None = 1

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "count": self.remaining, "delay_ms": self.delay_ms}


@dataclass
class RandomWebhookFaults:
    """Each event published draws: with probability `rate`, one of `kinds` (seeded)."""

    rate: Decimal
    seed: int
    kinds: tuple[WebhookFaultKind, ...]
    draws: int = 0
    hits: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self) -> WebhookFault | None:
        self.draws += 1
        roll = Decimal(repr(self.rng.random()))
        kind = self.rng.choice(self.kinds)
        if roll >= self.rate:
            return None
        self.hits += 1
        return WebhookFault(kind, WEBHOOK_DEFAULT_DELAY_MS.get(kind, 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": "random",
            "rate": str(self.rate),
            "seed": self.seed,
            "kinds": [kind.value for kind in self.kinds],
            "draws": self.draws,
            "hits": self.hits,
        }


@dataclass
class Outgoing:
    """One event on its way: its id, body, tries so far and what a fault asked of it."""

    msg_id: str
    type: str
    body: str
    attempts: int = 0
    fault: str | None = None
    copies: int = 1  # deliveries still owed after a 2xx (2 for a duplicate)
    held_until: float | None = None  # out of order: until a later event was delivered


class WebhookSender:
    """Sends the provider's events from one background thread. `lock` guards the state."""

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        retry_first: float = 1.0,
        retry_max: float = 60.0,
        max_attempts: int = 20,
        timeout: float = 5.0,
    ) -> None:
        self.default_url, self.default_secret = url, secret
        self.url, self.secret = url, secret
        self.retry_first, self.retry_max = retry_first, retry_max
        self.max_attempts, self.timeout = max_attempts, timeout
        self.lock = threading.Condition()
        self.queue: list[tuple[float, int, Outgoing]] = []
        self.held: list[Outgoing] = []
        self.order = itertools.count()
        self.faults: list[WebhookFault] = []
        self.random_faults: RandomWebhookFaults | None = None
        self.log: list[dict[str, Any]] = []
        self.published = 0
        self.thread: threading.Thread | None = None
        self.http = requests.Session()

    # -- configuration -------------------------------------------------------------------

    def configure(self, *, url: str | None = None, secret: str | None = None) -> None:
        with self.lock:
            if url is not None:
                self.url = url
            if secret is not None:
                self.secret = secret

    def reset(self) -> None:
        with self.lock:
            self.url, self.secret = self.default_url, self.default_secret
            self.queue.clear()
            self.held.clear()
            self.faults.clear()
            self.random_faults = None
            self.log.clear()
            self.published = 0

    def add_fault(self, fault: WebhookFault) -> None:
        with self.lock:
            self.faults.append(fault)

    def set_random_faults(self, plan: RandomWebhookFaults | None) -> None:
        with self.lock:
            self.random_faults = plan

    def clear_faults(self, *, queue: bool = True, random_mode: bool = True) -> None:
        with self.lock:
            if queue:
                self.faults.clear()
            if random_mode:
                self.random_faults = None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "url": self.url,
                "published": self.published,
                "pending": len(self.queue) + len(self.held),
                "faults": [fault.as_dict() for fault in self.faults],
                "random_faults": self.random_faults.as_dict() if self.random_faults else None,
                "deliveries": list(self.log),
            }

    # -- publishing ----------------------------------------------------------------------

    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        """Queue an event about `data` (a payment or a refund), unless no URL is set."""
        msg_id = f"msg_{uuid.uuid4().hex}"
        created = datetime.now(UTC).isoformat(timespec="microseconds")
        body = json.dumps({"id": msg_id, "type": event_type, "created": created, "data": data})
        outgoing = Outgoing(msg_id=msg_id, type=event_type, body=body)
        with self.lock:
            if not self.url:
                return
            self.published += 1
            fault = self._next_fault()
            now = time.monotonic()
            due = now
            if fault is not None:
                outgoing.fault = fault.kind.value
                if fault.kind == WebhookFaultKind.DROP:
                    self.log.append({"id": msg_id, "type": event_type, "fault": "webhook_drop"})
                    return
                if fault.kind == WebhookFaultKind.DELAY:
                    due = now + fault.delay_ms / 1000
                elif fault.kind == WebhookFaultKind.DUPLICATE:
                    outgoing.copies = 2
                elif fault.kind == WebhookFaultKind.OUT_OF_ORDER:
                    outgoing.held_until = now + fault.delay_ms / 1000
                    self.held.append(outgoing)
                    self._start()
                    self.lock.notify_all()
                    return
            self._schedule(outgoing, due)
            self._start()

    def _next_fault(self) -> WebhookFault | None:
        if self.faults:
            fault = self.faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.pop(0)
            return WebhookFault(fault.kind, fault.delay_ms)
        if self.random_faults is not None:
            return self.random_faults.draw()
        return None

    def _schedule(self, outgoing: Outgoing, due: float) -> None:
        heapq.heappush(self.queue, (due, next(self.order), outgoing))
        self.lock.notify_all()

    def _start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
            self.thread.start()

    # -- sending -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self.lock:
                outgoing = self._take_due()
                url, secret = self.url, self.secret
            if outgoing is None:
                continue
            status = self._send(outgoing, url, secret)
            self._after(outgoing, status)

    def _take_due(self) -> Outgoing | None:
        """The next event due now, waiting (lock released) until one is."""
        now = time.monotonic()
        for outgoing in list(self.held):
            if outgoing.held_until is not None and outgoing.held_until <= now:
                self.held.remove(outgoing)
                return outgoing
        if self.queue and self.queue[0][0] <= now:
            return heapq.heappop(self.queue)[2]
        waits = [self.queue[0][0] - now] if self.queue else []
        waits += [o.held_until - now for o in self.held if o.held_until is not None]
        self.lock.wait(timeout=min(waits) if waits else None)
        return None

    def _send(self, outgoing: Outgoing, url: str, secret: str) -> int | None:
        now = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": outgoing.msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(outgoing.msg_id, now, outgoing.body),
        }
        try:
            response = self.http.post(
                url, data=outgoing.body.encode(), headers=headers, timeout=self.timeout
            )
            return response.status_code
        except requests.RequestException as exc:
            logger.info("Webhook %s to %s failed: %s", outgoing.msg_id, url, exc)
            return None

    def _after(self, outgoing: Outgoing, status: int | None) -> None:
        with self.lock:
            outgoing.attempts += 1
            self.log.append(
                {
                    "id": outgoing.msg_id,
                    "type": outgoing.type,
                    "attempt": outgoing.attempts,
                    "status": status,
                    "fault": outgoing.fault,
                }
            )
            if status is not None and 200 <= status < 300:
                outgoing.copies -= 1
                if outgoing.copies > 0:  # a duplicate: the same event once more
                    self._schedule(outgoing, time.monotonic())
                for held in self.held:  # a later event is delivered: release what waits
                    held.held_until = time.monotonic()
                if self.held:
                    self.lock.notify_all()
                return
            if outgoing.attempts >= self.max_attempts:
                logger.warning(
                    "Webhook %s: giving up after %s tries", outgoing.msg_id, outgoing.attempts
                )
                return
            backoff = min(self.retry_first * 2 ** (outgoing.attempts - 1), self.retry_max)
            self._schedule(outgoing, time.monotonic() + backoff)
