"""The outbox: every payment state change the shop hears about writes its event in the
same transaction, with the payload the shop receives; delivery is queued on commit."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import pytest
import simplejson
from django.db import transaction
from django_tasks_db.models import DBTaskResult

import utils
from cart.models import Cart, PaymentStatus
from cart.services import cart_pay
from cart.tests.factories import CartFactory
from events.models import Event, EventStatus, EventType
from payments import transitions
from payments.models import (
    ErrorCode,
    Payment,
    PaymentAttemptStatus,
    Refund,
    RefundReason,
    RefundStatus,
)
from payments.services import refund_create

pytestmark = pytest.mark.django_db

SHOP_URL = "http://127.0.0.1:9/webhooks"


@pytest.fixture
def shop_endpoint(settings):
    settings.SHOP_WEBHOOK_URL = SHOP_URL
    return SHOP_URL


def open_attempt(cart: Cart, amount=Decimal("20.00")) -> Payment:
    cart.payment_status = PaymentStatus.PROCESSING
    cart.save()
    return Payment.objects.create(
        cart=cart,
        amount=amount,
        currency=cart.currency,
        payment_method="pm_card_visa",
        idempotency_key=f"cart-{cart.pk}-k",
        status=PaymentAttemptStatus.UNKNOWN,
    )


def charge_of(payment: Payment, status=utils.PaymentOutcome.SUCCESS, decline=None):
    return utils.PaymentResult(
        payment_id="pay_abc",
        cart_id=str(payment.cart_id),
        amount=payment.amount,
        currency=payment.currency,
        status=status,
        decline_code=decline,
        payment_method=payment.payment_method,
        idempotency_key=payment.idempotency_key,
        replayed=False,
    )


def test_a_charge_writes_cart_paid_with_the_cart_and_the_payment(shop_endpoint):
    cart = CartFactory(total=Decimal("20.00"))
    payment = open_attempt(cart)

    transitions.attempt_charged(payment=payment, result=charge_of(payment))

    event = Event.objects.get()
    assert event.type == EventType.CART_PAID
    assert event.cart_id == cart.pk
    assert event.status == EventStatus.PENDING
    body = simplejson.loads(event.body, use_decimal=True)
    assert body["id"] == str(event.pk)
    assert body["type"] == "cart.paid"
    assert body["data"]["cart"]["id"] == str(cart.pk)
    assert body["data"]["cart"]["payment_status"] == "success"
    assert body["data"]["cart"]["total"] == Decimal("20.00")
    assert body["data"]["payment"]["id"] == str(payment.pk)
    assert body["data"]["payment"]["amount"] == Decimal("20.00")
    assert body["data"]["payment"]["provider_payment_id"] == "pay_abc"
    assert '"amount":20.00' in event.body  # an exact JSON number, never a float or a string
    assert body["sequence"] == event.sequence == 1  # the cart's first event


def test_a_repeated_charge_writes_no_second_event(shop_endpoint):
    cart = CartFactory()
    payment = open_attempt(cart)
    transitions.attempt_charged(payment=payment, result=charge_of(payment))
    transitions.attempt_charged(payment=payment, result=charge_of(payment))
    assert Event.objects.filter(type=EventType.CART_PAID).count() == 1


def test_a_decline_and_a_proven_no_charge_write_cart_payment_failed(shop_endpoint):
    declined_cart = CartFactory()
    payment = open_attempt(declined_cart)
    failed = utils.PaymentOutcome.FAILED
    transitions.attempt_declined(
        payment=payment, result=charge_of(payment, failed, "insufficient_funds")
    )
    unknown_cart = CartFactory()
    transitions.attempt_not_charged(
        payment=open_attempt(unknown_cart), code=ErrorCode.NOT_IN_LEDGER
    )

    declined = Event.objects.get(cart=declined_cart)
    assert declined.type == EventType.CART_PAYMENT_FAILED
    assert declined.data["payment"]["status"] == "failed"
    assert declined.data["payment"]["decline_code"] == "insufficient_funds"
    closed = Event.objects.get(cart=unknown_cart)
    assert closed.type == EventType.CART_PAYMENT_FAILED
    assert closed.data["payment"]["status"] == "error"
    assert closed.data["payment"]["error_code"] == "not_in_ledger"
    assert closed.data["cart"]["payment_status"] == "pending"


def made_refund(cart: Cart, amount: Decimal, reason=RefundReason.REQUESTED_BY_CUSTOMER):
    """A refund of the cart's paid charge, sent, then made by the provider."""
    charge = Payment.objects.create(
        cart=cart,
        amount=cart.total,
        currency=cart.currency,
        payment_method="pm_card_visa",
        idempotency_key=f"cart-{cart.pk}-paid",
        status=PaymentAttemptStatus.SUCCESS,
        provider_payment_id="pay_abc",
        amount_refunded=amount,  # what the open refund holds
    )
    refund = Refund.objects.create(
        payment=charge,
        cart=cart,
        amount=amount,
        currency=cart.currency,
        reason=reason,
        status=RefundStatus.UNKNOWN,
        idempotency_key=f"refund-{cart.pk}",
    )
    result = utils.RefundResult(
        refund_id="re_xyz",
        payment_id="pay_abc",
        amount=amount,
        currency=cart.currency,
        status=utils.RefundOutcome.SUCCEEDED,
        idempotency_key=refund.idempotency_key,
        replayed=False,
    )
    return transitions.refund_made(refund=refund, result=result)


