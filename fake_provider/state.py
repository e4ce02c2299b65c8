"""Everything one fake provider remembers, behind one lock.

    state = ProviderState(card_limit=Decimal("20.00"), balance=Decimal("20.00"), sleep=...)
    reply, replayed = state.charge_once(charge, key)    # charge, or replay what key stored
    reply, replayed = state.refund_once(refund, key)    # refund, or replay what key stored

Cards: `pm_card_default` declines a charge above its per-charge limit (any number below it
succeed, as Stripe's test cards do); `pm_card_prepaid` holds a balance that each charge
debits and each refund of it credits back. A refund never takes more than its payment
captured minus what was already refunded; the check and the record happen under the lock,
so concurrent refunds cannot exceed it either.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from fake_provider.faults import Fault, RandomFaults
from fake_provider.wire import (
    DEFAULT_PAYMENT_METHOD,
    PAYMENT_METHODS,
    PREPAID_PAYMENT_METHOD,
    ChargeRequest,
    RefundRequest,
    RequestError,
    format_money,
    major_units,
    now_iso,
)


@dataclass(frozen=True)
class Payment:
    """A processed charge, in wire order."""

    id: str
    cart_id: str | int
    amount: int
    currency: str
    payment_status: str
    decline_code: str | None
    payment_method: str
    idempotency_key: str | None
    created: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Refund:
    """A processed refund, in wire order."""

    id: str
    payment_id: str
    cart_id: str | int
    amount: int
    currency: str
    status: str
    reason: str | None
    idempotency_key: str | None
    created: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StoredReply:
    """What an idempotency key answers: the body it was first processed with."""

    fingerprint: str
    body: bytes


@dataclass
class JournalEntry:
    """One write request as received; `status` None means no HTTP answer."""

    method: str
    path: str
    idempotency_key: str | None
    body: Any
    at: str
    fault: str | None = None
    status: int | None = None
    request_id: str | None = None  # the caller's X-Request-ID: one id on both sides

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode(item: Payment | Refund) -> bytes:
    return json.dumps(item.as_dict()).encode()


class ProviderState:
    """Everything one fake provider remembers. `lock` guards every attribute."""

    def __init__(
        self, *, card_limit: Decimal, balance: Decimal, sleep: Callable[[float], None]
    ) -> None:
        self.card_limit = card_limit
        self.start_balance = balance
        self.sleep = sleep
        self.lock = threading.Lock()
        self.balance = balance
        self.ledger: list[Payment] = []
        self.refunds: list[Refund] = []
        self.refunded: dict[str, int] = {}  # payment id -> minor units refunded
        self.replies: dict[str, StoredReply] = {}  # charges, by idempotency key
        self.refund_replies: dict[str, StoredReply] = {}  # refunds, by idempotency key
        self.key_locks: dict[str, threading.Lock] = {}
        self.journal: list[JournalEntry] = []
        self.faults: list[Fault] = []
        self.random_faults: RandomFaults | None = None

    def reset(self) -> None:
        with self.lock:
            self.balance = self.start_balance
            self.ledger.clear()
            self.refunds.clear()
            self.refunded.clear()
            self.replies.clear()
            self.refund_replies.clear()
            self.key_locks.clear()
            self.journal.clear()
            self.faults.clear()
            self.random_faults = None

    @contextmanager
    def idempotency_lock(self, scope: str, key: str | None) -> Iterator[None]:
        """Serialise requests sharing a key, so the first is processed and the rest replay."""
        if key is None:
            yield
            return
        with self.lock:
            key_lock = self.key_locks.setdefault(f"{scope}:{key}", threading.Lock())
        with key_lock:
            yield

    def _once(
        self,
        scope: str,
        store: dict[str, StoredReply],
        fingerprint: str,
        key: str | None,
        process: Callable[[], bytes],
    ) -> tuple[StoredReply, bool]:
        with self.idempotency_lock(scope, key):
            with self.lock:
                stored = store.get(key) if key is not None else None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise RequestError(
                        409,
                        "idempotency_key_reused",
                        "This Idempotency-Key was already used with a different body.",
                        "Idempotency-Key",
                    )
                return stored, True
            reply = StoredReply(fingerprint, process())
            if key is not None:
                with self.lock:
                    store[key] = reply
            return reply, False

    def charge_once(self, charge: ChargeRequest, key: str | None) -> tuple[StoredReply, bool]:
        """Charge, or replay what `key` stored; returns the reply and whether it is a replay."""
        return self._once(
            "charge",
            self.replies,
            charge.fingerprint,
            key,
            lambda: encode(self.record_charge(charge, key)),
        )

    def refund_once(self, refund: RefundRequest, key: str | None) -> tuple[StoredReply, bool]:
        """Refund, or replay what `key` stored. A refused refund is not stored: repeating
        it is decided again."""
        return self._once(
            "refund",
            self.refund_replies,
            refund.fingerprint,
            key,
            lambda: encode(self.record_refund(refund, key)),
        )

    def record_charge(self, charge: ChargeRequest, key: str | None) -> Payment:
        """Decide the outcome by the card's rule and record the payment."""
        with self.lock:
            decline_code = PAYMENT_METHODS[charge.payment_method]
            cost = major_units(charge.amount, charge.currency)
            if charge.payment_method == DEFAULT_PAYMENT_METHOD and cost > self.card_limit:
                decline_code = "insufficient_funds"
            elif charge.payment_method == PREPAID_PAYMENT_METHOD:
                if cost > self.balance:
                    decline_code = "insufficient_funds"
                else:
                    self.balance -= cost
            payment = Payment(
                id=f"pay_{uuid.uuid4().hex[:24]}",
                cart_id=charge.cart_id,
                amount=charge.amount,
                currency=charge.currency,
                payment_status="failed" if decline_code else "success",
                decline_code=decline_code,
                payment_method=charge.payment_method,
                idempotency_key=key,
                created=now_iso(),
            )
            self.ledger.append(payment)
            return payment

    def record_refund(self, refund: RefundRequest, key: str | None) -> Refund:
        """Refund part or all of a successful payment, never more than it has left."""
        with self.lock:
            payment = next((p for p in self.ledger if p.id == refund.payment_id), None)
            if payment is None:
                message = f"No payment with id {refund.payment_id}."
                raise RequestError(400, "payment_not_found", message, "payment_id")
            if payment.payment_status != "success":
                message = "Only a successful payment can be refunded."
                raise RequestError(400, "payment_not_refundable", message, "payment_id")
            if refund.currency is not None and refund.currency != payment.currency:
                message = f"currency must be the payment's, {payment.currency}."
                raise RequestError(400, "invalid_field", message, "currency")
            left = payment.amount - self.refunded.get(payment.id, 0)
            if refund.amount > left:
                message = f"amount exceeds what is left to refund ({left} minor units)."
                raise RequestError(400, "amount_exceeds_refundable", message, "amount")
            self.refunded[payment.id] = self.refunded.get(payment.id, 0) + refund.amount
            if payment.payment_method == PREPAID_PAYMENT_METHOD:
                self.balance += major_units(refund.amount, payment.currency)
            made = Refund(
                id=f"re_{uuid.uuid4().hex[:24]}",
                payment_id=payment.id,
                cart_id=payment.cart_id,
                amount=refund.amount,
                currency=payment.currency,
                status="succeeded",
                reason=refund.reason,
                idempotency_key=key,
                created=now_iso(),
            )
            self.refunds.append(made)
            return made

    def next_fault(self) -> Fault | None:
        """Take one use of the fault at the front of the queue, else draw a random one."""
        with self.lock:
            if self.faults:
                fault = self.faults[0]
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.pop(0)
                return Fault(fault.kind, fault.delay_ms)
            if self.random_faults is not None:
                return self.random_faults.draw()
            return None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "available": 1,
                "card_limit": format_money(self.card_limit),
                "balance": format_money(self.balance),
                "payments": len(self.ledger),
                "charges": sum(p.payment_status == "success" for p in self.ledger),
                "refunds": len(self.refunds),
                "faults": [fault.as_dict() for fault in self.faults],
                "random_faults": self.random_faults.as_dict() if self.random_faults else None,
            }
