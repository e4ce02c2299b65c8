"""A charge that lands after its attempt was closed as "not charged", when the cart has
changed since (its lines, or a discount released and taken by another cart): it pays
the cart only if it is still what the cart costs; otherwise it is given back and the
cart stays payable at its new total. Never a cart marked paid for what was not charged,
nor a settlement that fails and loses the charge. When it pays the cart while another
card's attempt is open, that attempt is still settled, and the cart stays paid."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.utils import timezone

from cart.models import Cart, PaymentStatus
from cart.services import LineInput, cart_apply_discount, cart_line_add, cart_line_remove, cart_pay
from cart.tests.factories import CartFactory, itemized_cart
from common.testing import response_json
from discount.models import Discount, DiscountReservation
from discount.services import (
    discount_generate_codes,
    discount_release_expired_reservations,
    discount_update,
)
from discount.tests.factories import DiscountFactory
from events.models import Event, EventType, ProviderEvent
from events.tests.test_inbound import payment_event, post, queued_give_backs
from payments.errors import PaymentOutcomeUnknownError, ProviderUnavailableError
from payments.models import ErrorCode, Payment, PaymentAttemptStatus, RefundReason
from payments.reconcile import payments_reconcile
from payments.services import payment_record_result
from payments.tests.test_pay_service import (
    NOT_FOUND,
    REFUNDED,
    Answer,
    ScriptedProvider,
    declined,
    timeout,
    unavailable,
)

pytestmark = pytest.mark.django_db


def closed_as_not_charged(cart: Cart) -> Payment:
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, api=ScriptedProvider(pay=[unavailable()]))
    attempt = Payment.objects.get(cart=cart)
    assert attempt.status == PaymentAttemptStatus.ERROR
    return attempt


def lands_late(attempt: Payment) -> Payment:
    """The attempt's charge, for what it was sent with, recorded as a lookup finds it."""
    request = {
        "cart_id": str(attempt.cart_id),
        "amount": attempt.amount,
        "currency": attempt.currency,
        "idempotency_key": attempt.idempotency_key,
        "payment_method": attempt.payment_method or None,
    }
    charge = ScriptedProvider()._result(Answer(), request)
    cart = Cart.objects.get(pk=attempt.cart_id)
    return payment_record_result(cart=cart, payment=attempt, result=charge)


def expire_and_sweep(cart: Cart) -> None:
    DiscountReservation.objects.filter(cart=cart, status="reserved").update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    assert discount_release_expired_reservations() >= 1


def assert_given_back_and_payable(cart: Cart, attempt: Payment, total: str) -> None:
    attempt.refresh_from_db()
    assert (attempt.status, attempt.error_code) == ("duplicate", ErrorCode.CART_CHANGED)
    assert attempt.provider_payment_id  # the charge is recorded, to be given back
    cart = Cart.objects.get(pk=cart.pk)
    assert (cart.payment_status, cart.total) == (PaymentStatus.PENDING, Decimal(total))
    assert not Event.objects.filter(cart=cart, type=EventType.CART_PAID).exists()


def test_a_late_charge_for_fewer_lines_than_the_cart_has_now_is_given_back():
    cart = itemized_cart(("apple", 1, "10.00"))
    attempt = closed_as_not_charged(cart)
    cart_line_add(cart=cart, line=LineInput("pear", "Pear", 1, Decimal("5.00")))

    lands_late(attempt)

    assert_given_back_and_payable(cart, attempt, "15.00")


def test_a_late_charge_for_more_lines_than_the_cart_has_now_is_given_back():
    cart = itemized_cart(("apple", 1, "10.00"), ("pear", 1, "5.00"))
    attempt = closed_as_not_charged(cart)
    pear = cart.lines.get(sku="pear")
    cart_line_remove(cart=cart, line_id=pear.pk)

    lands_late(attempt)

    assert_given_back_and_payable(cart, attempt, "10.00")


