"""Settling attempts left open from the provider's ledger: `payments_reconcile` against a
scripted provider, and the `reconcile_payments` command against the real fake provider."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

import utils
from cart.models import Cart, PaymentStatus
from cart.services import cart_pay
from cart.tests.factories import CartFactory
from common.errors import ApplicationError
from payments import reconcile
from payments.errors import ProviderUnavailableError, RefundOutcomeUnknownError
from payments.models import ATTEMPT_MESSAGES, ErrorCode, Payment, PaymentAttemptStatus, Refund
from payments.reconcile import COUNTS, payments_reconcile
from payments.services import refund_create
from payments.tests.test_pay_service import (
    CHARGED,
    NOT_FOUND,
    REFUNDED,
    Answer,
    ScriptedProvider,
    bad_answer,
    declined,
    leave_processing,
    leave_unknown,
    timeout,
    unavailable,
)

pytestmark = pytest.mark.django_db

OLDER_THAN = timedelta(minutes=1)
ZERO = dict.fromkeys(COUNTS, 0)


def age(payment: Payment, by: timedelta) -> Payment:
    """Pretend nothing touched the attempt for `by` (and its requests stopped landing)."""
    then = timezone.now() - by
    Payment.objects.filter(pk=payment.pk).update(updated=then)
    Payment.objects.filter(pk=payment.pk, in_flight_until__isnull=False).update(
        in_flight_until=then + timedelta(seconds=settings.PAYMENT_ATTEMPT_STALE_SECONDS)
    )
    return payment


def open_attempt(status: str = PaymentAttemptStatus.UNKNOWN, *, idle=timedelta(minutes=5), **cart):
    """A cart with an open attempt in `status`, untouched for `idle`."""
    cart = CartFactory(**cart)
    if status == PaymentAttemptStatus.UNKNOWN:
        payment = leave_unknown(cart)
    else:
        payment = leave_processing(cart)
    return cart, age(payment, idle)


def counts(**nonzero) -> dict[str, int]:
    return {**ZERO, **nonzero}


def state(cart: Cart, payment: Payment) -> tuple[str, str]:
    return Payment.objects.get(pk=payment.pk).status, Cart.objects.get(pk=cart.pk).payment_status


OPEN_STATUSES = [
    pytest.param(PaymentAttemptStatus.UNKNOWN, id="unknown"),
    pytest.param(PaymentAttemptStatus.PROCESSING, id="abandoned_processing"),
]


# --- what the ledger says ---------------------------------------------------------------------


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_a_charge_in_the_ledger_settles_the_attempt_and_the_cart_as_success(status):
    cart, payment = open_attempt(status, total=Decimal("15.00"))
    provider = ScriptedProvider(find=[CHARGED])

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(success=1)
    assert provider.lookups == [payment.idempotency_key]
    assert provider.requests == []  # reconcile never charges
    assert state(cart, payment) == (PaymentAttemptStatus.SUCCESS, PaymentStatus.SUCCESS)
    settled = Payment.objects.get(pk=payment.pk)
    assert settled.provider_payment_id == provider.issued[0]
    assert settled.completed is not None
    assert settled.error == ""


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_a_decline_in_the_ledger_settles_the_attempt_and_the_cart_as_failed(status):
    cart, payment = open_attempt(status)
    provider = ScriptedProvider(find=[declined("generic_decline")])

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(failed=1)
    assert state(cart, payment) == (PaymentAttemptStatus.FAILED, PaymentStatus.FAILED)
    assert Payment.objects.get(pk=payment.pk).decline_code == "generic_decline"


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_nothing_in_the_ledger_ends_the_attempt_uncharged_and_the_cart_payable(status):
    cart, payment = open_attempt(status)
    provider = ScriptedProvider(find=[NOT_FOUND])

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(not_charged=1)
    assert state(cart, payment) == (PaymentAttemptStatus.ERROR, PaymentStatus.PENDING)
    closed = Payment.objects.get(pk=payment.pk)
    assert (closed.error_code, closed.error) == (
        ErrorCode.NOT_IN_LEDGER,
        ATTEMPT_MESSAGES[ErrorCode.NOT_IN_LEDGER],
    )
    assert closed.completed is not None
    paid = cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    assert paid.status == PaymentAttemptStatus.SUCCESS


def test_nothing_in_the_ledger_puts_a_declined_cart_back_to_failed():
    cart = CartFactory(total=Decimal("25.00"))
    cart_pay(cart=cart, api=ScriptedProvider(pay=[declined()]))
    payment = age(leave_unknown(cart), timedelta(minutes=5))

    result = payments_reconcile(older_than=OLDER_THAN, api=ScriptedProvider(find=[NOT_FOUND]))

    assert result == counts(not_charged=1)
    assert state(cart, payment) == (PaymentAttemptStatus.ERROR, PaymentStatus.FAILED)


@pytest.mark.parametrize("status", OPEN_STATUSES)
@pytest.mark.parametrize(
    "ledger_error",
    [
        pytest.param(unavailable, id="unavailable"),
        pytest.param(timeout, id="timeout"),
        pytest.param(bad_answer, id="bad_answer"),
        pytest.param(lambda: utils.PaymentProviderError("request failed"), id="error"),
    ],
)
def test_an_unreadable_ledger_leaves_the_attempt_open_and_the_cart_frozen(status, ledger_error):
    cart, payment = open_attempt(status)
    before = Payment.objects.get(pk=payment.pk)

    result = payments_reconcile(older_than=OLDER_THAN, api=ScriptedProvider(find=[ledger_error()]))

    assert result == counts(still_unknown=1)
    after = Payment.objects.get(pk=payment.pk)
    assert (after.status, after.error, after.updated) == (
        before.status,
        before.error,
        before.updated,
    )
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.PROCESSING


def test_each_attempt_is_settled_on_its_own_and_counted():
    charged_cart, charged = open_attempt()
    declined_cart, declined_attempt = open_attempt(PaymentAttemptStatus.PROCESSING)
    unreadable_cart, unreadable = open_attempt()
    missing_cart, missing = open_attempt()
    answers = {
        charged.idempotency_key: CHARGED,
        declined_attempt.idempotency_key: declined(),
        unreadable.idempotency_key: unavailable(),
        missing.idempotency_key: NOT_FOUND,
    }
    provider = ScriptedProvider(ledger=answers)

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert sorted(provider.lookups) == sorted(answers)
    assert provider.ledger == {}
    assert result == counts(success=1, failed=1, not_charged=1, still_unknown=1)
    assert state(charged_cart, charged) == ("success", "success")
    assert state(declined_cart, declined_attempt) == ("failed", "failed")
    assert state(unreadable_cart, unreadable) == ("unknown", "processing")
    assert state(missing_cart, missing) == ("error", "pending")


# --- which attempts are looked at ---------------------------------------------------------------


def test_only_attempts_untouched_for_longer_than_older_than_are_looked_at():
    old_cart, old = open_attempt(idle=timedelta(minutes=10))
    young_cart, young = open_attempt(idle=timedelta(seconds=30))
    provider = ScriptedProvider(find=[CHARGED])

    result = payments_reconcile(older_than=timedelta(minutes=1), api=provider)

    assert provider.lookups == [old.idempotency_key]
    assert result == counts(success=1)
    assert state(old_cart, old) == ("success", "success")
    assert state(young_cart, young) == ("unknown", "processing")


def test_a_fresh_processing_attempt_is_left_to_the_request_sending_it():
    cart = CartFactory()
    payment = leave_processing(cart)  # just now: its worker may still be waiting for the answer
    provider = ScriptedProvider()

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == ZERO
    assert provider.lookups == []
    assert state(cart, payment) == ("processing", "processing")


@pytest.mark.parametrize("older_than", [timedelta(0), timedelta(seconds=-5)])
def test_an_attempt_being_sent_is_never_closed_whatever_older_than_says(older_than):
    # `--older-than 0` while the service serves: the attempt's request may still be on
    # its way (its worker waits for the answer); an empty ledger proves nothing yet.
    cart = CartFactory()
    payment = leave_processing(cart)  # touched just now, as a pay being sent leaves it
    provider = ScriptedProvider(find=[NOT_FOUND])

    result = payments_reconcile(older_than=older_than, api=provider)

    assert result == counts(still_unknown=1)
    assert state(cart, payment) == ("processing", "processing")
    assert not cart.events.exists()  # no cart.payment_failed telling the shop nothing was taken


def test_a_refund_being_sent_is_never_closed_whatever_older_than_says():
    charged = refund_left_open_and_landed()
    Refund.objects.update(status="processing", updated=timezone.now(), in_flight_until=None)

    result = payments_reconcile(older_than=timedelta(0), api=ScriptedProvider(find=[NOT_FOUND]))

    assert result == counts(refunds_unknown=1)
    assert Refund.objects.get().status == "processing"
    assert Payment.objects.get(pk=charged.pk).amount_refunded == Decimal("5.00")


def test_older_than_defaults_to_the_stale_attempt_setting(settings):
    settings.PAYMENT_ATTEMPT_STALE_SECONDS = 120
    _, old = open_attempt(idle=timedelta(seconds=150))
    _, young = open_attempt(idle=timedelta(seconds=90))
    provider = ScriptedProvider(find=[NOT_FOUND])

    result = payments_reconcile(api=provider)

    assert provider.lookups == [old.idempotency_key]
    assert result == counts(not_charged=1)
    assert Payment.objects.get(pk=young.pk).status == PaymentAttemptStatus.UNKNOWN


def test_settled_attempts_are_ignored():
    long_ago = timedelta(days=1)
    paid = CartFactory()
    age(cart_pay(cart=paid, api=ScriptedProvider(pay=[CHARGED])), long_ago)
    refused = CartFactory(total=Decimal("25.00"))
    age(cart_pay(cart=refused, api=ScriptedProvider(pay=[declined()])), long_ago)
    uncharged = CartFactory()
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=uncharged, api=ScriptedProvider(pay=[unavailable()]))
    age(uncharged.payments.get(), long_ago)
    uncharged.payments.update(completed=timezone.now() - long_ago)  # beyond the re-check
    provider = ScriptedProvider()

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == ZERO
    assert provider.lookups == []
    assert sorted(Payment.objects.values_list("status", flat=True)) == [
        "error",
        "failed",
        "success",
    ]


def test_nothing_to_reconcile_asks_nothing():
    provider = ScriptedProvider()

    assert payments_reconcile(older_than=OLDER_THAN, api=provider) == ZERO
    assert provider.lookups == []


# --- the management command, against the real fake provider ------------------------------------


def run_command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("reconcile_payments", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ("--older-than", "-1"),
        ("--older-than", "99999999999999"),
        ("--recheck-closed-minutes", "-1"),
        ("--recheck-closed-minutes", "9999999999999"),
    ],
)
def test_the_command_refuses_windows_it_cannot_use(args):
    with pytest.raises(CommandError, match=args[0]):
        run_command(*args)


@pytest.mark.integration
def test_the_command_settles_stale_attempts_from_the_providers_ledger(fake_provider):
    charged_cart, charged = open_attempt(total=Decimal("10.00"), idle=timedelta(minutes=5))
    utils.PaymentAPI(fake_provider.url).request_payment(
        cart_id=str(charged_cart.pk),
        amount=charged.amount,
        currency=charged.currency,
        idempotency_key=charged.idempotency_key,
    )
    missing_cart, missing = open_attempt(total=Decimal("10.00"), idle=timedelta(minutes=5))
    young_cart, young = open_attempt(total=Decimal("10.00"), idle=timedelta(seconds=10))

    out, err = run_command("--older-than", "60")

    assert out.strip() == (
        "Reconciled: 1 charged, 0 declined, 1 not charged, 0 still unknown, "
        "0 charged after being closed, 0 duplicate charges found, 0 duplicate charges "
        "refunded; refunds: 0 made, 0 not made, 0 still unknown; 0 ledger records not what "
        "we sent, not booked."
    )
    assert err == ""
    assert state(charged_cart, charged) == ("success", "success")
    [charge] = fake_provider.charges(charged_cart.pk)
    assert Payment.objects.get(pk=charged.pk).provider_payment_id == charge["id"]
    assert state(missing_cart, missing) == ("error", "pending")
    assert state(young_cart, young) == ("unknown", "processing")
    assert len(fake_provider.charges()) == 1  # reconcile only reads the ledger


@pytest.mark.integration
def test_the_command_reports_attempts_whose_ledger_could_not_be_read(settings):
    from conftest import free_port

    settings.PAYMENT_API_BASE_URL = f"http://127.0.0.1:{free_port()}"
    settings.PAYMENT_API_MAX_RETRIES = 0
    cart, payment = open_attempt(idle=timedelta(minutes=5))

    out, err = run_command("--older-than", "60")

    assert out.strip() == (
        "Reconciled: 0 charged, 0 declined, 0 not charged, 1 still unknown, "
        "0 charged after being closed, 0 duplicate charges found, 0 duplicate charges "
        "refunded; refunds: 0 made, 0 not made, 0 still unknown; 0 ledger records not what "
        "we sent, not booked."
    )
    assert "could not settle everything" in err
    assert state(cart, payment) == ("unknown", "processing")


def test_a_ledger_entry_that_does_not_match_is_left_unknown_and_the_run_goes_on():
    first_cart, first = open_attempt(total=Decimal("10.00"))
    second_cart, second = open_attempt(total=Decimal("20.00"))
    provider = ScriptedProvider(
        ledger={
            first.idempotency_key: answer_with_amount("9.00"),
            second.idempotency_key: CHARGED,
        }
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(success=1, still_unknown=1, answer_mismatches=1)
    assert state(first_cart, first) == ("unknown", "processing")
    assert state(second_cart, second) == ("success", "success")


def test_a_charge_landing_after_the_attempt_was_closed_is_recorded():
    cart = CartFactory(total=Decimal("10.00"))

    def closed_meanwhile_then_charged(request):
        # Meanwhile something closed the attempt as "nothing charged"; then the charge lands.
        Payment.objects.filter(idempotency_key=request["idempotency_key"]).update(
            status=PaymentAttemptStatus.ERROR
        )
        Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.PENDING)
        return provider._result(Answer(), request)

    provider = ScriptedProvider(pay=[closed_meanwhile_then_charged])
    payment = cart_pay(cart=cart, api=provider)

    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.provider_payment_id
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS


def answer_with_amount(amount: str) -> Answer:
    return Answer(amount=Decimal(amount))


def closed_uncharged(cart: Cart, closed_ago: timedelta) -> Payment:
    """An attempt closed as "nothing charged" (the provider refused it) `closed_ago`."""
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, api=ScriptedProvider(pay=[unavailable()]))
    payment = cart.payments.get()
    Payment.objects.filter(pk=payment.pk).update(completed=timezone.now() - closed_ago)
    return payment


def test_a_recently_closed_attempt_found_charged_is_recorded_as_a_late_charge():
    cart = CartFactory()
    payment = closed_uncharged(cart, timedelta(minutes=5))

    result = payments_reconcile(
        older_than=OLDER_THAN, api=ScriptedProvider(ledger={payment.idempotency_key: CHARGED})
    )

    assert result == counts(late_charges=1)
    assert state(cart, payment) == ("success", "success")


def test_a_closed_attempts_key_holding_another_payment_is_not_booked_but_reported(
    monkeypatch,
):
    cart = CartFactory(total=Decimal("10.00"))
    payment = closed_uncharged(cart, timedelta(minutes=5))
    provider = ScriptedProvider(ledger={payment.idempotency_key: answer_with_amount("9.00")})

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(answer_mismatches=1)
    assert state(cart, payment) == ("error", "pending")
    assert Payment.objects.get(pk=payment.pk).provider_payment_id == ""

    again = ScriptedProvider(ledger={payment.idempotency_key: answer_with_amount("9.00")})
    monkeypatch.setattr("payments.reconcile.provider_api", lambda: again)
    out, err = run_command("--older-than", "60")

    assert "1 ledger records not what we sent, not booked." in out
    assert "until a person checks them with the provider" in err
    assert state(cart, payment) == ("error", "pending")


def test_a_paid_carts_charge_under_an_attempts_key_that_is_not_what_it_sent_is_not_booked():
    # Step 3 finds, among the paid cart's charges, one under the closed attempt's key but
    # for another amount: not that attempt's charge, so not booked as it.
    cart, closed, paid = paid_after_a_closed_attempt()
    stray = replace(charge_result(cart, closed.idempotency_key, "pay_x"), amount=Decimal("7"))
    provider = ScriptedProvider(
        ledger={closed.idempotency_key: NOT_FOUND},
        charges_of={str(cart.pk): [charge_of(paid), stray]},
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(answer_mismatches=1)
    assert state(cart, closed) == ("error", "success")
    assert Payment.objects.get(pk=closed.pk).provider_payment_id == ""


def test_closed_attempts_still_uncharged_or_closed_long_ago_are_left_alone():
    recent, old = CartFactory(), CartFactory()
    still_uncharged = closed_uncharged(recent, timedelta(minutes=5))
    closed_long_ago = closed_uncharged(old, timedelta(days=1))
    provider = ScriptedProvider(ledger={still_uncharged.idempotency_key: NOT_FOUND})

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == ZERO
    assert provider.lookups == [still_uncharged.idempotency_key]
    assert state(recent, still_uncharged) == ("error", "pending")
    assert state(old, closed_long_ago) == ("error", "pending")


def test_an_unreadable_ledger_skips_the_re_check():
    cart = CartFactory()
    payment = closed_uncharged(cart, timedelta(minutes=5))
    provider = ScriptedProvider(ledger={payment.idempotency_key: unavailable()})

    assert payments_reconcile(older_than=OLDER_THAN, api=provider) == ZERO
    assert state(cart, payment) == ("error", "pending")


@pytest.mark.integration
def test_the_command_reports_charges_that_landed_after_an_attempt_was_closed(fake_provider):
    cart = CartFactory(total=Decimal("10.00"))
    payment = closed_uncharged(cart, timedelta(minutes=5))
    utils.PaymentAPI(fake_provider.url).request_payment(
        cart_id=cart.pk, amount=Decimal("10.00"), idempotency_key=payment.idempotency_key
    )

    out, err = run_command()

    assert "1 charged after being closed" in out
    assert "landed after their attempt was closed" in err
    assert state(cart, payment) == ("success", "success")


# --- giving back what was taken twice --------------------------------------------------------


def charge_result(cart: Cart, key: str | None, payment_id: str) -> utils.PaymentResult:
    return utils.PaymentResult(
        payment_id=payment_id,
        cart_id=str(cart.pk),
        amount=cart.total,
        currency=cart.currency,
        status=utils.PaymentOutcome.SUCCESS,
        decline_code=None,
        payment_method="pm_card_default",
        idempotency_key=key,
        replayed=False,
    )


def paid_after_a_closed_attempt(total="10.00") -> tuple[Cart, Payment, Payment]:
    """A cart whose first attempt was closed as not charged, then paid by a second."""
    cart = CartFactory(total=Decimal(total))
    closed = closed_uncharged(cart, timedelta(minutes=5))
    paid = cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    return cart, closed, paid


def test_a_late_charge_on_a_cart_another_attempt_paid_is_given_back_once():
    cart, closed, paid = paid_after_a_closed_attempt()
    late = charge_result(cart, closed.idempotency_key, "pay_late")
    provider = ScriptedProvider(ledger={closed.idempotency_key: late}, refund=[REFUNDED])

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(duplicate_charges=1, duplicates_refunded=1)
    duplicate = Payment.objects.get(pk=closed.pk)
    assert (duplicate.status, duplicate.error_code) == ("duplicate", "duplicate_charge")
    assert (duplicate.provider_payment_id, duplicate.amount_refunded) == (
        "pay_late",
        Decimal("10.00"),
    )
    [sent] = provider.requests
    assert sent == {
        "payment_id": "pay_late",
        "amount": Decimal("10.00"),
        "currency": "USD",
        "idempotency_key": "dup-pay_late-1",
        "reason": "duplicate_charge",
    }
    [given_back] = Refund.objects.all()
    assert (given_back.reason, given_back.status, given_back.payment_id) == (
        "duplicate_charge",
        "success",
        closed.pk,
    )
    held = Cart.objects.get(pk=cart.pk)
    assert (held.payment_status, held.amount_refunded) == ("success", 0)  # the customer's
    assert Payment.objects.get(pk=paid.pk).status == PaymentAttemptStatus.SUCCESS

    again = ScriptedProvider(charges_of={str(cart.pk): [late, charge_of(paid)]})
    assert payments_reconcile(older_than=OLDER_THAN, api=again) == ZERO
    assert again.requests == []


def charge_of(payment: Payment) -> utils.PaymentResult:
    return charge_result(payment.cart, payment.idempotency_key, payment.provider_payment_id)


def test_a_charge_of_a_paid_cart_that_no_attempt_sent_is_recorded_and_given_back():
    cart = CartFactory(total=Decimal("7.00"))
    paid = cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    stray = charge_result(cart, "someone-elses-key", "pay_stray")
    provider = ScriptedProvider(
        charges_of={str(cart.pk): [charge_of(paid), stray]}, refund=[REFUNDED]
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(duplicate_charges=1, duplicates_refunded=1)
    assert provider.listed == [str(cart.pk)]
    recorded = Payment.objects.get(provider_payment_id="pay_stray")
    assert (recorded.status, recorded.idempotency_key, recorded.amount) == (
        "duplicate",
        "someone-elses-key",
        Decimal("7.00"),
    )
    assert provider.requests[0]["idempotency_key"] == "dup-pay_stray-1"
    assert Refund.objects.get().status == "success"


@pytest.mark.parametrize("stray_id", ["pay_é", "pay stray", " pay", "p" * 64])
def test_a_duplicate_whose_provider_id_is_no_key_text_is_given_back_with_a_key_made_from_it(
    stray_id,
):
    # The provider's payment id is only known to be short text: the give-back's key, made
    # from it so that the provider answers two give-backs of one charge as one, must
    # still be a key the provider's client sends (printable ASCII, no surrounding space).
    cart = CartFactory(total=Decimal("7.00"))
    paid = cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    stray = charge_result(cart, "someone-elses-key", stray_id)
    provider = ScriptedProvider(
        charges_of={str(cart.pk): [charge_of(paid), stray]}, refund=[timeout()], find=[NOT_FOUND]
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(duplicate_charges=1, refunds_unknown=1)
    [sent] = provider.requests
    key = sent["idempotency_key"]
    assert sent["payment_id"] == stray_id
    assert utils.is_key_text(key)
    assert len(key) <= utils.IDEMPOTENCY_KEY_MAX_LENGTH
    held = Refund.objects.get()
    assert held.idempotency_key == key
    # The next run settles it by that key (it used to stop every run with a ValueError).
    Refund.objects.update(updated=timezone.now() - timedelta(minutes=5))
    later = ScriptedProvider(find=[NOT_FOUND])
    payments_reconcile(older_than=OLDER_THAN, api=later)
    assert later.lookups == [key]
    # One charge, one key: the same id gives the same key, another id another.
    assert reconcile.give_back_key(stray_id, 1) == key
    assert reconcile.give_back_key(stray_id + "x", 1) != key


def test_a_plain_provider_id_keeps_its_give_back_key_readable():
    assert reconcile.give_back_key("pay_late", 2) == "dup-pay_late-2"


def test_a_duplicate_whose_refund_is_unknown_is_settled_by_a_later_run_not_refunded_again():
    cart, closed, _ = paid_after_a_closed_attempt()
    late = charge_result(cart, closed.idempotency_key, "pay_late")
    first = ScriptedProvider(
        ledger={closed.idempotency_key: late}, refund=[timeout()], find=[NOT_FOUND]
    )

    assert payments_reconcile(older_than=OLDER_THAN, api=first) == counts(
        duplicate_charges=1, refunds_unknown=1
    )
    held = Refund.objects.get()
    assert held.status == "unknown"
    Refund.objects.update(updated=timezone.now() - timedelta(minutes=5))

    def made(key):
        return utils.RefundResult(
            refund_id="re_1",
            payment_id="pay_late",
            amount=Decimal("10.00"),
            currency="USD",
            status=utils.RefundOutcome.SUCCEEDED,
            idempotency_key=key,
            replayed=False,
        )

    later = ScriptedProvider(find=[made])
    assert payments_reconcile(older_than=OLDER_THAN, api=later) == counts(
        refunds_made=1, duplicates_refunded=1
    )
    assert later.requests == []  # settled from the ledger, not sent again
    assert later.lookups == [held.idempotency_key] == ["dup-pay_late-1"]
    assert Refund.objects.get().status == "success"


def test_a_duplicate_whose_refund_was_not_made_is_given_back_with_the_next_key():
    cart, closed, _ = paid_after_a_closed_attempt()
    late = charge_result(cart, closed.idempotency_key, "pay_late")
    payments_reconcile(
        older_than=OLDER_THAN,
        api=ScriptedProvider(ledger={closed.idempotency_key: late}, refund=[unavailable()]),
    )
    assert Refund.objects.get().status == "error"

    again = ScriptedProvider(refund=[REFUNDED])
    result = payments_reconcile(
        older_than=OLDER_THAN, api=again, recheck_closed_within=timedelta(0)
    )

    assert result == counts(duplicates_refunded=1)
    assert again.requests[0]["idempotency_key"] == "dup-pay_late-2"


def refund_left_open_and_landed() -> Payment:
    """A paid cart whose refund of 5.00 was left unknown, untouched for 5 minutes, and
    can no longer land; returns the charge."""
    cart = CartFactory()
    charged = cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    with pytest.raises(RefundOutcomeUnknownError):
        refund_create(
            cart=cart,
            amount=Decimal("5.00"),
            api=ScriptedProvider(refund=[timeout()], find=[NOT_FOUND]),
        )
    Refund.objects.update(
        updated=timezone.now() - timedelta(minutes=5), in_flight_until=timezone.now()
    )
    return charged


def test_an_open_refund_the_ledger_does_not_know_is_closed_and_its_hold_released():
    charged = refund_left_open_and_landed()

    result = payments_reconcile(older_than=OLDER_THAN, api=ScriptedProvider(find=[NOT_FOUND]))

    assert result == counts(refunds_not_made=1)
    assert Refund.objects.get().error_code == ErrorCode.NOT_IN_LEDGER
    assert Payment.objects.get(pk=charged.pk).amount_refunded == 0


def test_an_open_refund_that_may_still_land_is_left_open():
    cart = CartFactory()
    cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    with pytest.raises(RefundOutcomeUnknownError):
        refund_create(
            cart=cart,
            amount=Decimal("5.00"),
            api=ScriptedProvider(refund=[timeout()], find=[NOT_FOUND]),
        )

    result = payments_reconcile(older_than=timedelta(0), api=ScriptedProvider(find=[NOT_FOUND]))

    assert result == counts(refunds_unknown=1)
    assert Refund.objects.get().status == "unknown"


@pytest.mark.integration
def test_the_command_gives_back_a_second_charge_once(fake_provider):
    cart, closed, _ = paid_after_a_closed_attempt()
    charged = fake_provider_api(fake_provider)
    late = charged.request_payment(
        cart_id=cart.pk, amount=Decimal("10.00"), idempotency_key=closed.idempotency_key
    )
    Payment.objects.filter(cart=cart, status="success").update(
        provider_payment_id=charged.request_payment(
            cart_id=cart.pk, amount=Decimal("10.00"), idempotency_key="the-real-one"
        ).payment_id
    )

    out, err = run_command()
    again, _ = run_command()

    assert "1 duplicate charges found, 1 duplicate charges refunded" in out
    assert "landed after their attempt was closed" in err
    assert "0 duplicate charges found, 0 duplicate charges refunded" in again
    [given_back] = fake_provider.refunds(late.payment_id)
    assert (given_back["amount"], given_back["reason"]) == (1000, "duplicate_charge")
    assert len(fake_provider.refunds()) == 1
    assert Payment.objects.get(pk=closed.pk).status == PaymentAttemptStatus.DUPLICATE


def fake_provider_api(fake_provider) -> utils.PaymentAPI:
    return utils.PaymentAPI(fake_provider.url)


# --- races with a live pay ----------------------------------------------------------------


def resumed_meanwhile(payment: Payment):
    """A ledger lookup during which a live pay resumes the attempt (as `attempt_started`
    does: processing, touched now) and sends it; the ledger has nothing yet."""

    def lookup(request):
        Payment.objects.filter(pk=payment.pk).update(
            status=PaymentAttemptStatus.PROCESSING, updated=timezone.now()
        )
        return None

    return lookup


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_an_attempt_a_live_pay_resumes_during_the_lookup_is_not_closed(status):
    cart, payment = open_attempt(status)
    Payment.objects.filter(pk=payment.pk).update(in_flight_until=None)
    provider = ScriptedProvider(find=[resumed_meanwhile(payment)])

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(still_unknown=1)
    assert state(cart, payment) == (PaymentAttemptStatus.PROCESSING, PaymentStatus.PROCESSING)


def test_a_refund_a_live_request_resumes_during_the_lookup_is_not_closed():
    charged = refund_left_open_and_landed()

    def resumed(key):
        Refund.objects.update(status="processing", updated=timezone.now())

    result = payments_reconcile(older_than=OLDER_THAN, api=ScriptedProvider(find=[resumed]))

    assert result == counts(refunds_unknown=1)
    assert Refund.objects.get().status == "processing"
    assert Payment.objects.get(pk=charged.pk).amount_refunded == Decimal("5.00")


def test_two_give_backs_of_one_duplicate_racing_for_its_refund_number_never_crash(monkeypatch):
    # The task and a reconcile run count the duplicate's refunds at the same moment; the
    # one that comes second must neither crash (which stopped the whole run) nor send.
    cart, closed, _paid = paid_after_a_closed_attempt()
    late = charge_result(cart, closed.idempotency_key, "pay_late")
    recorded = payments_reconcile(  # recorded as a duplicate; its give-back fails
        older_than=OLDER_THAN,
        api=ScriptedProvider(ledger={closed.idempotency_key: late}, refund=[unavailable()]),
    )
    assert (recorded["duplicate_charges"], recorded["duplicates_refunded"]) == (1, 0)
    duplicate = Payment.objects.get(pk=closed.pk)
    assert duplicate.status == PaymentAttemptStatus.DUPLICATE
    real = reconcile.refund_give_back

    def the_other_caller_first(**kwargs):
        monkeypatch.setattr(reconcile, "refund_give_back", real)
        with pytest.raises(ApplicationError):
            reconcile.payment_give_back_duplicate(
                duplicate=duplicate, api=ScriptedProvider(refund=[unavailable()])
            )
        return real(**kwargs)

    monkeypatch.setattr(reconcile, "refund_give_back", the_other_caller_first)
    second = ScriptedProvider(refund=[REFUNDED])

    assert reconcile.payment_give_back_duplicate(duplicate=duplicate, api=second) is None
    assert second.requests == []

    again = ScriptedProvider(refund=[REFUNDED])
    refund = reconcile.payment_give_back_duplicate(duplicate=duplicate, api=again)
    assert refund.status == "success"
    assert Payment.objects.get(pk=closed.pk).amount_refunded == closed.amount
