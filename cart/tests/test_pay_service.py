"""Paying a cart exactly once (`cart.services.cart_pay`) against a scripted provider.

The provider is a `ScriptedProvider` passed as `api=`: it records every charge request and
ledger lookup and plays back the answers (or errors) a test scripts for it. The real
provider process is exercised in `test_pay_integration.py`; here every branch of the
state machine and of the service is driven deterministically.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

import utils
from cart.errors import (
    CartPaidError,
    CartPaymentInProgressError,
    IdempotencyKeyReusedError,
    InvalidPaymentTransitionError,
    PaymentOutcomeUnknownError,
    ProviderBadAnswerError,
    ProviderTimeoutError,
    ProviderTroubleError,
    ProviderUnavailableError,
)
from cart.models import Cart, PaymentStatus
from cart.services import cart_apply_discount, cart_pay
from cart.tests.factories import CartFactory
from discount.tests.factories import DiscountFactory
from payments.models import Payment, PaymentAttemptStatus

pytestmark = pytest.mark.django_db


# --- the scripted provider ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A payment the provider processed, built from the request (or the attempt) it answers.

    `decline_code` None means charged; `amount`, `currency`, `cart_id` replace what was
    asked for, to script an answer about some other payment.
    """

    decline_code: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    cart_id: str | None = None


CHARGED = Answer()
NOT_FOUND = None


def declined(code: str = "insufficient_funds") -> Answer:
    return Answer(decline_code=code)


class ScriptedProvider:
    """Stands in for `utils.PaymentAPI`: `request_payment` and `find_payment` play their
    scripts in order (`ledger` scripts lookups by idempotency key instead). A step is an
    `Answer`, a `utils.PaymentResult`, None (ledger: no such payment), an exception to
    raise, or a callable taking the request. Every call is recorded."""

    def __init__(self, *, pay=(), find=(), ledger=None):
        self.pay_script = list(pay)
        self.find_script = list(find)
        self.ledger = dict(ledger or {})  # find_payment steps by key, in any order
        self.requests: list[dict] = []
        self.lookups: list[str] = []
        self.issued: list[str] = []

    def request_payment(self, **request) -> utils.PaymentResult:
        self.requests.append(request)
        assert self.pay_script, f"unexpected charge request {request}"
        return self._play(self.pay_script.pop(0), request)

    def find_payment(self, *, idempotency_key: str) -> utils.PaymentResult | None:
        self.lookups.append(idempotency_key)
        if idempotency_key in self.ledger:
            step = self.ledger.pop(idempotency_key)
        else:
            assert self.find_script, f"unexpected ledger lookup {idempotency_key}"
            step = self.find_script.pop(0)
        attempt = Payment.objects.get(idempotency_key=idempotency_key)
        request = {
            "cart_id": str(attempt.cart_id),
            "amount": attempt.amount,
            "currency": attempt.currency,
            "idempotency_key": idempotency_key,
            "payment_method": attempt.payment_method or None,
        }
        return self._play(step, request)

    def _play(self, step, request: dict):
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Answer):
            return self._result(step, request)
        if callable(step):
            return step(request)
        return step  # a PaymentResult or None

    def _result(self, answer: Answer, request: dict) -> utils.PaymentResult:
        self.issued.append(f"pay_{len(self.issued) + 1}")
        return utils.PaymentResult(
            payment_id=self.issued[-1],
            cart_id=answer.cart_id or request["cart_id"],
            amount=answer.amount if answer.amount is not None else request["amount"],
            currency=answer.currency or request["currency"],
            status=(
                utils.PaymentOutcome.FAILED
                if answer.decline_code
                else utils.PaymentOutcome.SUCCESS
            ),
            decline_code=answer.decline_code,
            payment_method=request["payment_method"] or "pm_card_default",
            idempotency_key=request["idempotency_key"],
            replayed=False,
        )


def timeout() -> utils.PaymentProviderTimeoutError:
    return utils.PaymentProviderTimeoutError("read timeout; may have been processed")


def unavailable() -> utils.PaymentProviderUnavailableError:
    return utils.PaymentProviderUnavailableError("unavailable after 3 attempts: 503")


def bad_answer() -> utils.PaymentProviderProtocolError:
    return utils.PaymentProviderProtocolError("payment provider answered invalid JSON")


class WorkerCrash(Exception):
    """The worker died while talking to the provider: the attempt is left `processing`."""


