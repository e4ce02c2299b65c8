"""Paying carts against the real fake provider process: outcomes, idempotency and every
fault it can inject, alone and drawn at random. Each test checks our answer, the cart's
state and the provider's ledger (never more than one charge)."""

import io
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.conf import settings
from django.core.management import call_command

from cart.models import Cart
from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from discount.tests.factories import DiscountFactory
from payments.models import PaymentAttemptStatus

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def pay(client, cart, key=None, **body):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"/api/cart/{cart.pk}/pay/", body, **headers)


def status_of(cart) -> str:
    return Cart.objects.get(pk=cart.pk).payment_status


class TestTutorialContract:
    def test_fake_provider_answers_inspect_at_the_configured_address(self, fake_provider):
        response = requests.get(f"http://{settings.FAKE_PAYMENT_API}/inspect", timeout=5)

        assert response.status_code == 200
        assert response.json()["available"] == 1

    def test_cart_of_10_is_paid(self, fake_provider):
        cart = Cart(total=10, currency="USD", items_number=5)
        cart.save()

        cart.pay()

        assert cart.payment_status == "success"
        assert status_of(cart) == "success"

    def test_cart_of_25_is_declined_by_the_card_holding_20(self, fake_provider):
        cart = Cart(total=25, currency="USD", items_number=5)
        cart.save()

        payment = cart.pay()

        assert cart.payment_status == "failed"
        assert status_of(cart) == "failed"
        assert payment.decline_code == "insufficient_funds"

    def test_a_cart_read_back_from_the_database_pays(self, fake_provider):
        Cart(total=10, currency="USD", items_number=5).save()
        cart = Cart.objects.get()

        cart.pay()

        assert cart.payment_status == "success"
        assert fake_provider.charges(cart.pk)[0]["amount"] == 1000


class TestOutcomes:
    def test_success_answers_the_cart_and_the_payment(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("12.34"))

        response = pay(api_client, cart)

        assert response.status_code == 200
        data = response_json(response)
        assert data["cart"]["payment_status"] == "success"
        assert data["payment"]["status"] == "success"
        assert data["payment"]["amount"] == Decimal("12.34")
        [charge] = fake_provider.charges(cart.pk)
        assert (charge["amount"], charge["currency"]) == (1234, "USD")
        assert data["payment"]["provider_payment_id"] == charge["id"]
        assert data["cart"]["payments"][0]["id"] == data["payment"]["id"]

    def test_discounted_total_is_what_is_charged(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("25.00"))
        DiscountFactory(code="FIVE", value=Decimal("5"))
        api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": "FIVE"})

        assert pay(api_client, cart).status_code == 200
        assert fake_provider.charges(cart.pk)[0]["amount"] == 2000

    def test_jpy_is_sent_in_whole_yen(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("20"), currency="JPY")
        assert pay(api_client, cart).status_code == 200
        assert fake_provider.charges(cart.pk)[0]["amount"] == 20

    @pytest.mark.parametrize(
        ("method", "decline_code"),
        [
            ("pm_card_chargeDeclined", "generic_decline"),
            ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
            ("pm_card_chargeDeclinedProcessingError", "processing_error"),
        ],
    )
    def test_a_decline_is_a_402_with_its_code(
        self, api_client, fake_provider, method, decline_code
    ):
        cart = CartFactory(total=Decimal("5"))

        response = pay(api_client, cart, payment_method=method)

        assert response.status_code == 402
        data = response_json(response)
        assert data["error"]["code"] == "card_declined"
        assert data["error"]["decline_code"] == decline_code
        assert data["cart"]["payment_status"] == "failed"
        assert data["payment"]["decline_code"] == decline_code
        assert fake_provider.charges(cart.pk) == []

    def test_a_payment_method_the_provider_refuses_is_a_400_and_nothing_is_taken(
        self, api_client, fake_provider
    ):
        cart = CartFactory(total=Decimal("5"))

        response = pay(api_client, cart, payment_method="pm_card_unknown")

        assert response.status_code == 400
        assert (error_of(response)["code"], error_of(response)["field"]) == (
            "payment_method_refused",
            "payment_method",
        )
        assert status_of(cart) == "pending"
        assert cart.payments.get().status == PaymentAttemptStatus.ERROR
        assert fake_provider.payments() == []
        assert pay(api_client, cart, payment_method="pm_card_visa").status_code == 200

    def test_the_always_succeeding_test_card_ignores_the_balance(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("500"))
        assert pay(api_client, cart, payment_method="pm_card_visa").status_code == 200

    def test_a_failed_cart_can_be_paid_again(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("25"))
        assert pay(api_client, cart).status_code == 402

        response = pay(api_client, cart, payment_method="pm_card_visa")

        assert response.status_code == 200
        assert [p["payment_status"] for p in fake_provider.payments(cart.pk)] == [
            "failed",
            "success",
        ]
        assert [p["status"] for p in response_json(response)["cart"]["payments"]] == [
            "failed",
            "success",
        ]

    def test_a_paid_cart_is_final(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("10"))
        DiscountFactory(code="LATE")
        pay(api_client, cart)

        again = pay(api_client, cart)
        discount = api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": "LATE"})

        assert (again.status_code, error_of(again)["code"]) == (409, "cart_paid")
        assert (discount.status_code, error_of(discount)["code"]) == (409, "cart_paid")
        assert len(fake_provider.charges(cart.pk)) == 1

    def test_a_fully_discounted_cart_is_paid_without_charging(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("5"))
        DiscountFactory(code="ALL", value=Decimal("5"))
        api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": "ALL"})

        response = pay(api_client, cart)

        assert response.status_code == 200
        assert response_json(response)["payment"]["amount"] == 0
        assert fake_provider.payments() == []