def test_a_late_charge_whose_discount_was_resized_then_released_is_given_back():
    discount = DiscountFactory(code="HALF", kind="percent", value=Decimal("50"), usage_limit=5)
    cart = itemized_cart(("apple", 1, "20.00"))
    cart_apply_discount(cart=cart, discount=discount)
    attempt = closed_as_not_charged(cart)
    assert attempt.amount == Decimal("10.00")
    cart_line_add(cart=cart, line=LineInput("pear", "Pear", 1, Decimal("5.00")))
    expire_and_sweep(cart)

    lands_late(attempt)

    assert_given_back_and_payable(cart, attempt, "25.00")
    assert Discount.objects.get(pk=discount.pk).times_used == 0


def test_a_late_charge_whose_scoped_code_no_longer_gives_that_much_is_given_back():
    # The released code took 5.00 off the B lines; the B line now costs 1.00: bringing
    # the code back would show B at -4.00 and the cart paid for what its lines do not say.
    discount = DiscountFactory(code="BX", value=Decimal("5"), sku_prefixes=["B"])
    cart = itemized_cart(("A", 1, "10.00"), ("B", 1, "10.00"))
    cart_apply_discount(cart=cart, discount=discount)
    attempt = closed_as_not_charged(cart)  # 15.00
    cart_line_remove(cart=cart, line_id=cart.lines.get(sku="B").pk)  # the code leaves
    cart_line_add(cart=cart, line=LineInput("B2", "B2", 1, Decimal("1.00")))
    cart_line_add(cart=cart, line=LineInput("C", "C", 1, Decimal("9.00")))  # 20.00

    lands_late(attempt)

    assert_given_back_and_payable(cart, attempt, "20.00")
    assert all(line.total >= 0 for line in Cart.objects.get(pk=cart.pk).lines.all())
    assert not DiscountReservation.objects.filter(cart=cart).exclude(status="released")


def test_a_late_charge_whose_scoped_code_has_no_line_left_is_given_back():
    # No line the code applies to: showing it again split its 5.00 over nothing (a
    # ValueError in the settlement, so the charge was never recorded, on every retry).
    discount = DiscountFactory(code="B5", value=Decimal("5"), skus=["B"])
    cart = itemized_cart(("A", 1, "10.00"), ("B", 1, "10.00"))
    cart_apply_discount(cart=cart, discount=discount)
    attempt = closed_as_not_charged(cart)  # 15.00
    cart_line_remove(cart=cart, line_id=cart.lines.get(sku="B").pk)
    cart_line_add(cart=cart, line=LineInput("C", "C", 1, Decimal("10.00")))  # 20.00

    lands_late(attempt)

    assert_given_back_and_payable(cart, attempt, "20.00")


@pytest.mark.parametrize(
    "edit",
    [{"value": Decimal("15")}, {"min_cart_total": Decimal("50"), "currency": "USD"}],
    ids=["value", "minimum"],
)
def test_a_late_charge_on_unchanged_lines_pays_the_cart_though_its_code_was_edited(edit):
    # What the code gave is what was charged: staff editing its terms since does not make
    # the cart changed.
    discount = DiscountFactory(code="TEN", kind="percent", value=Decimal("10"))
    cart = itemized_cart(("apple", 1, "20.00"))
    cart_apply_discount(cart=cart, discount=discount)
    attempt = closed_as_not_charged(cart)  # 18.00
    expire_and_sweep(cart)  # the code released, the cart back at 20.00
    discount_update(discount=discount, data=edit)

    lands_late(attempt)

    attempt.refresh_from_db()
    cart = Cart.objects.get(pk=cart.pk)
    assert attempt.status == PaymentAttemptStatus.SUCCESS
    assert (cart.payment_status, cart.total, cart.amount_discounted) == (
        PaymentStatus.SUCCESS,
        Decimal("18.00"),
        Decimal("2.00"),
    )


def test_a_late_charge_whose_generated_code_another_cart_holds_now_is_given_back():
    discount = DiscountFactory(code="XMAS", value=Decimal("5"))
    [code] = discount_generate_codes(discount=discount, count=1)
    cart = CartFactory(total=Decimal("20.00"))
    cart_apply_discount(cart=cart, discount=discount, code=code)
    attempt = closed_as_not_charged(cart)
    expire_and_sweep(cart)
    other = CartFactory(total=Decimal("20.00"))
    cart_apply_discount(cart=other, discount=discount, code=code)

    lands_late(attempt)  # once raised IntegrityError: the charge was never recorded

    assert_given_back_and_payable(cart, attempt, "20.00")
    held = DiscountReservation.objects.get(code=code, status="reserved")
    assert held.cart_id == other.pk