def status_in_db(cart: Cart) -> str:
    return Cart.objects.get(pk=cart.pk).payment_status


def leave_unknown(cart: Cart, **pay_options) -> Payment:
    """Pay the cart into an `unknown` attempt: a timeout, then an unreadable ledger."""
    provider = ScriptedProvider(pay=[timeout()], find=[unavailable()])
    with pytest.raises(PaymentOutcomeUnknownError):
        cart_pay(cart=cart, api=provider, **pay_options)
    return cart.payments.get(status=PaymentAttemptStatus.UNKNOWN)


def leave_processing(cart: Cart) -> Payment:
    """Pay the cart into a `processing` attempt whose worker crashed mid-request."""
    provider = ScriptedProvider(pay=[WorkerCrash()])
    with pytest.raises(WorkerCrash):
        cart_pay(cart=cart, api=provider)
    return cart.payments.get(status=PaymentAttemptStatus.PROCESSING)


def make_stale(payment: Payment) -> None:
    long_ago = timezone.now() - timedelta(seconds=settings.PAYMENT_ATTEMPT_STALE_SECONDS + 5)
    Payment.objects.filter(pk=payment.pk).update(updated=long_ago)


# --- the cart's state machine -------------------------------------------------------------

S = PaymentStatus
ALLOWED_MOVES = {
    (S.PENDING, S.PROCESSING),
    (S.PROCESSING, S.SUCCESS),
    (S.PROCESSING, S.FAILED),
    (S.PROCESSING, S.PENDING),
    (S.FAILED, S.PROCESSING),
}
ALL_MOVES = list(itertools.product(S.values, repeat=2))


def refusal_for(source: str, target: str) -> type[Exception]:
    if source == S.SUCCESS:
        return CartPaidError
    if source == S.PROCESSING:  # only processing -> processing is refused
        return CartPaymentInProgressError
    return InvalidPaymentTransitionError


@pytest.mark.parametrize(("source", "target"), ALL_MOVES, ids=[f"{a}->{b}" for a, b in ALL_MOVES])
def test_move_to_allows_exactly_the_state_machine_moves(source, target):
    cart = CartFactory(payment_status=source)

    if (source, target) in ALLOWED_MOVES:
        cart.move_to(target)
        assert cart.payment_status == target
    else:
        refusal = refusal_for(source, target)
        with pytest.raises(refusal) as refused:
            cart.move_to(target)
        assert type(refused.value) is refusal  # not merely a subclass of it
        assert cart.payment_status == source
    assert status_in_db(cart) == source  # move_to never saves


def test_the_expected_moves_are_the_declared_transitions():
    from cart.models import PAYMENT_TRANSITIONS

    declared = {(a, b) for a, targets in PAYMENT_TRANSITIONS.items() for b in targets}
    assert declared == ALLOWED_MOVES


# --- outcomes -------------------------------------------------------------------------------


def test_a_charge_settles_the_attempt_and_the_cart_as_success():
    cart = CartFactory(total=Decimal("12.34"))
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart_pay(cart=cart, api=provider)

    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.provider_payment_id == provider.issued[0]
    assert payment.completed is not None
    assert (payment.error, payment.decline_code) == ("", "")
    assert payment.amount == Decimal("12.34")
    assert Payment.objects.get() == payment
    assert Payment.objects.get().status == PaymentAttemptStatus.SUCCESS
    assert cart.payment_status == PaymentStatus.SUCCESS
    assert status_in_db(cart) == PaymentStatus.SUCCESS


def test_the_charge_request_carries_the_cart_the_exact_amount_and_the_attempt_key():
    cart = CartFactory(total=Decimal("12.34"), currency="EUR")
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart_pay(cart=cart, api=provider)

    [sent] = provider.requests
    assert sent == {
        "cart_id": str(cart.pk),
        "amount": Decimal("12.34"),
        "currency": "EUR",
        "idempotency_key": payment.idempotency_key,
        "payment_method": None,
    }
    assert isinstance(sent["amount"], Decimal)
    assert payment.idempotency_key.startswith(f"cart-{cart.pk}-")


def test_the_payment_method_and_the_callers_key_reach_the_provider():
    cart = CartFactory()
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart_pay(
        cart=cart, payment_method="pm_card_visa", idempotency_key="order-42", api=provider
    )

    [sent] = provider.requests
    assert sent["payment_method"] == "pm_card_visa"
    assert sent["idempotency_key"] == f"cart-{cart.pk}-order-42" == payment.idempotency_key
    assert payment.payment_method == "pm_card_visa"


