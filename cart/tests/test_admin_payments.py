"""The payment ledger in the admin: read-only, searchable, and shown on each cart."""

import pytest

from cart.models import Payment
from cart.tests.factories import CartFactory

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
        "/admin/cart/payment/", {"status__exact": "failed", "q": "pay_abc"}
    )

    assert list(response.context["cl"].result_list) == [declined_payment]


def test_ledger_cannot_be_edited_or_deleted(admin_client, declined_payment):
    url = f"/admin/cart/payment/{declined_payment.pk}/"
    assert admin_client.get(f"{url}change/").status_code == 200  # view only
    assert admin_client.post(f"{url}change/", {"status": "success"}).status_code == 403
    assert admin_client.get(f"{url}delete/").status_code == 403
    assert admin_client.get("/admin/cart/payment/add/").status_code == 403


def test_cart_page_shows_its_payments(admin_client, declined_payment):
    response = admin_client.get(f"/admin/cart/cart/{declined_payment.cart_id}/change/")
    assert "insufficient_funds" in response.content.decode()


def test_ledger_shows_amounts_in_the_currency_and_short_ids(admin_client, declined_payment):
    html = admin_client.get("/admin/cart/payment/").content.decode()

    assert "20.00 USD" in html
    assert f'title="{declined_payment.pk}">{str(declined_payment.pk)[:8]}</span>' in html
    assert f'title="{declined_payment.cart_id}">' in html
    assert "20.0000" not in html


def test_ledger_page_has_no_save_or_delete_button(admin_client, declined_payment):
    html = admin_client.get(f"/admin/cart/payment/{declined_payment.pk}/change/").content
    assert b'name="_save"' not in html
    assert b"deletelink" not in html
