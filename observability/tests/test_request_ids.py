"""X-Request-ID: taken from the caller or made, returned on every answer, sent to the
provider and kept on the attempt and refund rows it created."""

import logging
import re

import pytest

from cart.tests.factories import CartFactory
from observability.context import current_request_id, request_id_bound
from payments.models import Payment, Refund

pytestmark = pytest.mark.django_db


def test_an_answer_carries_a_new_request_id_when_the_caller_sent_none(api_client):
    first = api_client.get("/health/")
    second = api_client.get("/health/")

    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_the_callers_request_id_is_returned_as_sent(api_client):
    response = api_client.get("/api/cart/", HTTP_X_REQUEST_ID="shop-7f3a:checkout.1")

    assert response["X-Request-ID"] == "shop-7f3a:checkout.1"


@pytest.mark.parametrize("sent", ["has space", "x" * 65, "<script>", "-leading-dash", "é"])
def test_an_unusable_request_id_is_replaced(api_client, sent):
    response = api_client.get("/health/", HTTP_X_REQUEST_ID=sent)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_errors_and_answers_refused_before_any_view_carry_it_too(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    too_big = api_client.post(
        "/api/cart/", {"total": "10.00", "currency": "USD"}, HTTP_X_REQUEST_ID="big-1"
    )
    unknown = api_client.get("/nowhere/", HTTP_X_REQUEST_ID="lost-1")

    assert (too_big.status_code, too_big["X-Request-ID"]) == (413, "big-1")
    assert (unknown.status_code, unknown["X-Request-ID"]) == (404, "lost-1")


def test_the_id_is_bound_only_while_its_request_runs(api_client):
    api_client.get("/health/", HTTP_X_REQUEST_ID="done-1")

    assert current_request_id() == ""
    with request_id_bound("task-1"):
        assert current_request_id() == "task-1"
    assert current_request_id() == ""


@pytest.mark.integration
def test_a_pay_request_is_followed_by_its_id_through_log_provider_and_ledger(
    api_client, fake_provider, caplog
):
    cart = CartFactory(total="10.00")

    with caplog.at_level(logging.INFO):
        response = api_client.post(f"/api/cart/{cart.pk}/pay/", {}, HTTP_X_REQUEST_ID="pay-1")

    assert response.status_code == 200, response.content
    assert Payment.objects.get(cart=cart).request_id == "pay-1"
    [charge] = [e for e in fake_provider.journal() if e["path"] == "/request_payment"]
    assert charge["request_id"] == "pay-1"
    lines = [r for r in caplog.records if r.name == "service.request"]
    assert [(r.request_id, r.route, r.status, r.cart_id) for r in lines] == [
        ("pay-1", "/api/cart/{pk}/pay/", 200, str(cart.pk))
    ]


@pytest.mark.integration
def test_a_refund_keeps_the_id_of_the_request_that_asked_for_it(api_client, fake_provider):
    cart = CartFactory(total="10.00")
    api_client.post(f"/api/cart/{cart.pk}/pay/", {}, HTTP_X_REQUEST_ID="pay-2")

    response = api_client.post(
        f"/api/cart/{cart.pk}/refund/", {"amount": "4.00"}, HTTP_X_REQUEST_ID="refund-2"
    )

    assert response.status_code == 200, response.content
    assert Refund.objects.get(cart=cart).request_id == "refund-2"
    [sent] = [e for e in fake_provider.journal() if e["path"] == "/refunds"]
    assert sent["request_id"] == "refund-2"


def test_rows_made_outside_a_request_have_no_id(db):
    cart = CartFactory(total="10.00")
    payment = Payment.objects.create(
        cart=cart, amount="10.00", currency="USD", idempotency_key="k"
    )

    assert Payment.objects.get(pk=payment.pk).request_id == ""


@pytest.mark.integration
def test_the_events_of_a_payment_and_a_refund_keep_their_requests_ids(api_client, fake_provider):
    from events.models import Event, EventType

    cart = CartFactory(total="10.00")
    api_client.post(f"/api/cart/{cart.pk}/pay/", {}, HTTP_X_REQUEST_ID="pay-3")
    api_client.post(f"/api/cart/{cart.pk}/refund/", {"amount": "4.00"}, HTTP_X_REQUEST_ID="ref-3")

    by_type = dict(Event.objects.filter(cart=cart).values_list("type", "request_id"))
    assert by_type == {EventType.CART_PAID: "pay-3", EventType.CART_REFUNDED: "ref-3"}


@pytest.mark.parametrize(
    "changelist", ["/admin/payments/payment/", "/admin/payments/refund/", "/admin/events/event/"]
)
@pytest.mark.integration
def test_the_admin_finds_ledger_rows_and_events_by_request_id(
    admin_client, api_client, fake_provider, changelist
):
    paid, other = CartFactory(total="10.00"), CartFactory(total="10.00")
    for cart in (paid, other):
        api_client.post(f"/api/cart/{cart.pk}/pay/", {}, HTTP_X_REQUEST_ID=f"pay-{cart.pk}")
        api_client.post(
            f"/api/cart/{cart.pk}/refund/", {"amount": "1.00"}, HTTP_X_REQUEST_ID=f"pay-{cart.pk}"
        )

    page = admin_client.get(changelist, {"q": f"pay-{paid.pk}"})

    assert page.status_code == 200
    found = [row.cart_id for row in page.context["cl"].result_list]
    assert found
    assert set(found) == {paid.pk}  # events: its cart.paid and cart.refunded