def test_each_attempt_without_a_callers_key_gets_its_own_provider_key():
    cart = CartFactory(total=Decimal("25.00"))
    provider = ScriptedProvider(pay=[declined(), CHARGED])

    first = cart_pay(cart=cart, api=provider)
    second = cart_pay(cart=cart, api=provider)

    assert first.idempotency_key != second.idempotency_key
    assert [r["idempotency_key"] for r in provider.requests] == [
        first.idempotency_key,
        second.idempotency_key,
    ]


def test_a_decline_fails_the_attempt_and_the_cart_without_raising():
    cart = CartFactory(total=Decimal("25.00"))
    provider = ScriptedProvider(pay=[declined("insufficient_funds")])

    payment = cart_pay(cart=cart, api=provider)

    assert payment.status == PaymentAttemptStatus.FAILED
    assert payment.decline_code == "insufficient_funds"
    assert payment.provider_payment_id == provider.issued[0]
    assert payment.completed is not None
    assert cart.payment_status == PaymentStatus.FAILED
    assert status_in_db(cart) == PaymentStatus.FAILED


def test_a_declined_cart_can_be_paid_again_with_a_new_attempt():
    cart = CartFactory(total=Decimal("25.00"))
    provider = ScriptedProvider(pay=[declined(), CHARGED])
    cart_pay(cart=cart, api=provider)

    payment = cart_pay(cart=cart, payment_method="pm_card_visa", api=provider)

    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert cart.payment_status == PaymentStatus.SUCCESS
    assert [p.status for p in cart.payments.all()] == ["failed", "success"]


# --- provider unavailable -------------------------------------------------------------------


def test_an_unavailable_provider_ends_the_attempt_in_error_and_the_cart_back_to_pending():
    cart = CartFactory()
    error = unavailable()
    provider = ScriptedProvider(pay=[error])

    with pytest.raises(ProviderUnavailableError) as raised:
        cart_pay(cart=cart, api=provider)

    assert raised.value.payment_taken is False
    assert raised.value.extra["payment_taken"] is False
    assert raised.value.__cause__ is error
    payment = Payment.objects.get()
    assert payment.status == PaymentAttemptStatus.ERROR
    assert payment.error == error.message
    assert payment.completed is not None
    assert provider.lookups == []  # nothing reached the provider: no need to ask the ledger
    assert cart.payment_status == PaymentStatus.PENDING
    assert status_in_db(cart) == PaymentStatus.PENDING


def test_an_unavailable_provider_puts_a_declined_cart_back_to_failed():
    cart = CartFactory(total=Decimal("25.00"))
    provider = ScriptedProvider(pay=[declined(), unavailable()])
    cart_pay(cart=cart, api=provider)

    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, api=provider)

    assert [p.status for p in cart.payments.all()] == ["failed", "error"]
    assert cart.payment_status == PaymentStatus.FAILED
    assert status_in_db(cart) == PaymentStatus.FAILED


def test_after_an_unavailable_provider_the_cart_can_be_paid():
    cart = CartFactory()
    provider = ScriptedProvider(pay=[unavailable(), CHARGED])
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, api=provider)

    payment = cart_pay(cart=cart, api=provider)

    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert cart.payment_status == PaymentStatus.SUCCESS


# --- timeouts and bad answers: the ledger decides -------------------------------------------

MAYBE_CHARGED = [
    pytest.param(timeout, ProviderTimeoutError, id="timeout"),
    pytest.param(bad_answer, ProviderBadAnswerError, id="bad_answer"),
]


@pytest.mark.parametrize(("provider_error", "not_found_error"), MAYBE_CHARGED)
def test_a_charge_found_in_the_ledger_settles_the_attempt_as_success(
    provider_error, not_found_error
):
    cart = CartFactory(total=Decimal("10.00"))
    provider = ScriptedProvider(pay=[provider_error()], find=[CHARGED])

    payment = cart_pay(cart=cart, api=provider)

    assert provider.lookups == [payment.idempotency_key]
    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.provider_payment_id == provider.issued[0]
    assert payment.error == ""
    assert cart.payment_status == PaymentStatus.SUCCESS
    assert status_in_db(cart) == PaymentStatus.SUCCESS


