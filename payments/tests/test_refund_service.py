"""Giving money back (`payments.services.refund_create`) against a scripted provider:
amounts, the reservation that keeps refunds within the charge, idempotency, and the same
rule as paying for what a failed provider call proves."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

import utils
from cart.errors import CartPaidError
from cart.models import Cart, CartLine, PaymentStatus
from cart.services import cart_apply_discount, cart_pay
from cart.tests.factories import CartFactory, itemized_cart
from discount.tests.factories import DiscountFactory
from payments.errors import (
    CartNotPaidError,
    IdempotencyKeyReusedError,
    ProviderBadAnswerError,
    ProviderBusyError,
    ProviderUnavailableError,
    RefundExceedsCapturedError,
    RefundExceedsLineError,
    RefundInProgressError,
    RefundOutcomeUnknownError,
)
from payments.models import REFUND_MESSAGES, ErrorCode, Payment, Refund, RefundStatus
from payments.provider import provider_slot
from payments.services import refund_create
from payments.tests.test_pay_service import (
    CHARGED,
    NOT_FOUND,
    REFUND_FAILED,
    REFUNDED,
    ScriptedProvider,
    bad_answer,
    connection_lost,
    timeout,
    unavailable,
)

pytestmark = pytest.mark.django_db


def paid_cart(total: str = "20.00", currency: str = "USD") -> Cart:
    cart = CartFactory(total=Decimal(total), currency=currency)
    cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    return cart


def charge_of(cart: Cart) -> Payment:
    return Payment.objects.get(cart=cart, status="success")


def refund(cart: Cart, amount: str | None = None, *steps, key: str | None = None, **script):
    provider = ScriptedProvider(refund=steps, **script)
    made = refund_create(
        cart=cart,
        amount=None if amount is None else Decimal(amount),
        idempotency_key=key,
        api=provider,
    )
    return made, provider


def refund_made_back(raised) -> bool | None:
    return raised.value.extra["refund_made"]


# --- amounts and the cart's state ---------------------------------------------------------


def test_a_partial_refund_is_sent_with_a_key_derived_from_the_refund_row():
    cart = paid_cart("20.00")

    made, provider = refund(cart, "5.00", REFUNDED, key="refund-request-1")

    [sent] = provider.requests
    assert sent == {
        "payment_id": charge_of(cart).provider_payment_id,
        "amount": Decimal("5.00"),
        "currency": "USD",
        "idempotency_key": f"refund-{made.pk}",
        "reason": "requested_by_customer",
    }
    assert (made.status, made.amount, made.provider_refund_id) == (
        RefundStatus.SUCCESS,
        Decimal("5.00"),
        f"re_refund-{made.pk}",
    )
    assert made.completed is not None
    assert (cart.payment_status, cart.amount_refunded) == ("partially_refunded", Decimal("5"))
    assert Cart.objects.get(pk=cart.pk).amount_refunded == Decimal("5.00")
    assert charge_of(cart).amount_refunded == Decimal("5.00")


def test_refunds_add_up_to_refunded_then_nothing_is_left():
    cart = paid_cart("20.00")

    refund(cart, "5.00", REFUNDED)
    refund(cart, "5.00", REFUNDED)
    assert cart.payment_status == PaymentStatus.PARTIALLY_REFUNDED
    last, _ = refund(cart, None, REFUNDED)  # default: everything not yet refunded

    assert last.amount == Decimal("10.00")
    assert (cart.payment_status, cart.amount_refunded) == ("refunded", Decimal("20.00"))
    with pytest.raises(RefundExceedsCapturedError, match=r"Only 0\.00 USD"):
        refund(cart, "0.01")
    with pytest.raises(RefundExceedsCapturedError, match=r"Only 0\.00 USD"):
        refund(cart)  # everything not yet refunded: nothing, and no refund of 0 is sent
    assert Refund.objects.count() == 3


def test_a_full_refund_by_default_refunds_the_cart():
    cart = paid_cart("12.34")

    made, _ = refund(cart, None, REFUNDED)

    assert made.amount == Decimal("12.34")
    assert cart.payment_status == PaymentStatus.REFUNDED
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.REFUNDED


def test_more_than_what_is_left_is_refused_without_calling_the_provider():
    cart = paid_cart("20.00")
    refund(cart, "15.00", REFUNDED)

    with pytest.raises(RefundExceedsCapturedError) as raised:
        refund(cart, "5.01")

    assert raised.value.status_code == 409
    assert "Only 5.00 USD" in raised.value.message
    assert Refund.objects.count() == 1
    assert charge_of(cart).amount_refunded == Decimal("15.00")


@pytest.mark.parametrize("status", ["pending", "failed", "processing"])
def test_a_cart_that_is_not_paid_cannot_be_refunded(status):
    cart = CartFactory(payment_status=status)

    with pytest.raises(CartNotPaidError) as raised:
        refund(cart, "1.00")

    assert raised.value.status_code == 409
    assert Refund.objects.count() == 0


def test_a_fully_discounted_paid_cart_has_nothing_to_refund():
    cart = CartFactory(total=Decimal("5.00"))
    cart_apply_discount(cart=cart, discount=DiscountFactory(value=Decimal("5")))
    cart_pay(cart=cart, api=ScriptedProvider())

    with pytest.raises(RefundExceedsCapturedError):
        refund(cart)


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        ("0", "USD", "min_value"),
        ("-1.00", "USD", "min_value"),
        ("1.001", "USD", "too_many_decimals"),
        ("1.5", "JPY", "too_many_decimals"),
        ("NaN", "USD", "min_value"),
        ("Infinity", "USD", "min_value"),
    ],
)
def test_a_bad_amount_is_refused_before_anything_changes(amount, currency, code):
    cart = paid_cart("2000" if currency == "JPY" else "20.00", currency)

    with pytest.raises(ValidationError) as raised:
        refund(cart, amount)

    assert raised.value.error_dict["amount"][0].code == code
    assert Refund.objects.count() == 0


def test_a_paid_and_refunded_cart_stays_frozen_for_payments():
    cart = paid_cart("20.00")
    refund(cart, None, REFUNDED)

    with pytest.raises(CartPaidError):
        cart_pay(cart=cart, api=ScriptedProvider())


def test_the_model_method_refunds_through_the_service():
    cart = paid_cart("20.00")

    made = cart.refund(amount=Decimal("2.50"), api=ScriptedProvider(refund=[REFUNDED]))

    assert made.amount == Decimal("2.50")
    assert cart.payment_status == PaymentStatus.PARTIALLY_REFUNDED


# --- idempotency --------------------------------------------------------------------------


def test_the_same_key_replays_the_refund_without_calling_the_provider():
    cart = paid_cart()
    first, _ = refund(cart, "3.00", REFUNDED, key="r1")

    again, provider = refund(cart, "3.00", key="r1")
    implied, _ = refund(cart, None, key="r1")  # the amount may be left out when repeating

    assert again.pk == first.pk == implied.pk
    assert provider.requests == []
    assert Refund.objects.count() == 1
    assert cart.amount_refunded == Decimal("3.00")


@pytest.mark.parametrize("key", ["", "r1 ", "x" * 201])
def test_a_key_no_client_may_send_is_refused_before_anything_is_written(key):
    cart = paid_cart()

    with pytest.raises(ValidationError) as raised:
        refund(cart, "3.00", REFUNDED, key=key)

    assert "Idempotency-Key" in raised.value.message_dict
    assert not Refund.objects.exists()


def test_the_same_key_for_another_amount_is_refused():
    cart = paid_cart()
    refund(cart, "3.00", REFUNDED, key="r1")

    with pytest.raises(IdempotencyKeyReusedError):
        refund(cart, "4.00", key="r1")


def test_the_same_key_resumes_a_refund_left_unknown_with_its_own_provider_key():
    cart = paid_cart()
    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", timeout(), key="r1", find=[NOT_FOUND])
    held = Refund.objects.get()

    resumed, provider = refund(cart, "3.00", REFUNDED, key="r1")

    assert provider.requests[0]["idempotency_key"] == held.idempotency_key
    assert resumed.pk == held.pk
    assert resumed.status == RefundStatus.SUCCESS
    assert charge_of(cart).amount_refunded == Decimal("3.00")  # reserved once


def test_a_refund_being_sent_right_now_refuses_its_repeat():
    cart = paid_cart()
    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", timeout(), key="r1", find=[NOT_FOUND])
    Refund.objects.update(status=RefundStatus.PROCESSING, updated=timezone.now())

    with pytest.raises(RefundInProgressError):
        refund(cart, "3.00", key="r1")


# --- what the provider does ---------------------------------------------------------------


def test_a_refund_the_provider_refuses_as_too_large_is_a_409_and_releases_its_hold():
    cart = paid_cart()
    refused = utils.RefundRefusedError(
        "refused", status_code=400, code="amount_exceeds_refundable"
    )

    with pytest.raises(RefundExceedsCapturedError):
        refund(cart, "3.00", refused)

    held = Refund.objects.get()
    assert (held.status, held.error_code) == (RefundStatus.FAILED, ErrorCode.REFUND_REFUSED)
    assert held.error == REFUND_MESSAGES[ErrorCode.REFUND_REFUSED]
    assert charge_of(cart).amount_refunded == 0
    assert cart.payment_status == PaymentStatus.SUCCESS


def test_a_refund_the_provider_refuses_for_another_reason_is_a_502_saying_nothing_was_refunded():
    cart = paid_cart()
    refused = utils.RefundRefusedError("refused", status_code=400, code="payment_not_refundable")

    with pytest.raises(ProviderBadAnswerError) as raised:
        refund(cart, "3.00", refused)

    assert (raised.value.status_code, raised.value.code) == (502, "payment_provider_error")
    assert raised.value.extra == {"refund_made": False, "retryable": True}
    assert "Nothing was refunded" in raised.value.message
    assert raised.value.__cause__ is refused
    held = Refund.objects.get()
    assert (held.status, held.error_code) == (RefundStatus.FAILED, ErrorCode.REFUND_REFUSED)
    assert charge_of(cart).amount_refunded == 0


def test_a_refund_the_provider_declines_is_returned_failed_and_released():
    cart = paid_cart()

    made, _ = refund(cart, "3.00", REFUND_FAILED)

    assert (made.status, made.error_code) == (RefundStatus.FAILED, ErrorCode.REFUND_DECLINED)
    assert charge_of(cart).amount_refunded == 0
    assert (cart.payment_status, cart.amount_refunded) == ("success", 0)


def test_a_provider_never_reached_refunds_nothing_and_releases_the_hold():
    cart = paid_cart()

    with pytest.raises(ProviderUnavailableError) as raised:
        refund(cart, "3.00", unavailable())

    assert refund_made_back(raised) is False
    assert "refunded" in raised.value.message
    assert Refund.objects.get().status == RefundStatus.ERROR
    assert charge_of(cart).amount_refunded == 0


def test_a_lost_refund_answer_found_in_the_ledger_is_the_outcome():
    cart = paid_cart()
    found = []

    def ledger(key):
        found.append(key)
        return utils.RefundResult(
            refund_id="re_found",
            payment_id=charge_of(cart).provider_payment_id,
            amount=Decimal("3.00"),
            currency="USD",
            status=utils.RefundOutcome.SUCCEEDED,
            idempotency_key=key,
            replayed=False,
        )

    made, _ = refund(cart, "3.00", connection_lost(), find=[ledger])

    assert found == [made.idempotency_key]
    assert (made.status, made.provider_refund_id) == (RefundStatus.SUCCESS, "re_found")
    assert cart.amount_refunded == Decimal("3.00")


@pytest.mark.parametrize("error", [connection_lost, bad_answer])
def test_a_refund_request_that_may_have_reached_the_provider_stays_open_on_a_ledger_miss(error):
    # The provider may make the refund after the lookup: an empty ledger proves nothing yet.
    cart = paid_cart()

    with pytest.raises(RefundOutcomeUnknownError) as raised:
        refund(cart, "3.00", error(), find=[NOT_FOUND])

    assert refund_made_back(raised) is None
    held = Refund.objects.get()
    assert held.status == RefundStatus.UNKNOWN
    assert held.in_flight_until > timezone.now()
    assert charge_of(cart).amount_refunded == Decimal("3.00")  # still held


def left_open_and_landed(cart: Cart, key: str) -> Refund:
    """A refund left unknown whose in-flight window has passed."""
    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", timeout(), key=key, find=[NOT_FOUND])
    Refund.objects.filter(request_key=key).update(in_flight_until=timezone.now())
    return Refund.objects.get(request_key=key)


def made_in_ledger(cart: Cart, amount: str = "3.00"):
    def ledger(key):
        return utils.RefundResult(
            refund_id="re_found",
            payment_id=charge_of(cart).provider_payment_id,
            amount=Decimal(amount),
            currency="USD",
            status=utils.RefundOutcome.SUCCEEDED,
            idempotency_key=key,
            replayed=False,
        )

    return ledger


def test_a_resumed_refund_whose_resend_never_left_is_settled_by_the_ledger():
    # The resend proves only that it refunded nothing; the earlier request may have.
    cart = paid_cart()
    held = left_open_and_landed(cart, "r1")

    made, provider = refund(cart, "3.00", unavailable(), key="r1", find=[made_in_ledger(cart)])

    assert provider.lookups == [held.idempotency_key]
    assert (made.pk, made.status) == (held.pk, RefundStatus.SUCCESS)
    assert cart.amount_refunded == Decimal("3.00")


def test_a_resumed_refund_whose_resend_never_left_is_closed_only_by_an_empty_ledger():
    cart = paid_cart()
    held = left_open_and_landed(cart, "r1")

    with pytest.raises(ProviderUnavailableError) as raised:
        refund(cart, "3.00", unavailable(), key="r1", find=[NOT_FOUND])

    assert refund_made_back(raised) is False
    assert Refund.objects.get(pk=held.pk).status == RefundStatus.ERROR
    assert charge_of(cart).amount_refunded == 0


def test_a_resumed_refund_whose_resend_never_left_stays_open_if_the_ledger_is_unreadable():
    cart = paid_cart()
    left_open_and_landed(cart, "r1")

    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", unavailable(), key="r1", find=[unavailable()])

    assert Refund.objects.get().status == RefundStatus.UNKNOWN
    assert charge_of(cart).amount_refunded == Decimal("3.00")


def test_a_resumed_refund_whose_earlier_request_may_still_land_is_not_closed_on_a_ledger_miss():
    # The resend never left, the ledger has nothing yet, but the timed-out request of the
    # first call may still be processed: releasing the hold could refund twice.
    cart = paid_cart()
    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", timeout(), key="r1", find=[NOT_FOUND])

    with pytest.raises(RefundOutcomeUnknownError) as raised:
        refund(cart, "3.00", unavailable(), key="r1", find=[NOT_FOUND])

    assert refund_made_back(raised) is None
    assert Refund.objects.get().status == RefundStatus.UNKNOWN
    assert charge_of(cart).amount_refunded == Decimal("3.00")


@pytest.mark.parametrize(
    ("error", "ledger"),
    [(timeout, NOT_FOUND), (connection_lost, unavailable()), (timeout, unavailable())],
    ids=["timeout_not_found_yet", "ledger_unreadable", "timeout_ledger_unreadable"],
)
def test_a_refund_that_may_have_been_made_stays_open_and_keeps_its_hold(error, ledger):
    cart = paid_cart("20.00")

    with pytest.raises(RefundOutcomeUnknownError) as raised:
        refund(cart, "15.00", error(), find=[ledger])

    assert raised.value.status_code == 504
    assert refund_made_back(raised) is None
    held = Refund.objects.get()
    assert (held.status, held.error_code) == (RefundStatus.UNKNOWN, ErrorCode.OUTCOME_UNKNOWN)
    assert charge_of(cart).amount_refunded == Decimal("15.00")
    assert cart.payment_status == PaymentStatus.SUCCESS  # nothing counted as given back yet
    with pytest.raises(RefundExceedsCapturedError):  # the held 15.00 counts
        refund(cart, "5.01")


def test_a_ledger_refund_that_does_not_match_leaves_the_refund_open():
    cart = paid_cart()

    def other(key):
        return utils.RefundResult(
            refund_id="re_x",
            payment_id=charge_of(cart).provider_payment_id,
            amount=Decimal("9.99"),
            currency="USD",
            status=utils.RefundOutcome.SUCCEEDED,
            idempotency_key=key,
            replayed=False,
        )

    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", connection_lost(), find=[other])

    assert Refund.objects.get().error_code == ErrorCode.ANSWER_MISMATCH


def test_a_refund_answered_about_another_refund_keeps_its_in_flight_window():
    # An answer about something else proves nothing of this refund (as for a payment):
    # an empty ledger next time is no proof that nothing was given back while a request
    # of it may still land.
    cart = paid_cart()
    other = made_in_ledger(cart, amount="9.99")

    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", lambda request: other(request["idempotency_key"]), key="r1")
    held = Refund.objects.get()
    assert (held.status, held.error_code) == (RefundStatus.UNKNOWN, ErrorCode.ANSWER_MISMATCH)
    assert held.in_flight_until is not None

    with pytest.raises(RefundOutcomeUnknownError) as raised:
        refund(cart, "3.00", unavailable(), key="r1", find=[NOT_FOUND])

    assert refund_made_back(raised) is None
    assert Refund.objects.get().status == RefundStatus.UNKNOWN


# --- provider slots -----------------------------------------------------------------------


def test_a_busy_process_refuses_a_new_refund_before_anything_is_reserved(settings):
    settings.PAYMENT_MAX_IN_FLIGHT = 1
    cart = paid_cart()

    with provider_slot(), pytest.raises(ProviderBusyError) as raised:
        refund(cart, "3.00")

    assert raised.value.status_code == 503
    assert int(raised.value.headers["Retry-After"]) >= 1
    assert refund_made_back(raised) is False
    assert Refund.objects.count() == 0
    assert charge_of(cart).amount_refunded == 0


def test_a_busy_process_still_replays_a_settled_refund(settings):
    settings.PAYMENT_MAX_IN_FLIGHT = 1
    cart = paid_cart()
    first, _ = refund(cart, "3.00", REFUNDED, key="r1")

    with provider_slot():
        again, provider = refund(cart, "3.00", key="r1")

    assert again.pk == first.pk
    assert provider.requests == []


def test_the_same_key_after_a_refund_proven_not_made_tries_it_again_with_the_same_key():
    # Found by the soak: a retry of a refund that had ended 503 answered 200 with the
    # refund still "error". The same request again must try it again.
    cart = paid_cart()
    with pytest.raises(ProviderUnavailableError):
        refund(cart, "3.00", unavailable(), key="r1")
    failed = Refund.objects.get()

    again, provider = refund(cart, "3.00", REFUNDED, key="r1")

    assert again.pk == failed.pk
    assert again.status == RefundStatus.SUCCESS
    assert provider.requests[0]["idempotency_key"] == failed.idempotency_key
    assert charge_of(cart).amount_refunded == Decimal("3.00")
    assert cart.amount_refunded == Decimal("3.00")


def test_the_same_key_after_a_refund_proven_not_made_is_refused_once_nothing_is_left():
    cart = paid_cart("20.00")
    with pytest.raises(ProviderUnavailableError):
        refund(cart, "15.00", unavailable(), key="r1")
    refund(cart, "10.00", REFUNDED)

    with pytest.raises(RefundExceedsCapturedError, match=r"Only 10\.00 USD"):
        refund(cart, "15.00", key="r1")

    assert Refund.objects.get(request_key="r1").status == RefundStatus.ERROR
    assert charge_of(cart).amount_refunded == Decimal("10.00")


def test_the_same_key_after_a_declined_refund_replays_the_decline():
    cart = paid_cart()
    first, _ = refund(cart, "3.00", REFUND_FAILED, key="r1")

    again, provider = refund(cart, "3.00", key="r1")

    assert again.pk == first.pk
    assert again.status == RefundStatus.FAILED
    assert provider.requests == []


def test_a_busy_process_tries_a_refund_not_made_again_later_instead_of_replaying_it(settings):
    # Found by the soak: while busy, a retry of a refund that had ended 503 was answered
    # 200 with that refund still "error".
    settings.PAYMENT_MAX_IN_FLIGHT = 1
    cart = paid_cart()
    with pytest.raises(ProviderUnavailableError):
        refund(cart, "3.00", unavailable(), key="r1")

    with provider_slot(), pytest.raises(ProviderBusyError):
        refund(cart, "3.00", key="r1")

    made, _ = refund(cart, "3.00", REFUNDED, key="r1")
    assert made.status == RefundStatus.SUCCESS


def test_a_busy_process_never_says_nothing_was_refunded_for_a_refund_still_open(settings):
    # The first request's refund timed out (refund_made null); its retry, met by a busy
    # process, must not answer "nothing was refunded": the provider may have made it, and
    # a shop believing it would refund again under a new key.
    settings.PAYMENT_MAX_IN_FLIGHT = 1
    cart = paid_cart("20.00")
    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "5.00", timeout(), key="r1", find=[NOT_FOUND])

    with provider_slot(), pytest.raises(ProviderBusyError) as raised:
        refund(cart, "5.00", key="r1")

    assert raised.value.status_code == 503
    assert refund_made_back(raised) is None
    assert "not known yet" in raised.value.message
    assert Refund.objects.get().status == RefundStatus.UNKNOWN  # still held, unchanged
    with provider_slot(), pytest.raises(ProviderBusyError) as other_key:
        refund(cart, "1.00", key="r2")  # a new refund: nothing of it was sent
    assert refund_made_back(other_key) is False


# --- sums in Decimal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "parts"),
    [
        ("0.30", ["0.10", "0.20"]),
        ("0.60", ["0.10", "0.20", "0.30"]),
        ("1.10", ["0.70", "0.10", "0.30"]),
    ],
)
def test_refunds_that_add_up_exactly_to_the_charge_are_all_made(total, parts):
    # SQLite computes `amount_refunded + 0.10` in binary floating point: 0.10 + 0.20
    # there is 0.30000000000000004, which is more than a charge of 0.30.
    cart = paid_cart(total)

    for part in parts:
        made, _ = refund(cart, part, REFUNDED)
        assert made.status == RefundStatus.SUCCESS

    assert charge_of(cart).amount_refunded == Decimal(total)
    assert (cart.amount_refunded, cart.payment_status) == (Decimal(total), "refunded")
    with pytest.raises(RefundExceedsCapturedError):
        refund(cart, "0.01")


def test_a_hold_released_after_another_is_exact():
    cart = paid_cart("0.30")
    refund(cart, "0.10", REFUNDED)
    with pytest.raises(ProviderUnavailableError):
        refund(cart, "0.10", unavailable())  # held, then released

    made, _ = refund(cart, None, REFUNDED)  # everything left

    assert made.amount == Decimal("0.20")
    assert charge_of(cart).amount_refunded == Decimal("0.30")
    assert cart.payment_status == "refunded"


# --- refunds by line (payments/tests/test_refund_lines.py: the same through the API) ------


def paid_lines() -> tuple[Cart, CartLine, CartLine]:
    """Tea 3 × 3.00 and a mug 10.00 (19.00), 1.00 off: tea pays 8.53, the mug 9.47."""
    cart = itemized_cart(("TEA", 3, "3.00"), ("MUG", 1, "10.00"))
    cart_apply_discount(cart=cart, discount=DiscountFactory(value=Decimal("1")))
    cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    tea, mug = cart.lines.order_by("id")
    return cart, tea, mug


def refund_lines(cart: Cart, *lines: tuple[int, int], steps=(REFUNDED,), **script):
    provider = ScriptedProvider(refund=steps, **script)
    made = refund_create(
        cart=cart,
        lines=[{"line_id": line_id, "quantity": quantity} for line_id, quantity in lines],
        api=provider,
    )
    return made, provider


def given_back(refund: Refund) -> list[tuple[int, int, Decimal]]:
    return [(row.line_id, row.quantity, row.amount) for row in refund.lines.all()]


def test_units_of_a_line_give_back_what_they_were_paid_after_the_discount():
    cart, tea, mug = paid_lines()
    assert (tea.total, mug.total) == (Decimal("8.53"), Decimal("9.47"))

    made, provider = refund_lines(cart, (tea.pk, 1))

    assert made.amount == Decimal("2.84")  # 8.53 / 3, rounded down
    assert provider.requests[0]["amount"] == Decimal("2.84")
    assert given_back(made) == [(tea.pk, 1, Decimal("2.84"))]
    assert (cart.payment_status, cart.amount_refunded) == ("partially_refunded", Decimal("2.84"))


def test_a_line_refunded_unit_by_unit_gives_back_exactly_its_total():
    cart, tea, mug = paid_lines()

    amounts = [refund_lines(cart, (tea.pk, 1))[0].amount for _ in range(3)]

    assert amounts == [Decimal("2.84"), Decimal("2.84"), Decimal("2.85")]
    assert sum(amounts) == tea.total
    refund_lines(cart, (mug.pk, 1))
    assert (cart.payment_status, cart.amount_refunded) == ("refunded", Decimal("18.00"))


def test_units_of_several_lines_in_one_refund_add_up():
    cart, tea, mug = paid_lines()

    made, _ = refund_lines(cart, (tea.pk, 2), (mug.pk, 1))

    assert made.amount == Decimal("15.15")  # 5.68 + 9.47
    assert given_back(made) == [
        (tea.pk, 2, Decimal("5.68")),
        (mug.pk, 1, Decimal("9.47")),
    ]


def test_a_line_named_twice_in_one_refund_gives_back_the_units_of_both():
    cart, tea, _ = paid_lines()

    made, _ = refund_lines(cart, (tea.pk, 1), (tea.pk, 1))

    assert given_back(made) == [(tea.pk, 2, Decimal("5.68"))]
    with pytest.raises(RefundExceedsLineError):
        refund_lines(cart, (tea.pk, 2))


def test_units_are_never_given_back_twice():
    cart, tea, _ = paid_lines()
    refund_lines(cart, (tea.pk, 2))

    with pytest.raises(RefundExceedsLineError) as raised:
        refund_lines(cart, (tea.pk, 2), steps=())

    assert raised.value.status_code == 409
    assert raised.value.message == (
        f"Only 1 of the 3 units of line {tea.pk} (TEA) are left to refund."
    )
    assert Refund.objects.count() == 1
    assert charge_of(cart).amount_refunded == Decimal("5.68")
    last, _ = refund_lines(cart, (tea.pk, 1))
    assert last.amount == Decimal("2.85")


def test_units_given_back_on_another_cart_do_not_count_on_this_one():
    cart, tea, _ = paid_lines()
    other, other_tea, _ = paid_lines()
    refund_lines(other, (other_tea.pk, 3))

    made, _ = refund_lines(cart, (tea.pk, 3))

    assert made.amount == Decimal("8.53")


def test_units_of_a_refund_whose_outcome_is_not_known_are_not_left_to_give_back():
    cart, tea, _ = paid_lines()
    with pytest.raises(RefundOutcomeUnknownError):
        refund_lines(cart, (tea.pk, 3), steps=[timeout()], find=[NOT_FOUND])

    with pytest.raises(RefundExceedsLineError, match="Only 0 of the 3 units"):
        refund_lines(cart, (tea.pk, 1), steps=())


@pytest.mark.parametrize(
    ("outcome", "status"),
    [(REFUND_FAILED, RefundStatus.FAILED), (unavailable(), RefundStatus.ERROR)],
    ids=["declined", "never_sent"],
)
def test_units_of_a_refund_that_gave_nothing_back_are_left_to_give_back(outcome, status):
    cart, tea, _ = paid_lines()
    with contextlib.suppress(ProviderUnavailableError):  # never sent: a 503
        refund_lines(cart, (tea.pk, 3), steps=[outcome])
    assert Refund.objects.get().status == status

    made, _ = refund_lines(cart, (tea.pk, 3))

    assert (made.status, made.amount) == (RefundStatus.SUCCESS, Decimal("8.53"))


def test_lines_of_a_cart_without_lines_are_refused():
    cart = paid_cart()

    with pytest.raises(ValidationError) as raised:
        refund_lines(cart, (1, 1), steps=())

    assert raised.value.error_dict["lines"][0].code == "cart_not_itemized"
    assert Refund.objects.count() == 0


def test_a_line_of_another_cart_is_refused_naming_where_it_was_asked():
    cart, tea, _ = paid_lines()
    _, other_tea, _ = paid_lines()

    with pytest.raises(ValidationError) as raised:
        refund_lines(cart, (tea.pk, 1), (other_tea.pk, 1), steps=())

    assert raised.value.error_dict["lines.1.line_id"][0].code == "not_found"
    assert Refund.objects.count() == 0


def test_an_amount_and_lines_together_are_refused():
    cart, tea, _ = paid_lines()

    with pytest.raises(ValidationError) as raised:
        refund_create(
            cart=cart,
            amount=Decimal("1.00"),
            lines=[{"line_id": tea.pk, "quantity": 1}],
            api=ScriptedProvider(),
        )

    assert raised.value.error_dict["lines"][0].code == "amount_and_lines"
    assert Refund.objects.count() == 0