def test_a_late_charge_for_the_cart_as_it_still_is_pays_it():
    cart = itemized_cart(("apple", 1, "10.00"))
    attempt = closed_as_not_charged(cart)

    lands_late(attempt)

    attempt.refresh_from_db()
    assert attempt.status == PaymentAttemptStatus.SUCCESS
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS


def test_reconcile_gives_the_late_charge_of_a_changed_cart_back():
    cart = itemized_cart(("apple", 1, "10.00"))
    attempt = closed_as_not_charged(cart)
    Payment.objects.filter(pk=attempt.pk).update(completed=timezone.now() - timedelta(minutes=5))
    cart_line_add(cart=cart, line=LineInput("pear", "Pear", 1, Decimal("5.00")))
    charge = ScriptedProvider()._result(
        Answer(),
        {
            "cart_id": str(cart.pk),
            "amount": attempt.amount,
            "currency": attempt.currency,
            "idempotency_key": attempt.idempotency_key,
            "payment_method": attempt.payment_method,
        },
    )
    provider = ScriptedProvider(ledger={attempt.idempotency_key: charge}, refund=[REFUNDED])

    counts = payments_reconcile(older_than=timedelta(minutes=1), api=provider)

    assert (counts["duplicate_charges"], counts["duplicates_refunded"]) == (1, 1)
    [refund_request] = provider.requests
    assert (refund_request["payment_id"], refund_request["amount"]) == (
        charge.payment_id,
        Decimal("10.00"),
    )
    attempt.refresh_from_db()
    refund = attempt.refunds.get()
    assert (refund.reason, refund.status) == (RefundReason.DUPLICATE_CHARGE, "success")
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.PENDING


def test_the_webhook_of_a_changed_carts_late_charge_gives_it_back(api_client):
    cart = itemized_cart(("apple", 1, "10.00"))
    attempt = closed_as_not_charged(cart)
    cart_line_add(cart=cart, line=LineInput("pear", "Pear", 1, Decimal("5.00")))

    response = post(api_client, payment_event(attempt))

    assert response_json(response)["outcome"] == "attempt error -> duplicate"
    assert_given_back_and_payable(cart, attempt, "15.00")


def test_a_settlement_that_fails_is_not_taken_for_a_second_delivery(api_client, monkeypatch):
    # The provider sends an event again until it is answered 2xx: a failure to record it
    # must not be answered "duplicate" (which loses it), and nothing of it is stored.
    cart = CartFactory()
    attempt = closed_as_not_charged(cart)

    def fails(**kwargs):
        raise IntegrityError("some constraint")

    monkeypatch.setattr("events.inbound.payment_settle_from_event", fails)
    api_client.raise_request_exception = False

    response = post(api_client, payment_event(attempt))

    assert response.status_code == 500
    assert not ProviderEvent.objects.exists()


# -- a late charge pays the cart while another card's attempt is open ----------------------


def events_of(cart: Cart) -> list[str]:
    return list(Event.objects.filter(cart=cart).order_by("created").values_list("type", flat=True))


def paid_late_while_another_card_is_open(cart: Cart) -> tuple[Payment, Payment]:
    """The first card's attempt closed as not charged; a second card's attempt left open
    (its answer lost, nothing in the ledger yet); then the first card's charge lands and
    pays the cart."""
    first = closed_as_not_charged(cart)
    with pytest.raises(PaymentOutcomeUnknownError):
        cart_pay(
            cart=cart,
            payment_method="pm_card_mastercard",
            api=ScriptedProvider(pay=[timeout()], find=[NOT_FOUND]),
        )
    second = Payment.objects.get(cart=cart, status=PaymentAttemptStatus.UNKNOWN)
    lands_late(first)
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS
    return first, second


def reconcile_finds(second: Payment, record) -> dict:
    Payment.objects.filter(pk=second.pk).update(in_flight_until=timezone.now())  # it ended
    provider = ScriptedProvider(ledger={second.idempotency_key: record})
    counts = payments_reconcile(older_than=timedelta(0), api=provider)
    assert counts["still_unknown"] == 0
    return counts