@pytest.mark.parametrize(("provider_error", "not_found_error"), MAYBE_CHARGED)
def test_a_decline_found_in_the_ledger_settles_the_attempt_as_failed(
    provider_error, not_found_error
):
    cart = CartFactory(total=Decimal("25.00"))
    provider = ScriptedProvider(pay=[provider_error()], find=[declined("generic_decline")])

    payment = cart_pay(cart=cart, api=provider)

    assert payment.status == PaymentAttemptStatus.FAILED
    assert payment.decline_code == "generic_decline"
    assert cart.payment_status == PaymentStatus.FAILED


def test_a_timeout_with_nothing_in_the_ledger_yet_keeps_the_attempt_open():
    # The timed-out request may still land at the provider: closing the attempt would let
    # the next pay send a new key and charge twice. It stays open; the next pay resumes it.
    cart = CartFactory()
    provider = ScriptedProvider(pay=[timeout(), Answer()], find=[NOT_FOUND])

    with pytest.raises(ProviderTimeoutError) as raised:
        cart_pay(cart=cart, api=provider)

    assert raised.value.payment_taken is False
    held = Payment.objects.get()
    assert held.status == PaymentAttemptStatus.UNKNOWN
    assert status_in_db(cart) == PaymentStatus.PROCESSING

    cart_pay(cart=cart, api=provider)

    assert [r["idempotency_key"] for r in provider.requests] == [held.idempotency_key] * 2
    assert Payment.objects.get().status == PaymentAttemptStatus.SUCCESS


@pytest.mark.parametrize("error", [unavailable, bad_answer], ids=["unavailable", "bad_answer"])
def test_a_resumed_attempt_is_never_closed_on_a_ledger_miss(error):
    # An earlier request of a resumed attempt may still land: it stays open.
    cart = CartFactory()
    leave_unknown(cart)
    provider = ScriptedProvider(pay=[error()], find=[NOT_FOUND])

    with pytest.raises(ProviderTroubleError):
        cart_pay(cart=cart, api=provider)

    assert Payment.objects.get().status == PaymentAttemptStatus.UNKNOWN
    assert status_in_db(cart) == PaymentStatus.PROCESSING


def test_a_nonsense_answer_with_nothing_in_the_ledger_means_nothing_was_charged():
    cart = CartFactory()
    error = bad_answer()
    provider = ScriptedProvider(pay=[error], find=[NOT_FOUND])

    with pytest.raises(ProviderBadAnswerError) as raised:
        cart_pay(cart=cart, api=provider)

    assert type(raised.value) is ProviderBadAnswerError
    assert raised.value.payment_taken is False
    payment = Payment.objects.get()
    assert provider.lookups == [payment.idempotency_key]
    assert payment.status == PaymentAttemptStatus.ERROR
    assert payment.error == error.message
    assert cart.payment_status == PaymentStatus.PENDING
    assert status_in_db(cart) == PaymentStatus.PENDING


@pytest.mark.parametrize(("provider_error", "not_found_error"), MAYBE_CHARGED)
@pytest.mark.parametrize(
    "ledger_error",
    [
        pytest.param(unavailable, id="ledger_unavailable"),
        pytest.param(timeout, id="ledger_timeout"),
        pytest.param(bad_answer, id="ledger_bad_answer"),
        pytest.param(lambda: utils.PaymentProviderError("request failed"), id="ledger_error"),
    ],
)
def test_an_unreadable_ledger_leaves_the_attempt_unknown_and_the_cart_frozen(
    provider_error, not_found_error, ledger_error
):
    cart = CartFactory()
    error, lookup_error = provider_error(), ledger_error()
    provider = ScriptedProvider(pay=[error], find=[lookup_error])

    with pytest.raises(PaymentOutcomeUnknownError) as raised:
        cart_pay(cart=cart, api=provider)

    assert raised.value.payment_taken is None
    payment = Payment.objects.get()
    assert payment.status == PaymentAttemptStatus.UNKNOWN
    assert error.message in payment.error
    assert lookup_error.message in payment.error
    assert payment.completed is None
    assert cart.payment_status == PaymentStatus.PROCESSING
    assert status_in_db(cart) == PaymentStatus.PROCESSING
    with pytest.raises(CartPaymentInProgressError):
        cart_apply_discount(cart=cart, discount=DiscountFactory())


