"""The worker as it runs in production (`manage.py run_worker`, a separate process on the
test database) delivering to a real receiver that verifies signatures: the shop gets
`cart.paid` exactly once per event even when its first two answers are 500 and the worker
dies in the middle of a delivery and is started again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal

import pytest

from cart.services import cart_pay
from cart.tests.factories import CartFactory
from common.testing import WebhookReceiver
from conftest import ROOT, start_process, stop_process
from events.models import Event, EventDelivery, EventStatus
from observability.context import request_id_bound
from tests.test_e2e import subprocess_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def start_worker(shop_url: str):
    return start_process(
        [sys.executable, "manage.py", "run_worker", "--interval", "0.1"],
        env={
            "DATABASE_URL": subprocess_database_url(),
            "ENV": "DEV",
            "SHOP_WEBHOOK_URL": shop_url,
            "EVENTS_RETRY_FIRST_SECONDS": "0.2",
            "EVENTS_DELIVERY_LEASE_SECONDS": "2",
            "EVENTS_SWEEP_SECONDS": "0.5",
        },
    )


def test_cart_paid_reaches_the_shop_once_through_500s_and_a_worker_restart(
    fake_provider, settings
):
    # 500, 500, then the third try hangs until the worker serving it has been killed.
    with WebhookReceiver(settings.SHOP_WEBHOOK_SECRET, answers=[500, 500, "hang"]) as shop:
        settings.SHOP_WEBHOOK_URL = shop.url
        carts = [CartFactory(total=Decimal("10.00")) for _ in range(3)]
        worker = start_worker(shop.url)
        try:
            for cart in carts:
                cart_pay(cart=cart, payment_method="pm_card_visa")
            assert shop.wait_for(lambda s: len(s.received) >= 2 or s.released.is_set(), 20)
            # The third request is held open: kill the worker in the middle of it.
            assert shop.wait_for(lambda s: s.answers == [], 20)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        shop.release()
        worker = start_worker(shop.url)
        try:
            delivered = shop.wait_for(lambda s: len(set(s.accepted_ids())) == 3, 30)
        finally:
            stop_process(worker)

    assert delivered, shop.received
    events = list(Event.objects.all())
    assert {e.cart_id for e in events} == {c.pk for c in carts}
    assert sorted(shop.accepted_ids()) == sorted(str(e.pk) for e in events)  # once each
    assert all(e.status == EventStatus.DELIVERED for e in events)
    answers = [status for _, status in shop.received]
    assert answers.count(500) >= 3  # two answered 500, and the one whose worker died
    assert EventDelivery.objects.filter(status_code=500).count() == 2
    for msg_id, body in shop.accepted:
        assert body["id"] == msg_id
        assert body["type"] == "cart.paid"


def test_the_worker_delivers_an_event_under_the_request_id_that_recorded_it(
    fake_provider, settings, tmp_path
):
    log = tmp_path / "worker.log"
    with WebhookReceiver(settings.SHOP_WEBHOOK_SECRET, answers=[500]) as shop:
        settings.SHOP_WEBHOOK_URL = shop.url
        cart = CartFactory(total=Decimal("10.00"))
        with request_id_bound("checkout-77"):
            cart_pay(cart=cart, payment_method="pm_card_visa")
        env = {
            "DATABASE_URL": subprocess_database_url(),
            "ENV": "DEV",
            "LOG_FORMAT": "json",
            "SHOP_WEBHOOK_URL": shop.url,
            "EVENTS_RETRY_FIRST_SECONDS": "0.2",
        }
        with log.open("w") as output:
            worker = subprocess.Popen(
                [sys.executable, "manage.py", "run_worker", "--interval", "0.1"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=output,
                stderr=output,
            )
        try:
            delivered = shop.wait_for(lambda s: len(s.accepted) == 1, 20)
        finally:
            stop_process(worker)

    assert delivered, shop.received
    assert Event.objects.get(cart=cart).request_id == "checkout-77"
    assert [headers.get("X-Request-ID") for headers in shop.headers] == ["checkout-77"] * 2
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    [failed_try] = [line for line in lines if "answered 500" in line["message"]]
    assert (failed_try["level"], failed_try["request_id"]) == ("WARNING", "checkout-77")
