"""Paying carts against the real fake provider process: outcomes, idempotency and every
fault it can inject. Each test checks our answer, the cart's state and the provider's
ledger (never more than one charge)."""

import time
from decimal import Decimal

import pytest
import requests
from django.conf import settings

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

    @pytest.mark.parametrize("key", ["", "x" * 201, "naïve"])
    def test_a_malformed_key_is_a_400(self, api_client, fake_provider, key):
        cart = CartFactory()
        response = api_client.post(
            f"/api/cart/{cart.pk}/pay/", {}, headers={"Idempotency-Key": key}
        )
        assert response.status_code == 400
        assert error_of(response)["field"] == "Idempotency-Key"
        assert status_of(cart) == "pending"

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

    @pytest.mark.parametrize("kind", ["http_500", "http_503", "reset", "empty_reply"])
    def test_a_failure_the_client_retries_through_pays_once(self, api_client, fake_provider, kind):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault(kind, count=2)  # fail the next 2, then succeed

        response = pay(api_client, cart)

        assert response.status_code == 200
        assert len(fake_provider.journal()) == 3
        assert len(fake_provider.charges(cart.pk)) == 1
        assert status_of(cart) == "success"

    @pytest.mark.parametrize("kind", ["http_500", "http_503", "reset", "empty_reply"])
    def test_a_provider_that_stays_down_is_a_503_and_nothing_is_taken(
        self, api_client, fake_provider, kind
    ):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault(kind, count=None)

        response = pay(api_client, cart)

        assert response.status_code == 503
        body = response_json(response)
        assert body["error"]["code"] == "payment_provider_unavailable"
        assert (body["payment_taken"], body["retryable"]) == (False, True)
        assert status_of(cart) == "pending"
        assert cart.payments.get().status == PaymentAttemptStatus.ERROR
        assert fake_provider.charges() == []

        fake_provider.reset()
        assert pay(api_client, cart).status_code == 200
        assert len(fake_provider.charges(cart.pk)) == 1

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

    def test_a_malformed_answer_is_a_502_after_the_ledger_shows_no_charge(
        self, api_client, fake_provider
    ):
        cart = CartFactory(total=Decimal("10"))
        fake_provider.fault("malformed")

        response = pay(api_client, cart)

        assert response.status_code == 502
        assert error_of(response)["code"] == "payment_provider_error"
        assert response_json(response)["payment_taken"] is False
        assert status_of(cart) == "pending"
        assert fake_provider.charges() == []
        assert pay(api_client, cart).status_code == 200
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

        # The ledger has nothing yet, so nothing was taken so far; but the slow request
        # may still land, so the attempt stays open and the cart frozen.
        assert response.status_code == 504
        assert error_of(response)["code"] == "payment_provider_timeout"
        assert response_json(response)["payment_taken"] is False
        assert status_of(cart) == "processing"
        wait_for(lambda: fake_provider.charges(cart.pk))  # the late charge lands

        retry = pay(api_client, cart)

        assert retry.status_code == 200
        assert status_of(cart) == "success"
        assert len(fake_provider.charges(cart.pk)) == 1  # the retry reused the key
        assert len(fake_provider.journal()) == 2


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