# --- answers about another payment ------------------------------------------------------------

OTHER_PAYMENT = [
    pytest.param(Answer(amount=Decimal("19.99")), id="other_amount"),
    pytest.param(Answer(currency="EUR"), id="other_currency"),
    pytest.param(Answer(cart_id="a-different-cart"), id="other_cart"),
]


@pytest.mark.parametrize("answer", OTHER_PAYMENT)
def test_a_ledger_payment_that_does_not_match_the_attempt_leaves_it_unknown(answer):
    cart = CartFactory(total=Decimal("20.00"), currency="USD")
    provider = ScriptedProvider(pay=[timeout()], find=[answer])

    with pytest.raises(PaymentOutcomeUnknownError):
        cart_pay(cart=cart, api=provider)

    payment = Payment.objects.get()
    assert payment.status == PaymentAttemptStatus.UNKNOWN
    assert "does not match" in payment.error
    assert payment.provider_payment_id == ""
    assert status_in_db(cart) == PaymentStatus.PROCESSING


@pytest.mark.parametrize("answer", OTHER_PAYMENT)
def test_a_charge_answer_that_does_not_match_the_attempt_leaves_it_unknown(answer):
    cart = CartFactory(total=Decimal("20.00"), currency="USD")
    provider = ScriptedProvider(pay=[answer])

    with pytest.raises(PaymentOutcomeUnknownError):
        cart_pay(cart=cart, api=provider)

    assert Payment.objects.get().status == PaymentAttemptStatus.UNKNOWN
    assert status_in_db(cart) == PaymentStatus.PROCESSING


# --- resuming an open attempt -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_key", "second_key", "second_method"),
    [
        pytest.param(None, None, None, id="no_key"),
        pytest.param("order-1", "order-1", None, id="same_key"),
        pytest.param(None, None, "pm_card_visa", id="no_key_other_method"),
        pytest.param("order-1", "order-2", "pm_card_visa", id="other_key_other_method"),
    ],
)
def test_the_next_pay_resumes_an_unknown_attempt_with_its_own_key_and_amount(
    first_key, second_key, second_method
):
    cart = CartFactory(total=Decimal("17.50"))
    attempt = leave_unknown(cart, idempotency_key=first_key)
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart_pay(
        cart=cart, payment_method=second_method, idempotency_key=second_key, api=provider
    )

    [sent] = provider.requests
    assert sent["idempotency_key"] == attempt.idempotency_key
    assert sent["amount"] == attempt.amount == Decimal("17.50")
    assert sent["payment_method"] is None  # the attempt's own body, not the new request's
    assert payment.pk == attempt.pk
    assert Payment.objects.count() == 1
    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.error == ""
    assert cart.payment_status == PaymentStatus.SUCCESS


def test_resuming_an_unknown_attempt_may_find_it_unknown_again():
    cart = CartFactory()
    attempt = leave_unknown(cart)
    provider = ScriptedProvider(pay=[timeout()], find=[unavailable()])

    with pytest.raises(PaymentOutcomeUnknownError):
        cart_pay(cart=cart, api=provider)

    assert provider.requests[0]["idempotency_key"] == attempt.idempotency_key
    assert provider.lookups == [attempt.idempotency_key]
    assert Payment.objects.get().status == PaymentAttemptStatus.UNKNOWN
    assert status_in_db(cart) == PaymentStatus.PROCESSING


def test_an_attempt_being_sent_right_now_refuses_a_second_pay_without_calling_the_provider():
    cart = CartFactory()
    leave_processing(cart)
    provider = ScriptedProvider(pay=[CHARGED])

    with pytest.raises(CartPaymentInProgressError) as raised:
        cart_pay(cart=cart, api=provider)

    assert raised.value.status_code == 409
    assert provider.requests == []
    assert Payment.objects.get().status == PaymentAttemptStatus.PROCESSING
    assert status_in_db(cart) == PaymentStatus.PROCESSING


def test_an_abandoned_processing_attempt_is_resumed_with_its_own_key():
    cart = CartFactory(total=Decimal("8.00"))
    attempt = leave_processing(cart)
    make_stale(attempt)
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart_pay(cart=cart, idempotency_key="another-request", api=provider)

    [sent] = provider.requests
    assert (sent["idempotency_key"], sent["amount"]) == (attempt.idempotency_key, attempt.amount)
    assert payment.pk == attempt.pk
    assert Payment.objects.count() == 1
    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert status_in_db(cart) == PaymentStatus.SUCCESS


# --- the caller's idempotency key ------------------------------------------------------------


def test_the_same_key_after_a_success_returns_that_payment_without_calling_the_provider():
    cart = CartFactory()
    stale_copy = Cart.objects.get(pk=cart.pk)
    first = cart_pay(cart=cart, idempotency_key="k", api=ScriptedProvider(pay=[CHARGED]))
    provider = ScriptedProvider()

    again = cart_pay(cart=stale_copy, idempotency_key="k", api=provider)

    assert provider.requests == []
    assert again == first
    assert again.status == PaymentAttemptStatus.SUCCESS
    assert again.provider_payment_id == first.provider_payment_id
    assert stale_copy.payment_status == PaymentStatus.SUCCESS  # brought up to date
    assert Payment.objects.count() == 1


def test_the_same_key_after_a_decline_returns_the_decline_without_calling_the_provider():
    cart = CartFactory(total=Decimal("25.00"))
    first = cart_pay(cart=cart, idempotency_key="k", api=ScriptedProvider(pay=[declined()]))
    provider = ScriptedProvider()

    again = cart_pay(cart=cart, idempotency_key="k", api=provider)

    assert provider.requests == []
    assert again == first
    assert again.status == PaymentAttemptStatus.FAILED
    assert cart.payment_status == PaymentStatus.FAILED


def test_the_same_key_with_another_payment_method_is_refused():
    cart = CartFactory()
    cart_pay(cart=cart, idempotency_key="k", api=ScriptedProvider(pay=[CHARGED]))
    provider = ScriptedProvider()

    with pytest.raises(IdempotencyKeyReusedError):
        cart_pay(cart=cart, idempotency_key="k", payment_method="pm_card_visa", api=provider)

    assert provider.requests == []


def test_the_same_key_after_nothing_was_charged_reopens_that_attempt():
    cart = CartFactory(total=Decimal("10.00"))
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, idempotency_key="k", api=ScriptedProvider(pay=[unavailable()]))
    attempt = Payment.objects.get()
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart_pay(cart=cart, idempotency_key="k", api=provider)

    [sent] = provider.requests
    assert sent["idempotency_key"] == attempt.idempotency_key == f"cart-{cart.pk}-k"
    assert payment.pk == attempt.pk
    assert Payment.objects.count() == 1
    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.error == ""
    assert cart.payment_status == PaymentStatus.SUCCESS


def test_the_same_key_after_nothing_was_charged_is_refused_once_the_total_changed():
    cart = CartFactory(total=Decimal("10.00"))
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, idempotency_key="k", api=ScriptedProvider(pay=[unavailable()]))
    Cart.objects.filter(pk=cart.pk).update(subtotal=Decimal("12.00"), total=Decimal("12.00"))
    provider = ScriptedProvider()

    with pytest.raises(IdempotencyKeyReusedError):
        cart_pay(cart=cart, idempotency_key="k", api=provider)

    assert provider.requests == []
    assert Payment.objects.get().status == PaymentAttemptStatus.ERROR
    assert status_in_db(cart) == PaymentStatus.PENDING


def test_the_same_key_for_another_cart_is_another_request():
    one, two = CartFactory(), CartFactory()
    provider = ScriptedProvider(pay=[CHARGED, CHARGED])

    first = cart_pay(cart=one, idempotency_key="same", api=provider)
    second = cart_pay(cart=two, idempotency_key="same", api=provider)

    assert first.pk != second.pk
    assert [r["cart_id"] for r in provider.requests] == [str(one.pk), str(two.pk)]


# --- carts with nothing to charge -----------------------------------------------------------


def test_a_paid_cart_refuses_to_be_paid_again_without_calling_the_provider():
    cart = CartFactory()
    cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    provider = ScriptedProvider()

    with pytest.raises(CartPaidError):
        cart_pay(cart=cart, idempotency_key="new-request", api=provider)

    assert provider.requests == []
    assert Payment.objects.count() == 1


def test_a_zero_total_cart_is_paid_without_calling_the_provider():
    cart = CartFactory(total=Decimal("0.00"))
    provider = ScriptedProvider()

    payment = cart_pay(cart=cart, api=provider)

    assert provider.requests == []
    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.amount == Decimal("0")
    assert payment.provider_payment_id == ""
    assert cart.payment_status == PaymentStatus.SUCCESS
    assert status_in_db(cart) == PaymentStatus.SUCCESS


