"""The payment ledger in the admin: read-only, searchable, and shown on each cart."""

from decimal import Decimal

import pytest

from cart.tests.factories import CartFactory
from payments.errors import RefundOutcomeUnknownError
from payments.models import Payment, Refund

pytestmark = pytest.mark.django_db


@pytest.fixture
def declined_payment():
    cart = CartFactory(payment_status="failed")
    return Payment.objects.create(
        cart=cart,
        amount=cart.total,
        currency="USD",
        status="failed",
        decline_code="insufficient_funds",
        provider_payment_id="pay_abc",
        idempotency_key=f"cart-{cart.pk}-k",
    )


def test_ledger_lists_and_filters_payments(admin_client, declined_payment):
    response = admin_client.get(
        "/admin/payments/payment/", {"status__exact": "failed", "q": "pay_abc"}
    )

    assert list(response.context["cl"].result_list) == [declined_payment]


def test_ledger_cannot_be_edited_or_deleted(admin_client, declined_payment):
    url = f"/admin/payments/payment/{declined_payment.pk}/"
    assert admin_client.get(f"{url}change/").status_code == 200  # view only
    assert admin_client.post(f"{url}change/", {"status": "success"}).status_code == 403
    assert admin_client.get(f"{url}delete/").status_code == 403
    assert admin_client.get("/admin/payments/payment/add/").status_code == 403


def test_ledger_shows_amounts_in_the_currency_and_short_ids(admin_client, declined_payment):
    html = admin_client.get("/admin/payments/payment/").content.decode()

    assert "20.00 USD" in html
    assert f'title="{declined_payment.pk}">{str(declined_payment.pk)[:8]}</span>' in html
    assert f'title="{declined_payment.cart_id}">' in html
    assert "20.0000" not in html


def test_ledger_page_has_no_save_or_delete_button(admin_client, declined_payment):
    html = admin_client.get(f"/admin/payments/payment/{declined_payment.pk}/change/").content
    assert b'name="_save"' not in html
    assert b"deletelink" not in html


def test_cart_page_shows_its_payments(admin_client, declined_payment):
    response = admin_client.get(f"/admin/cart/cart/{declined_payment.cart_id}/change/")
    assert "insufficient_funds" in response.content.decode()


@pytest.fixture
def refunded_cart():
    cart = CartFactory(payment_status="partially_refunded", amount_refunded=Decimal("5.00"))
    payment = Payment.objects.create(
        cart=cart,
        amount=cart.total,
        currency="USD",
        status="success",
        provider_payment_id="pay_ok",
        idempotency_key=f"cart-{cart.pk}-ok",
        amount_refunded=Decimal("5.00"),
    )
    Refund.objects.create(
        payment=payment,
        cart=cart,
        amount=Decimal("5.00"),
        currency="USD",
        status="success",
        provider_refund_id="re_abc",
        idempotency_key="refund-abc",
    )
    return cart


def test_refund_ledger_lists_filters_and_cannot_be_edited(admin_client, refunded_cart):
    listed = admin_client.get(
        "/admin/payments/refund/", {"status__exact": "success", "q": "re_abc"}
    )
    refund = Refund.objects.get()

    assert list(listed.context["cl"].result_list) == [refund]
    assert admin_client.post(f"/admin/payments/refund/{refund.pk}/change/", {}).status_code == 403
    assert admin_client.get("/admin/payments/refund/add/").status_code == 403
    page = admin_client.get(f"/admin/cart/cart/{refunded_cart.pk}/change/").content.decode()
    assert "re_abc" in page


@pytest.mark.integration
def test_the_cart_action_refunds_what_is_left_through_the_refund_service(
    admin_client, fake_provider
):
    cart = CartFactory(total=Decimal("12.00"))
    assert (
        admin_client.post(
            f"/api/cart/{cart.pk}/pay/", {}, content_type="application/json"
        ).status_code
        == 200
    )
    pending = CartFactory()

    response = admin_client.post(
        "/admin/cart/cart/",
        {"action": "refund_remaining", "_selected_action": [cart.pk, pending.pk]},
        follow=True,
    )

    text = [str(message) for message in response.context["messages"]]
    assert any("refund of 12.00 USD success" in line for line in text), text
    assert any("Only a paid cart can be refunded" in line for line in text), text
    cart.refresh_from_db()
    assert (cart.payment_status, cart.amount_refunded) == ("refunded", Decimal("12.00"))
    assert [r["amount"] for r in fake_provider.refunds()] == [1200]


@pytest.mark.integration
def test_a_refund_left_unknown_by_the_action_says_reconcile_settles_it(
    admin_client, fake_provider
):
    # The admin sends no Idempotency-Key: "retry with the same key" cannot be followed,
    # and trying again only says the amount is held.
    cart = CartFactory(total=Decimal("12.00"))
    pay = admin_client.post(f"/api/cart/{cart.pk}/pay/", {}, content_type="application/json")
    assert pay.status_code == 200
    fake_provider.fault("http_503", count=None)

    response = admin_client.post(
        "/admin/cart/cart/",
        {"action": "refund_remaining", "_selected_action": [cart.pk]},
        follow=True,
    )

    [line] = [str(message) for message in response.context["messages"]]
    assert "reconcile_payments" in line
    assert "Idempotency-Key" not in line
    assert "12.00 USD" in line
    assert fake_provider.refunds() == []


def test_a_refund_settled_before_the_action_reads_it_back_is_said_so(admin_client, monkeypatch):
    # Between the refund's 504 and the action's reading of the held amount, the
    # provider's webhook (or reconcile) may settle it: no open refund is left to show.
    cart = CartFactory(payment_status="success")

    def settled_meanwhile(*, cart):
        raise RefundOutcomeUnknownError()

    monkeypatch.setattr("payments.admin.refund_create", settled_meanwhile)

    response = admin_client.post(
        "/admin/cart/cart/",
        {"action": "refund_remaining", "_selected_action": [cart.pk]},
        follow=True,
    )

    assert response.status_code == 200
    [line] = [str(message) for message in response.context["messages"]]
    assert "settled since" in line, line