def webhook_declines(second: Payment, api_client) -> str:
    response = post(api_client, payment_event(second, "payment.failed", id="pay_second"))
    assert response.status_code == 200
    return response_json(response)["outcome"]


@pytest.mark.parametrize(
    ("settle", "status", "error_code"),
    [
        pytest.param(
            lambda second, _: reconcile_finds(second, declined())["failed"],
            PaymentAttemptStatus.FAILED,
            "",
            id="reconcile_finds_it_declined",
        ),
        pytest.param(
            lambda second, _: reconcile_finds(second, NOT_FOUND)["not_charged"],
            PaymentAttemptStatus.ERROR,
            ErrorCode.NOT_IN_LEDGER,
            id="reconcile_finds_nothing",
        ),
        pytest.param(
            lambda second, client: webhook_declines(second, client) == "attempt unknown -> failed",
            PaymentAttemptStatus.FAILED,
            "",
            id="a_webhook_declines_it",
        ),
    ],
)
def test_another_cards_attempt_open_when_a_late_charge_paid_the_cart_is_still_settled(
    api_client, settle, status, error_code
):
    # It was left `unknown` forever: settling it moved the paid cart to failed or
    # pending (CartPaidError), so reconcile reported it on every run and the webhook
    # declining it was answered "left open".
    cart = CartFactory()
    first, second = paid_late_while_another_card_is_open(cart)
    events_before = events_of(cart)

    assert settle(second, api_client)

    second.refresh_from_db()
    assert (second.status, second.error_code) == (status, error_code)
    assert second.completed is not None
    cart = Cart.objects.get(pk=cart.pk)
    assert cart.payment_status == PaymentStatus.SUCCESS
    assert Payment.objects.get(pk=first.pk).status == PaymentAttemptStatus.SUCCESS
    # The shop heard the first attempt fail, then the cart paid: nothing more (a
    # `cart.payment_failed` says the cart can be paid again).
    assert events_of(cart) == events_before == [EventType.CART_PAYMENT_FAILED, EventType.CART_PAID]


@pytest.mark.parametrize("answer", ["declined", "never_reached"])
def test_another_cards_pay_answered_after_a_late_charge_paid_the_cart_settles_it(answer):
    cart = CartFactory()
    first = closed_as_not_charged(cart)

    def meanwhile_the_first_charge_lands(request):
        lands_late(first)
        if answer == "never_reached":
            raise unavailable()
        return ScriptedProvider()._result(declined(), request)

    provider = ScriptedProvider(pay=[meanwhile_the_first_charge_lands])
    if answer == "declined":
        second = cart_pay(cart=cart, payment_method="pm_card_mastercard", api=provider)
        assert (second.status, second.decline_code) == ("failed", "insufficient_funds")
    else:
        with pytest.raises(ProviderUnavailableError):
            cart_pay(cart=cart, payment_method="pm_card_mastercard", api=provider)
        second = Payment.objects.get(cart=cart, payment_method="pm_card_mastercard")
        assert (second.status, second.error_code) == ("error", ErrorCode.PROVIDER_UNAVAILABLE)

    assert cart.payment_status == PaymentStatus.SUCCESS  # the caller's copy too
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS
    assert events_of(cart) == [EventType.CART_PAYMENT_FAILED, EventType.CART_PAID]


def test_a_charge_of_the_attempt_open_when_a_late_charge_paid_the_cart_is_given_back_at_once(
    django_capture_on_commit_callbacks,
):
    # Recorded by the pay request resuming it (or reconcile), as by its webhook: its
    # give-back is queued as it is recorded, not left for the next reconcile run.
    cart = CartFactory()
    _first, second = paid_late_while_another_card_is_open(cart)

    with django_capture_on_commit_callbacks(execute=True):
        charged = lands_late(second)

    assert (charged.status, charged.error_code) == (
        PaymentAttemptStatus.DUPLICATE,
        ErrorCode.DUPLICATE_CHARGE,
    )
    assert queued_give_backs() == [[str(second.pk)]]
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS
