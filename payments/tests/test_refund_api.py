"""POST /api/cart/{id}/refund/ through the API, charging and refunding at the real fake
provider process: answers, amounts, idempotency, access, and provider trouble."""

from decimal import Decimal

import pytest

from cart.models import Cart
from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from conftest import free_port
from payments.models import Refund
from payments.provider import provider_slot
from payments.tests.test_pay_integration import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def pay(client, cart):
    response = client.post(f"/api/cart/{cart.pk}/pay/", {})
    assert response.status_code == 200, response.content
    return response_json(response)["payment"]


def refund(client, cart, amount=None, key=None, **extra):
    body = {} if amount is None else {"amount": amount}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"/api/cart/{cart.pk}/refund/", body, **headers, **extra)


@pytest.fixture
def paid(api_client, fake_provider):
    """A cart of 20.00 paid at the fake provider, and its charge there."""
    cart = CartFactory(total=Decimal("20.00"))
    payment = pay(api_client, cart)
    return cart, payment


class TestAnswers:
    def test_a_partial_refund_answers_the_cart_and_the_refund(
        self, api_client, paid, fake_provider
    ):
        cart, payment = paid

        response = refund(api_client, cart, "5.00")

        assert response.status_code == 200
        body = response_json(response)
        made = body["refund"]
        assert (made["status"], made["amount"], made["currency"], made["reason"]) == (
            "success",
            Decimal("5.00"),
            "USD",
            "requested_by_customer",
        )
        assert made["payment"] == payment["id"]
        assert (made["error_code"], made["error"]) == ("", "")
        assert body["cart"]["payment_status"] == "partially_refunded"
        assert body["cart"]["amount_refunded"] == Decimal("5.00")
        assert body["cart"]["refunds"] == [made]
        [at_provider] = fake_provider.refunds(payment["provider_payment_id"])
        assert (at_provider["amount"], at_provider["id"]) == (500, made["provider_refund_id"])
        assert at_provider["idempotency_key"] == made["idempotency_key"]

    def test_no_amount_refunds_everything_left(self, api_client, paid, fake_provider):
        cart, _ = paid
        refund(api_client, cart, "5.00")

        response = refund(api_client, cart)

        body = response_json(response)
        assert body["refund"]["amount"] == Decimal("15.00")
        assert (body["cart"]["payment_status"], body["cart"]["amount_refunded"]) == (
            "refunded",
            Decimal("20.00"),
        )
        read = response_json(api_client.get(f"/api/cart/{cart.pk}/"))
        assert [r["amount"] for r in read["refunds"]] == [Decimal("5.00"), Decimal("15.00")]
        assert sum(r["amount"] for r in fake_provider.refunds()) == 2000

    def test_a_refunded_cart_stays_frozen(self, api_client, paid):
        cart, _ = paid
        refund(api_client, cart)

        again = api_client.post(f"/api/cart/{cart.pk}/pay/", {})
        discount = api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": "X"})

        assert (again.status_code, error_of(again)["code"]) == (409, "cart_paid")
        assert (discount.status_code, error_of(discount)["code"]) == (409, "cart_paid")

    def test_a_cart_that_is_not_paid_is_a_409(self, api_client, fake_provider):
        response = refund(api_client, CartFactory(), "1.00")

        assert (response.status_code, error_of(response)["code"]) == (409, "cart_not_paid")
        assert fake_provider.journal() == []

    def test_more_than_was_charged_is_a_409_naming_the_amount(self, api_client, paid):
        cart, _ = paid
        refund(api_client, cart, "15.00")

        response = refund(api_client, cart, "5.01")

        error = error_of(response)
        assert (response.status_code, error["code"], error["field"]) == (
            409,
            "refund_exceeds_captured",
            "amount",
        )
        assert "Only 5.00 USD" in error["message"]
        assert Refund.objects.count() == 1

    def test_what_is_left_is_named_with_the_currencys_decimals(self, api_client, paid):
        cart, _ = paid
        refund(api_client, cart, "19.80")

        response = refund(api_client, cart, "1.00")

        assert error_of(response)["message"] == (
            "Only 0.20 USD of what was charged is left to refund."
        )

    @pytest.mark.parametrize(
        ("amount", "code"),
        [
            ("5.001", "too_many_decimals"),
            ("0", "min_value"),
            ("-1", "min_value"),
            ("abc", "invalid"),
            ("10000000000.01", "max_value"),
            (True, "invalid"),
        ],
    )
    def test_a_bad_amount_is_a_400_naming_it(self, api_client, paid, amount, code):
        cart, _ = paid

        response = refund(api_client, cart, amount)

        error = error_of(response)
        assert (response.status_code, error["field"], error["code"]) == (400, "amount", code)
        assert Refund.objects.count() == 0
        assert Cart.objects.get(pk=cart.pk).payment_status == "success"

    def test_provider_internals_never_reach_the_cart(self, api_client, fake_provider, settings):
        from conftest import free_port

        port = free_port()
        settings.PAYMENT_API_BASE_URL = f"http://127.0.0.1:{port}"
        cart = CartFactory()

        response = api_client.post(f"/api/cart/{cart.pk}/pay/", {})

        assert response.status_code == 503
        [attempt] = response_json(api_client.get(f"/api/cart/{cart.pk}/"))["payments"]
        assert attempt["error_code"] == "provider_unavailable"
        assert attempt["error"] == ("The payment provider could not be used. Nothing was charged.")
        text = response.content.decode() + str(attempt)
        assert "127.0.0.1" not in text
        assert str(port) not in text