# --- the model entry point ----------------------------------------------------------------------


def test_cart_pay_method_delegates_to_the_service_and_updates_the_instance():
    cart = Cart(total=Decimal("10"), currency="USD", items_number=5)
    cart.save()
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart.pay(api=provider, payment_method="pm_card_visa", idempotency_key="k")

    assert isinstance(payment, Payment)
    assert payment.cart_id == cart.pk
    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.idempotency_key == f"cart-{cart.pk}-k"
    assert provider.requests[0]["payment_method"] == "pm_card_visa"
    assert cart.payment_status == PaymentStatus.SUCCESS


def test_cart_pay_method_returns_a_decline():
    cart = CartFactory(total=Decimal("25.00"))

    payment = cart.pay(api=ScriptedProvider(pay=[declined()]))

    assert payment.decline_code == "insufficient_funds"
    assert cart.payment_status == PaymentStatus.FAILED


# --- settling once ------------------------------------------------------------------------------


def settled_elsewhere_then(answer):
    """A provider call during which something else (reconcile) settles the attempt."""

    def call(request):
        Payment.objects.filter(idempotency_key=request["idempotency_key"]).update(
            status=PaymentAttemptStatus.SUCCESS,
            provider_payment_id="pay_reconciled",
            completed=timezone.now(),
        )
        Cart.objects.filter(pk=request["cart_id"]).update(payment_status=PaymentStatus.SUCCESS)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return call


def test_an_answer_arriving_after_the_attempt_was_settled_does_not_overwrite_it():
    cart = CartFactory(total=Decimal("25.00"))
    late_decline = settled_elsewhere_then(
        utils.PaymentResult(
            payment_id="pay_late",
            cart_id=str(cart.pk),
            amount=Decimal("25.00"),
            currency="USD",
            status=utils.PaymentOutcome.FAILED,
            decline_code="generic_decline",
            payment_method="pm_card_default",
            idempotency_key=None,
            replayed=False,
        )
    )

    payment = cart_pay(cart=cart, api=ScriptedProvider(pay=[late_decline]))

    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.provider_payment_id == "pay_reconciled"
    assert payment.decline_code == ""
    stored = Payment.objects.get()
    assert (stored.status, stored.provider_payment_id) == ("success", "pay_reconciled")
    assert cart.payment_status == PaymentStatus.SUCCESS
    assert status_in_db(cart) == PaymentStatus.SUCCESS


def test_a_ledger_miss_arriving_after_the_attempt_was_settled_does_not_reopen_the_cart():
    cart = CartFactory()
    provider = ScriptedProvider(pay=[settled_elsewhere_then(bad_answer())], find=[NOT_FOUND])

    payment = cart_pay(cart=cart, api=provider)

    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert cart.payment_status == PaymentStatus.SUCCESS
    stored = Payment.objects.get()
    assert (stored.status, stored.provider_payment_id) == ("success", "pay_reconciled")
    assert stored.error == ""
    assert status_in_db(cart) == PaymentStatus.SUCCESS


def test_a_key_that_resumed_another_attempt_replays_that_attempts_outcome():
    # Found by the soak test: a keyed request resumed an attempt left open by another
    # request; repeating the keyed request must replay that outcome, not pay anew.
    cart = CartFactory()
    left_open = leave_unknown(cart)

    first = cart_pay(cart=cart, idempotency_key="K", api=ScriptedProvider(pay=[declined()]))
    again = cart_pay(cart=cart, idempotency_key="K", api=ScriptedProvider())

    assert first.pk == again.pk == left_open.pk
    assert again.status == PaymentAttemptStatus.FAILED
    assert Payment.objects.count() == 1


def test_a_key_replays_with_its_own_payment_method_not_the_resumed_attempts():
    cart = CartFactory()
    leave_unknown(cart, payment_method="pm_card_chargeDeclined")
    cart_pay(cart=cart, idempotency_key="K", api=ScriptedProvider(pay=[declined()]))

    again = cart_pay(cart=cart, idempotency_key="K", api=ScriptedProvider())

    assert again.status == PaymentAttemptStatus.FAILED
    with pytest.raises(IdempotencyKeyReusedError):
        cart_pay(cart=cart, idempotency_key="K", payment_method="pm_card_visa")