def test_a_refund_made_writes_cart_refunded_with_the_refund_the_shop_books(shop_endpoint):
    cart = CartFactory(total=Decimal(1500), currency="JPY", payment_status=PaymentStatus.SUCCESS)

    refund = made_refund(cart, Decimal(500))

    event = Event.objects.get()
    assert event.type == EventType.CART_REFUNDED
    assert event.cart_id == cart.pk
    assert event.status == EventStatus.PENDING
    body = simplejson.loads(event.body, use_decimal=True)
    assert body["type"] == "cart.refunded"
    assert body["data"]["refund"] == {
        "id": str(refund.pk),
        "payment_id": str(refund.payment_id),  # the charge as the shop knows it (cart.paid)
        "status": "success",
        "amount": Decimal(500),
        "currency": "JPY",
        "reason": "requested_by_customer",
        "provider_refund_id": "re_xyz",
        "completed": refund.completed.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    assert body["data"]["refund"]["completed"].endswith("Z")
    assert '"amount":500,' in event.body  # whole yen, as the shop books them
    assert body["data"]["cart"]["id"] == str(cart.pk)
    assert body["data"]["cart"]["amount_refunded"] == Decimal(500)
    assert body["data"]["cart"]["payment_status"] == "partially_refunded"


def test_a_duplicate_charge_given_back_writes_no_cart_refunded(shop_endpoint):
    # The shop never asked for it, and the cart's refunded amount does not change.
    cart = CartFactory(total=Decimal("20.00"), payment_status=PaymentStatus.SUCCESS)
    made_refund(cart, Decimal("20.00"), reason=RefundReason.DUPLICATE_CHARGE)
    assert not Event.objects.exists()


def test_the_event_and_the_change_commit_together_or_not_at_all(shop_endpoint):
    cart = CartFactory()
    payment = open_attempt(cart)

    def charge_then_die():
        with transaction.atomic():
            transitions.attempt_charged(payment=payment, result=charge_of(payment))
            raise RuntimeError("the process dies before the commit")

    with pytest.raises(RuntimeError):
        charge_then_die()

    assert not Event.objects.exists()
    assert Payment.objects.get(pk=payment.pk).status == PaymentAttemptStatus.UNKNOWN


def test_delivery_is_queued_only_once_the_change_is_committed(
    shop_endpoint, django_capture_on_commit_callbacks
):
    cart = CartFactory()
    payment = open_attempt(cart)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        transitions.attempt_charged(payment=payment, result=charge_of(payment))
    assert not DBTaskResult.objects.exists()

    for callback in callbacks:
        callback()

    task = DBTaskResult.objects.get()
    assert task.task_path == "events.tasks.deliver_event"
    assert task.args_kwargs["args"] == [str(Event.objects.get().pk)]


def test_without_a_shop_endpoint_events_are_recorded_not_sent(settings):
    settings.SHOP_WEBHOOK_URL = ""
    cart = CartFactory()
    payment = open_attempt(cart)
    transitions.attempt_charged(payment=payment, result=charge_of(payment))
    event = Event.objects.get()
    assert event.status == EventStatus.NOT_SENT
    assert event.next_attempt_at is None


@pytest.mark.integration
def test_paying_and_refunding_through_the_services_write_their_events(
    fake_provider, shop_endpoint
):
    cart = CartFactory(total=Decimal("20.00"))
    cart_pay(cart=cart, payment_method="pm_card_visa")
    refund_create(cart=cart, amount=Decimal("5.00"))

    paid, refunded = Event.objects.order_by("sequence")
    assert (paid.sequence, refunded.sequence) == (1, 2)
    assert paid.type == EventType.CART_PAID
    assert refunded.type == EventType.CART_REFUNDED
    assert refunded.data["refund"]["amount"] == Decimal("5.00")
    assert refunded.data["refund"]["reason"] == "requested_by_customer"
    assert refunded.data["cart"]["amount_refunded"] == Decimal("5.00")
    assert refunded.data["cart"]["payment_status"] == "partially_refunded"


@pytest.mark.integration
def test_a_declined_card_writes_one_cart_payment_failed(fake_provider, shop_endpoint):
    cart = CartFactory()
    cart_pay(cart=cart, payment_method="pm_card_chargeDeclined")
    event = Event.objects.get()
    assert event.type == EventType.CART_PAYMENT_FAILED
    assert event.data["payment"]["decline_code"] == "generic_decline"
