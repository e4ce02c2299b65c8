"""The fake provider's events (fake_provider.webhooks): each processed charge and refund is
pushed, signed as Standard Webhooks, to a real local receiver that verifies it; retried
with backoff until answered 2xx; and faulted on demand (drop, delay, duplicate, out of
order, at random)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from common.testing import WebhookReceiver
from CoreRoot.settings import DEV_WEBHOOK_SECRET
from fake_payment_server import create_app
from fake_provider.webhooks import DEV_WEBHOOK_SECRET as PROVIDER_DEV_SECRET

OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LW9mLWFub3RoZXItc2hvcA=="


@pytest.fixture
def receiver():
    with WebhookReceiver(DEV_WEBHOOK_SECRET) as server:
        yield server


@pytest.fixture
def client(receiver, monkeypatch):
    monkeypatch.setenv("FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS", "0.05")
    app = create_app(webhook_url=receiver.url)
    client = app.test_client()
    yield client
    # Empties the sender's queue: its thread would otherwise keep retrying, after the
    # receiver has stopped, events a test left undelivered on purpose.
    client.post("/control/reset")


def charge(client, key: str, amount: int = 1000, method: str = "pm_card_visa"):
    body = {"cart_id": "c-1", "amount": amount, "currency": "USD", "payment_method": method}
    return client.post("/request_payment", json=body, headers={"Idempotency-Key": key})


def deliveries(client) -> list[dict]:
    return client.get("/control/webhooks").get_json()["deliveries"]


def wait_until(condition, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_service_and_the_provider_share_the_development_secret():
    assert PROVIDER_DEV_SECRET == DEV_WEBHOOK_SECRET


def test_charges_declines_and_refunds_are_pushed_signed(client, receiver):
    paid = charge(client, "k1").get_json()
    charge(client, "k2", method="pm_card_chargeDeclined")
    charge(client, "k1")  # a replay: no new event
    client.post(
        "/refunds",
        json={"payment_id": paid["id"], "amount": 300},
        headers={"Idempotency-Key": "r1"},
    )

    assert wait_until(lambda: len(receiver.accepted) == 3)
    types = [body["type"] for _, body in receiver.accepted]
    assert types == ["payment.succeeded", "payment.failed", "refund.succeeded"]
    _, first = receiver.accepted[0]
    assert first["data"]["id"] == paid["id"]
    assert first["data"]["amount"] == 1000
    assert first["data"]["idempotency_key"] == "k1"
    assert receiver.accepted[2][1]["data"]["amount"] == 300


def test_an_event_is_retried_with_backoff_until_answered_2xx(client, receiver):
    receiver.answers = [500, 503]
    charge(client, "k1")
    # The provider records a delivery once the receiver's answer is back, a moment
    # after the receiver has counted it: wait for the record, not for the receiver.
    assert wait_until(lambda: len(deliveries(client)) == 3)
    assert len(receiver.accepted) == 1
    ids = {msg_id for msg_id, _ in receiver.received}
    assert len(ids) == 1  # one webhook-id across the retries
    assert [d["status"] for d in deliveries(client)] == [500, 503, 200]
    assert [d["attempt"] for d in deliveries(client)] == [1, 2, 3]


def test_an_unreachable_url_is_retried_and_then_given_up(receiver, monkeypatch):
    app = create_app(webhook_url="http://127.0.0.1:9/nothing")
    sender = app.extensions["fake_payment"].webhooks
    sender.retry_first, sender.max_attempts = 0.01, 2
    charge(app.test_client(), "k1")
    assert wait_until(lambda: len(sender.snapshot()["deliveries"]) == 2)
    time.sleep(0.1)
    assert [d["status"] for d in sender.snapshot()["deliveries"]] == [None, None]
    assert sender.snapshot()["pending"] == 0


def test_a_signature_with_another_secret_is_refused_by_the_receiver(client, receiver):
    client.post("/control/webhooks", json={"secret": OTHER_SECRET})
    receiver.answers = []
    charge(client, "k1")
    assert wait_until(lambda: len(receiver.refused) >= 1)
    assert receiver.accepted == []


def test_drop_sends_nothing_and_delay_sends_late(client, receiver):
    client.post("/control/faults", json={"kind": "webhook_drop"})
    client.post("/control/faults", json={"kind": "webhook_delay", "delay_ms": 300})
    charge(client, "dropped")
    started = time.monotonic()
    charge(client, "late")
    assert wait_until(lambda: len(receiver.accepted) == 1)
    assert time.monotonic() - started >= 0.25
    assert receiver.accepted[0][1]["data"]["idempotency_key"] == "late"
    time.sleep(0.2)
    assert len(receiver.accepted) == 1
    assert deliveries(client)[0]["fault"] == "webhook_drop"


def test_duplicate_and_out_of_order(client, receiver):
    client.post("/control/faults", json={"kind": "webhook_out_of_order"})
    client.post("/control/faults", json={"kind": "webhook_duplicate"})
    charge(client, "first")
    charge(client, "second")
    assert wait_until(lambda: len(receiver.accepted) == 3)
    keys = [body["data"]["idempotency_key"] for _, body in receiver.accepted]
    assert keys[0] == "second"
    assert sorted(keys) == ["first", "second", "second"]


def test_an_event_held_out_of_order_goes_out_after_its_delay_alone(client, receiver):
    client.post("/control/faults", json={"kind": "webhook_out_of_order", "delay_ms": 200})
    charge(client, "alone")
    assert wait_until(lambda: len(receiver.accepted) == 1)


def test_random_webhook_faults_are_seeded_and_reported(client, receiver):
    fault = {"mode": "random", "rate": 1, "seed": 7, "kinds": ["webhook_drop"]}
    assert client.post("/control/faults", json=fault).status_code == 201
    charge(client, "k1")
    config = client.get("/control/webhooks").get_json()
    assert config["random_faults"]["hits"] == 1
    assert client.delete("/control/faults").status_code == 200
    assert client.get("/control/webhooks").get_json()["random_faults"] is None
    time.sleep(0.1)
    assert receiver.received == []


def test_reset_restores_the_configured_url_and_forgets_deliveries(client, receiver):
    client.post("/control/webhooks", json={"url": "http://127.0.0.1:9/elsewhere"})
    client.post("/control/faults", json={"kind": "webhook_drop", "count": None})
    client.post("/control/reset")
    config = client.get("/control/webhooks").get_json()
    assert config["url"] == receiver.url
    assert config["faults"] == []
    assert config["deliveries"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "webhook_drop", "count": 0},
        {"kind": "webhook_delay", "delay_ms": -1},
        {"mode": "random", "rate": 2, "seed": 1, "kinds": ["webhook_drop"]},
    ],
)
def test_bad_webhook_faults_are_400s(client, body):
    response = client.post("/control/faults", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_field"


def test_a_url_that_is_not_a_string_is_a_400(client):
    response = client.post("/control/webhooks", json={"url": 5})
    assert response.status_code == 400


def test_without_a_url_nothing_is_published(receiver):
    client = create_app(webhook_url="").test_client()
    charge(client, "k1")
    assert client.get("/control/webhooks").get_json()["published"] == 0


def test_amounts_in_events_are_integers_of_minor_units(client, receiver):
    charge(client, "k1", amount=1999)
    assert wait_until(lambda: len(receiver.accepted) == 1)
    amount = receiver.accepted[0][1]["data"]["amount"]
    assert amount == 1999
    assert not isinstance(amount, Decimal | float)


def test_the_retry_interval_is_read_in_seconds_to_the_millisecond(monkeypatch):
    from fake_payment_server import EXTENSION_KEY

    monkeypatch.setenv("FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS", "0.25")
    assert create_app(webhook_url="").extensions[EXTENSION_KEY].webhooks.retry_first == 0.25
    monkeypatch.delenv("FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS")
    assert create_app(webhook_url="").extensions[EXTENSION_KEY].webhooks.retry_first == 1


@pytest.mark.parametrize("value", ["soon", "-1", "NaN", "Infinity"])
def test_an_unusable_retry_interval_is_refused_at_start(monkeypatch, value):
    monkeypatch.setenv("FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS", value)

    with pytest.raises(ValueError, match="Invalid FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS"):
        create_app(webhook_url="")