class TestIdempotency:
    def test_the_same_key_replays_the_refund(self, api_client, paid, fake_provider):
        cart, _ = paid

        first = refund(api_client, cart, "5.00", key="r-1")
        second = refund(api_client, cart, "5.00", key="r-1")

        assert response_json(first)["refund"] == response_json(second)["refund"]
        assert len(fake_provider.refunds()) == 1
        assert response_json(second)["cart"]["amount_refunded"] == Decimal("5.00")

    def test_the_same_key_for_another_amount_is_a_409(self, api_client, paid):
        cart, _ = paid
        refund(api_client, cart, "5.00", key="r-1")

        response = refund(api_client, cart, "6.00", key="r-1")

        assert (response.status_code, error_of(response)["code"]) == (
            409,
            "idempotency_key_reused",
        )

    @pytest.mark.parametrize("key", ["x" * 201, "refund 1 "])
    def test_a_malformed_key_is_a_400(self, api_client, paid, key):
        cart, _ = paid
        response = refund(api_client, cart, "5.00", key=key)
        assert error_of(response)["field"] == "Idempotency-Key"
        assert not cart.refunds.exists()


class TestAccess:
    def test_with_prod_rules_an_anonymous_caller_cannot_refund(
        self, api_client, paid, prod_access
    ):
        cart, _ = paid

        response = refund(api_client, cart, "5.00")

        assert response.status_code in (401, 403)
        assert Refund.objects.count() == 0

    def test_with_prod_rules_staff_can_refund(self, staff_client, paid, prod_access):
        cart, _ = paid

        assert refund(staff_client, cart, "5.00").status_code == 200


