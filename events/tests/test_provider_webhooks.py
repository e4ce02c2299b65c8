"""The real fake provider process pushing its signed events to the service (a live
server on the test database): an attempt held open after a lost answer is settled by the
webhook within seconds, without reconcile; duplicate and out-of-order deliveries settle
once; a duplicate charge is given back by the task, through the real provider."""

from __future__ import annotations

import sys
import time
from decimal import Decimal

import pytest

from cart.models import Cart, PaymentStatus
from cart.tests.factories import CartFactory
from common.testing import FakeProvider, error_of
from conftest import free_port, start_process, stop_process, wait_until_answers
from events.models import Event, EventType, ProviderEvent
from payments.models import Payment, PaymentAttemptStatus, RefundReason, RefundStatus
from payments.provider import provider_api
from payments.tasks import give_back_duplicate

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def local_provider_url():
    """A fake provider process of this test's own, on this machine, so that it can reach
    the live server (Compose's provider, in another container, could not)."""
    port = free_port()
    process = start_process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers=1",
            "--threads=8",
            "--no-control-socket",
            f"--bind=127.0.0.1:{port}",
            "fake_payment_server:app",
        ],
        env={"FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS": "0.2"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/inspect", process)
        yield url
    finally:
        stop_process(process)


@pytest.fixture
def webhooks(local_provider_url, live_server, settings):
    settings.PAYMENT_API_BASE_URL = local_provider_url
    settings.PAYMENT_API_READ_TIMEOUT = 1.0
    settings.PAYMENT_API_RETRY_BACKOFF = 0.01
    settings.PAYMENT_API_MAX_RETRIES = 0
    provider = FakeProvider(local_provider_url)
    provider.reset()
    provider.send_webhooks_to(f"{live_server.url}/api/webhooks/payment-provider/")
    yield provider
    provider.reset()


# When the provider commits a charge after resetting the connection: the pay's ledger
# lookup must come first, which on a loaded 2-CPU machine took more than 300 ms once.
LATE_COMMIT_MS = 1500


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def pay_held_open(api_client, cart) -> None:
    """Pay while the provider resets the connection and charges only afterwards: the
    ledger lookup finds nothing yet, so the attempt is held open (504, unknown)."""
    response = api_client.post(f"/api/cart/{cart.pk}/pay/", {"payment_method": "pm_card_visa"})
    assert (response.status_code, error_of(response)["code"]) == (504, "payment_outcome_unknown")
    assert Payment.objects.get(cart=cart).status == PaymentAttemptStatus.UNKNOWN


def paid(cart) -> bool:
    return Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS


def test_an_attempt_held_open_after_a_lost_answer_is_settled_by_the_webhook(api_client, webhooks):
    cart = CartFactory(total=Decimal("10.00"))
    webhooks.fault("reset_then_charge", delay_ms=LATE_COMMIT_MS)
    pay_held_open(api_client, cart)

    assert wait_for(lambda: paid(cart)), "the webhook did not settle the attempt"

    payment = Payment.objects.get(cart=cart)
    assert payment.status == PaymentAttemptStatus.SUCCESS
    [charge] = webhooks.charges(cart.pk)
    assert payment.provider_payment_id == charge["id"]
    assert ProviderEvent.objects.get().type == "payment.succeeded"
    assert Event.objects.filter(cart=cart, type=EventType.CART_PAID).count() == 1


def test_duplicate_and_out_of_order_deliveries_settle_each_attempt_once(api_client, webhooks):
    first, second = CartFactory(total=Decimal("5.00")), CartFactory(total=Decimal("6.00"))
    webhooks.fault("webhook_out_of_order")  # the first event waits for the second
    webhooks.fault("webhook_duplicate")  # the second is delivered twice
    webhooks.fault("reset_then_charge", count=2, delay_ms=LATE_COMMIT_MS)
    pay_held_open(api_client, first)
    pay_held_open(api_client, second)

    assert wait_for(lambda: paid(first) and paid(second))
    assert wait_for(lambda: len([d for d in webhooks.webhook_deliveries() if d["status"]]) == 3)

    deliveries = webhooks.webhook_deliveries()
    ids = [d["id"] for d in deliveries]
    second_event = ProviderEvent.objects.get(body__contains=str(second.pk)).webhook_id
    assert ids[0] == second_event  # the first cart's event was held back until then
    assert ids.count(second_event) == 2  # and delivered twice
    assert {d["status"] for d in deliveries} == {200}
    assert ProviderEvent.objects.count() == 2
    for cart in (first, second):
        assert Payment.objects.get(cart=cart).status == PaymentAttemptStatus.SUCCESS
        assert Event.objects.filter(cart=cart, type=EventType.CART_PAID).count() == 1
        assert len(webhooks.charges(cart.pk)) == 1


def test_a_forged_secret_is_refused_and_retried_until_the_secret_is_right(
    api_client, webhooks, live_server
):
    url = f"{live_server.url}/api/webhooks/payment-provider/"
    webhooks.send_webhooks_to(url, secret="whsec_Zm9yZ2VkLXNlY3JldC1ub2JvZHktc2hhcmVz")
    cart = CartFactory(total=Decimal("10.00"))
    webhooks.fault("reset_then_charge", delay_ms=LATE_COMMIT_MS)
    pay_held_open(api_client, cart)

    assert wait_for(lambda: any(d["status"] == 401 for d in webhooks.webhook_deliveries()))
    assert not paid(cart)
    assert not ProviderEvent.objects.exists()


def test_a_duplicate_charge_is_given_back_by_the_task_through_the_provider(fake_provider):
    cart = CartFactory(total=Decimal("7.00"), payment_status=PaymentStatus.SUCCESS)
    charge = provider_api().request_payment(
        cart_id=str(cart.pk),
        amount=Decimal("7.00"),
        currency="USD",
        idempotency_key="stray-charge",
        payment_method="pm_card_visa",
    )
    duplicate = Payment.objects.create(
        cart=cart,
        amount=Decimal("7.00"),
        currency="USD",
        status=PaymentAttemptStatus.DUPLICATE,
        idempotency_key="stray-charge",
        provider_payment_id=charge.payment_id,
    )

    assert give_back_duplicate.call(str(duplicate.pk)) == "refund success"
    assert give_back_duplicate.call(str(duplicate.pk)) == "nothing owed"

    [refund] = duplicate.refunds.all()
    assert refund.reason == RefundReason.DUPLICATE_CHARGE
    assert refund.status == RefundStatus.SUCCESS
    assert [r["amount"] for r in fake_provider.refunds(charge.payment_id)] == [700]