class TestIdempotency:
    def test_the_same_key_returns_the_same_outcome_without_charging_again(
        self, api_client, fake_provider
    ):
        cart = CartFactory(total=Decimal("10"))

        first = pay(api_client, cart, key="order-1")
        second = pay(api_client, cart, key="order-1")

        assert (first.status_code, second.status_code) == (200, 200)
        assert response_json(first)["payment"] == response_json(second)["payment"]
        assert len(fake_provider.charges(cart.pk)) == 1
        assert len(fake_provider.journal()) == 1

    def test_the_same_key_replays_a_decline_too(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("25"))
        assert pay(api_client, cart, key="k").status_code == 402
        assert pay(api_client, cart, key="k").status_code == 402
        assert len(fake_provider.journal()) == 1

    def test_the_same_key_with_another_payment_method_is_refused(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("25"))
        pay(api_client, cart, key="k")

        response = pay(api_client, cart, key="k", payment_method="pm_card_visa")

        assert response.status_code == 409
        assert error_of(response)["code"] == "idempotency_key_reused"
        assert error_of(response)["field"] == "Idempotency-Key"

    def test_keys_belong_to_their_cart(self, api_client, fake_provider):
        one, two = CartFactory(total=Decimal("5")), CartFactory(total=Decimal("5"))

        assert pay(api_client, one, key="same").status_code == 200
        assert pay(api_client, two, key="same").status_code == 200
        assert len(fake_provider.charges()) == 2

    @pytest.mark.parametrize("key", ["", "x" * 201, "naïve", "a ", " a", " "])
    def test_a_malformed_key_is_a_400(self, api_client, fake_provider, key):
        # Spaces at either end: gunicorn strips them, other servers pass them on; the
        # provider refuses a key ending in one, which was found after the attempt was
        # written (a 500, and the cart held in `processing`).
        cart = CartFactory()
        response = api_client.post(
            f"/api/cart/{cart.pk}/pay/", {}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 400
        assert error_of(response)["field"] == "Idempotency-Key"
        assert status_of(cart) == "pending"
        assert not cart.payments.exists()
        assert fake_provider.journal() == []

    def test_an_unknown_payment_method_shape_is_a_400(self, api_client, fake_provider):
        response = pay(api_client, CartFactory(), payment_method="no spaces allowed")
        assert (error_of(response)["field"], error_of(response)["code"]) == (
            "payment_method",
            "invalid",
        )
        assert fake_provider.journal() == []


class TestFaults:
    def test_latency_within_the_timeout_still_pays_once(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("latency", delay_ms=300)

        assert pay(api_client, cart).status_code == 200
        assert len(fake_provider.charges(cart.pk)) == 1

    @pytest.mark.parametrize(
        "kind",
        [
            "http_500",
            "http_503",
            "reset",
            "empty_reply",
            "charge_then_reset",
            "charge_then_empty_reply",
        ],
    )
    def test_a_failure_the_client_retries_through_pays_once(self, api_client, fake_provider, kind):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault(kind, count=2)  # fail the next 2, then succeed

        response = pay(api_client, cart)

        assert response.status_code == 200
        assert len(fake_provider.journal()) == 3
        assert len(fake_provider.charges(cart.pk)) == 1
        assert status_of(cart) == "success"

    @pytest.mark.parametrize("kind", ["http_500", "http_503", "reset", "empty_reply", "malformed"])
    def test_a_provider_that_stays_broken_holds_the_attempt_open_and_the_same_card_pays_once(
        self, api_client, fake_provider, kind
    ):
        # Every request may have reached the provider, which may commit a charge after
        # the ledger lookup: not "nothing taken", but unknown until the ledger says so.
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault(kind, count=None)

        response = pay(api_client, cart)

        assert response.status_code == 504
        body = response_json(response)
        assert body["error"]["code"] == "payment_outcome_unknown"
        assert (body["payment_taken"], body["retryable"]) == (None, True)
        assert status_of(cart) == "processing"
        assert cart.payments.get().status == PaymentAttemptStatus.UNKNOWN
        assert fake_provider.charges() == []

        fake_provider.clear_faults()
        assert pay(api_client, cart).status_code == 200  # resumes the attempt, its key
        assert len(fake_provider.charges(cart.pk)) == 1
        assert cart.payments.count() == 1

    def test_an_unreachable_provider_is_a_503(self, api_client, fake_provider, settings):
        from conftest import free_port

        settings.PAYMENT_API_BASE_URL = f"http://127.0.0.1:{free_port()}"
        cart = CartFactory()

        response = pay(api_client, cart)

        assert response.status_code == 503
        assert status_of(cart) == "pending"

    def test_a_slow_charge_then_nonsense_keeps_the_attempt_open_so_no_second_charge(
        self, api_client, fake_provider
    ):
        # Found by the soak test: the first request times out but is still charging when
        # the retry gets garbage. "No charge in the ledger yet" must not close the attempt.
        cart = CartFactory(total=Decimal("15"))
        fake_provider.fault("latency", delay_ms=1500)
        fake_provider.fault("malformed")

        response = pay(api_client, cart, key="k1")

        assert response.status_code == 504
        assert status_of(cart) == "processing"
        wait_for(lambda: fake_provider.charges(cart.pk))  # the slow request charges
        retry = pay(api_client, cart, key="k2")  # even with another key
        assert retry.status_code == 200
        assert len(fake_provider.charges(cart.pk)) == 1

    def test_charge_then_late_answer_is_found_by_the_retry(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("charge_then_delay", delay_ms=2500)  # read timeout is 1 s

        response = pay(api_client, cart)

        assert response.status_code == 200
        assert status_of(cart) == "success"
        assert len(fake_provider.charges(cart.pk)) == 1
        assert len(fake_provider.journal()) == 2  # the timed-out request and its retry

    def test_charge_then_late_answer_is_found_in_the_ledger_without_retries(
        self, api_client, fake_provider, settings
    ):
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("charge_then_delay", delay_ms=2500)

        response = pay(api_client, cart)

        assert response.status_code == 200
        assert len(fake_provider.journal()) == 1
        [charge] = fake_provider.charges(cart.pk)
        assert response_json(response)["payment"]["provider_payment_id"] == charge["id"]

    def test_too_slow_is_a_504_and_the_retry_cannot_charge_twice(
        self, api_client, fake_provider, settings
    ):
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("latency", delay_ms=1500)  # charges after our 1 s timeout

        response = pay(api_client, cart)

        # The ledger has nothing yet, but the slow request may still land: the outcome is
        # unknown (not "nothing taken"), the attempt stays open and the cart frozen.
        assert response.status_code == 504
        assert error_of(response)["code"] == "payment_outcome_unknown"
        assert response_json(response)["payment_taken"] is None
        assert status_of(cart) == "processing"
        wait_for(lambda: fake_provider.charges(cart.pk))  # the late charge lands

        retry = pay(api_client, cart)

        assert retry.status_code == 200
        assert status_of(cart) == "success"
        assert len(fake_provider.charges(cart.pk)) == 1  # the retry reused the key
        assert len(fake_provider.journal()) == 2

    @pytest.mark.parametrize("retries", [2, 0])
    def test_an_answer_sent_a_byte_at_a_time_is_given_up_at_the_deadline(
        self, api_client, fake_provider, settings, retries
    ):
        # Each byte comes within the read timeout; the whole answer would take a minute,
        # past the stale window after which another card could be charged. The exchange
        # ends at connect + read timeout: the retry (same key) or the ledger lookup that
        # follows finds the charge.
        settings.PAYMENT_API_MAX_RETRIES = retries
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("charge_then_trickle", delay_ms=200)
        started = time.monotonic()

        response = pay(api_client, cart)

        took = time.monotonic() - started
        deadline = settings.PAYMENT_API_CONNECT_TIMEOUT + settings.PAYMENT_API_READ_TIMEOUT
        assert took < deadline + 2.0
        assert response.status_code == 200
        assert status_of(cart) == "success"
        assert len(fake_provider.charges(cart.pk)) == 1


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class TestLostAnswers:
    """The provider charged, then the connection dropped before its answer arrived."""

    @pytest.mark.parametrize("kind", ["charge_then_reset", "charge_then_empty_reply"])
    def test_a_charge_whose_answer_is_lost_is_never_charged_again(
        self, api_client, fake_provider, kind
    ):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault(kind, count=None)  # every attempt charges (or replays), then drops

        first = pay(api_client, cart, key="checkout-1")
        fake_provider.clear_faults()
        second = pay(api_client, cart, key="checkout-2")  # the customer tries again

        assert len(fake_provider.charges(cart.pk)) == 1, (first.content, second.content)
        assert response_json(first).get("payment_taken") is not False
        assert first.status_code == 200  # the ledger had the charge
        assert (second.status_code, error_of(second)["code"]) == (409, "cart_paid")
        assert status_of(cart) == "success"

    @pytest.mark.parametrize("kind", ["charge_then_reset", "charge_then_empty_reply"])
    def test_without_retries_the_lost_answer_is_found_in_the_ledger(
        self, api_client, fake_provider, settings, kind
    ):
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault(kind)

        response = pay(api_client, cart)

        assert response.status_code == 200
        assert len(fake_provider.journal()) == 1
        [charge] = fake_provider.charges(cart.pk)
        assert response_json(response)["payment"]["provider_payment_id"] == charge["id"]

    def test_a_charge_committed_after_the_reset_is_never_charged_again(
        self, api_client, fake_provider, settings
    ):
        # The connection is reset while the provider is still at work; the charge is
        # committed after the lookup that followed the reset found nothing. Taking that
        # for "nothing charged" told the customer so and let another card pay again.
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("reset_then_charge", delay_ms=500)

        first = pay(api_client, cart, key="checkout-1")
        wait_for(lambda: fake_provider.charges(cart.pk))  # the charge lands after the reset
        other_card = pay(api_client, cart, key="checkout-2", payment_method="pm_card_visa")

        assert (first.status_code, error_of(first)["code"]) == (504, "payment_outcome_unknown")
        assert response_json(first)["payment_taken"] is None
        assert (other_card.status_code, error_of(other_card)["code"]) == (409, "cart_paid")
        assert len(fake_provider.charges(cart.pk)) == 1
        assert status_of(cart) == "success"

    def test_a_charge_committed_after_the_reset_is_replayed_to_the_same_card(
        self, api_client, fake_provider, settings
    ):
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("reset_then_charge", delay_ms=500)

        first = pay(api_client, cart, key="checkout-1")
        again = pay(api_client, cart, key="checkout-2")  # at once, before the charge lands

        assert first.status_code == 504
        assert again.status_code == 200
        time.sleep(0.8)  # the reset request is processed: the provider replays its key
        assert len(fake_provider.charges(cart.pk)) == 1
        assert status_of(cart) == "success"

    def test_a_reset_then_charge_is_retried_through_once(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("reset_then_charge", delay_ms=300)

        response = pay(api_client, cart)  # the client's retry carries the same key

        assert response.status_code == 200
        time.sleep(0.6)
        assert len(fake_provider.charges(cart.pk)) == 1

    def test_a_pay_with_another_card_while_the_first_may_land_charges_no_second_card(
        self, api_client, fake_provider, settings
    ):
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("latency", delay_ms=1500)  # lands after our 1 s timeout

        first = pay(api_client, cart, key="k1")
        other_card = pay(api_client, cart, key="k2", payment_method="pm_card_visa")

        assert (first.status_code, error_of(first)["code"]) == (504, "payment_outcome_unknown")
        assert (other_card.status_code, error_of(other_card)["code"]) == (
            409,
            "earlier_payment_outcome_unknown",
        )
        assert response_json(other_card)["payment_taken"] is None
        wait_for(lambda: fake_provider.charges(cart.pk))
        again = pay(api_client, cart, key="k2", payment_method="pm_card_visa")
        assert (again.status_code, error_of(again)["code"]) == (409, "cart_paid")
        assert [c["payment_method"] for c in fake_provider.charges(cart.pk)] == ["pm_card_default"]


class TestLedgerRecordsOfAnotherPayment:
    """The provider's ledger holds, under the key of one of our attempts, a charge that is
    not what the attempt sends (planted here by a direct request to the provider)."""

    def test_it_is_never_booked_and_reconcile_reports_it(self, api_client, fake_provider):
        cart = CartFactory(total=Decimal("20.00"), currency="USD")
        planted = requests.post(
            f"{settings.PAYMENT_API_BASE_URL}/request_payment",
            json={
                "cart_id": str(cart.pk),
                "amount": 1999,
                "currency": "USD",
                "payment_method": "pm_card_visa",
            },
            headers={"Idempotency-Key": f"cart-{cart.pk}-order-1"},
            timeout=5,
        )
        assert planted.status_code == 200

        response = pay(api_client, cart, key="order-1", payment_method="pm_card_visa")

        assert response.status_code == 504, response.content
        assert response_json(response)["payment_taken"] is None
        attempt = cart.payments.get()
        assert (attempt.status, attempt.error_code) == ("unknown", "answer_mismatch")
        assert attempt.in_flight_until is not None

        out, err = run_reconcile("--older-than", "0")

        assert "1 ledger records not what we sent, not booked." in out
        assert "until a person checks them with the provider" in err
        attempt.refresh_from_db()
        assert (attempt.status, attempt.provider_payment_id) == ("unknown", "")
        assert status_of(cart) == "processing"
        assert [c["amount"] for c in fake_provider.charges(cart.pk)] == [1999]


def run_reconcile(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("reconcile_payments", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


class TestRandomFaults:
    def test_pays_under_random_faults_charge_each_cart_at_most_once(
        self, api_client, fake_provider, settings
    ):
        # Every fault kind, drawn for a fifth of the provider's write requests.
        settings.PAYMENT_ATTEMPT_STALE_SECONDS = 2
        fake_provider.random_faults(0.2, 7, delay_ms=[0, 1500])
        carts = [CartFactory(total=Decimal("5")) for _ in range(12)]
        answers = {}
        for cart in carts:
            for _ in range(4):  # a storefront retrying with the same key
                response = pay(api_client, cart, key=f"order-{cart.pk}")
                answers.setdefault(cart.pk, []).append(response.status_code)
                if response.status_code < 500:
                    break
                assert response_json(response)["payment_taken"] in (False, None)
        fake_provider.clear_faults()
        time.sleep(2.5)  # every delayed request has landed; nothing is in flight

        from payments.reconcile import payments_reconcile

        payments_reconcile(older_than=timedelta(0))

        for cart in carts:
            charges = fake_provider.charges(cart.pk)
            assert len(charges) <= 1, answers[cart.pk]
            paid = Cart.objects.get(pk=cart.pk).payment_status == "success"
            assert paid == bool(charges), (answers[cart.pk], status_of(cart))
        assert fake_provider.inspect()["random_faults"] is None