class TestProviderTrouble:
    """What each provider fault makes of a refund (read timeout 1 s, 2 retries)."""

    def test_a_provider_never_reached_is_a_503_and_nothing_is_refunded(
        self, api_client, paid, fake_provider, settings
    ):
        cart, _ = paid
        settings.PAYMENT_API_BASE_URL = f"http://127.0.0.1:{free_port()}"

        response = refund(api_client, cart, "5.00")

        body = response_json(response)
        assert (response.status_code, body["error"]["code"]) == (
            503,
            "payment_provider_unavailable",
        )
        assert (body["refund_made"], body["retryable"]) == (False, True)
        assert Refund.objects.get().status == "error"
        settings.PAYMENT_API_BASE_URL = fake_provider.url
        assert response_json(refund(api_client, cart))["refund"]["amount"] == Decimal("20.00")

    @pytest.mark.parametrize("kind", ["http_503", "reset", "malformed"])
    def test_a_provider_that_stays_broken_is_a_504_and_the_same_request_refunds_once(
        self, api_client, paid, fake_provider, kind
    ):
        # The request may have reached the provider: an empty ledger proves nothing yet.
        cart, _ = paid
        fake_provider.fault(kind, count=None)

        response = refund(api_client, cart, "5.00", key="r1")

        body = response_json(response)
        assert (response.status_code, body["error"]["code"]) == (504, "refund_outcome_unknown")
        assert (body["refund_made"], body["retryable"]) == (None, True)
        assert fake_provider.refunds() == []
        fake_provider.clear_faults()
        again = refund(api_client, cart, "5.00", key="r1")
        assert response_json(again)["refund"]["status"] == "success"
        assert [r["amount"] for r in fake_provider.refunds()] == [500]

    def test_a_refund_made_after_the_reset_is_not_taken_for_nothing_refunded(
        self, api_client, paid, fake_provider, settings
    ):
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart, payment = paid
        fake_provider.fault("reset_then_charge", delay_ms=500)

        first = refund(api_client, cart, "5.00", key="r1")
        wait_for(lambda: fake_provider.refunds())  # the refund is made after the reset
        rest = refund(api_client, cart)  # everything not yet refunded: the 5.00 is held
        again = refund(api_client, cart, "5.00", key="r1")

        assert (first.status_code, error_of(first)["code"]) == (504, "refund_outcome_unknown")
        assert response_json(first)["refund_made"] is None
        assert response_json(rest)["refund"]["amount"] == Decimal("15.00")
        assert response_json(again)["refund"]["status"] == "success"
        refunds = fake_provider.refunds(payment["provider_payment_id"])
        assert sorted(r["amount"] for r in refunds) == [500, 1500]
        held = Cart.objects.get(pk=cart.pk)
        assert (held.amount_refunded, held.payment_status) == (Decimal("20.00"), "refunded")

    @pytest.mark.parametrize("kind", ["charge_then_reset", "charge_then_empty_reply"])
    def test_a_refund_whose_answer_is_lost_is_found_in_the_ledger(
        self, api_client, paid, fake_provider, kind
    ):
        cart, _ = paid
        fake_provider.fault(kind, count=None)

        response = refund(api_client, cart, "5.00")

        assert response.status_code == 200, response.content
        assert response_json(response)["refund"]["status"] == "success"
        assert [r["amount"] for r in fake_provider.refunds()] == [500]

    def test_too_slow_is_a_504_and_the_amount_stays_held(
        self, api_client, paid, fake_provider, settings
    ):
        settings.PAYMENT_API_MAX_RETRIES = 0
        cart, _ = paid
        fake_provider.fault("latency", delay_ms=1500)

        response = refund(api_client, cart, "15.00", key="slow")

        body = response_json(response)
        assert (response.status_code, body["error"]["code"]) == (504, "refund_outcome_unknown")
        assert body["refund_made"] is None
        over = refund(api_client, cart, "5.01")
        assert error_of(over)["code"] == "refund_exceeds_captured"

    def test_a_busy_server_answers_503_with_retry_after(self, api_client, paid, settings):
        settings.PAYMENT_MAX_IN_FLIGHT = 1
        cart, _ = paid

        with provider_slot():
            response = refund(api_client, cart, "5.00")

        body = response_json(response)
        assert (response.status_code, body["error"]["code"]) == (503, "payment_provider_busy")
        assert int(response["Retry-After"]) >= 1
        assert body["refund_made"] is False
        assert Refund.objects.count() == 0

    def test_a_refund_the_provider_declines_is_a_402(self, api_client, paid, monkeypatch):
        from payments import services
        from payments.tests.test_pay_service import REFUND_FAILED, ScriptedProvider

        cart, _ = paid
        monkeypatch.setattr(
            services, "provider_api", lambda: ScriptedProvider(refund=[REFUND_FAILED])
        )

        response = refund(api_client, cart, "5.00")

        body = response_json(response)
        assert (response.status_code, body["error"]["code"]) == (402, "refund_declined")
        assert body["refund"]["status"] == "failed"
        assert body["cart"]["payment_status"] == "success"
