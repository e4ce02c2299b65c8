"""The fake payment provider keeps the contract in docs/payment-provider.md.

Everything goes through Flask's test client on a fresh `create_app()`, except the last
tests, which start the real server to see connections really being reset or dropped.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from conftest import free_port, start_process, stop_process, wait_until_answers
from fake_payment_server import create_app

PAYMENT_FIELDS = [
    "id",
    "cart_id",
    "amount",
    "currency",
    "payment_status",
    "decline_code",
    "payment_method",
    "idempotency_key",
    "created",
]


@pytest.fixture
def sleeps() -> list[float]:
    """Seconds the app asked to sleep; recorded instead of slept."""
    return []


@pytest.fixture
def app(sleeps: list[float]) -> Flask:
    return create_app(balance="20.00", sleep=sleeps.append)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def charge(
    client: FlaskClient, headers: dict[str, str] | None = None, **fields: Any
) -> TestResponse:
    """POST /request_payment with a valid body, changed by `fields`."""
    body = {"cart_id": "cart-1", "amount": 1000, **fields}
    return client.post("/request_payment", json=body, headers=headers or {})


def post_raw(client: FlaskClient, text: str | bytes, **headers: str) -> TestResponse:
    return client.post(
        "/request_payment", data=text, content_type="application/json", headers=headers
    )


def inspect(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/inspect")
    assert response.status_code == 200
    return response.get_json()


def journal(client: FlaskClient) -> list[dict[str, Any]]:
    return client.get("/control/journal").get_json()["data"]


def assert_error(response: TestResponse, status: int, code: str, field: str | None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert isinstance(error["message"], str)
    assert error["message"]


FRESH = {
    "available": 1,
    "card_limit": "20.00",
    "balance": "20.00",
    "payments": 0,
    "charges": 0,
    "refunds": 0,
    "faults": [],
    "random_faults": None,
}


def assert_nothing_charged(client: FlaskClient) -> None:
    state = inspect(client)
    assert (state["payments"], state["charges"], state["balance"]) == (0, 0, "20.00")


# -- the tutorial's contract and the test cards -------------------------------------------


def test_charge_within_the_limit_succeeds_and_echoes_the_request(client: FlaskClient) -> None:
    response = charge(client, amount=1000, currency="USD")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "Idempotent-Replayed" not in response.headers
    payment = response.get_json()
    assert list(payment) == PAYMENT_FIELDS
    assert re.fullmatch(r"pay_[0-9a-f]{24}", payment["id"])
    assert payment["cart_id"] == "cart-1"
    assert payment["amount"] == 1000
    assert payment["currency"] == "USD"
    assert payment["payment_status"] == "success"
    assert payment["decline_code"] is None
    assert payment["payment_method"] == "pm_card_default"
    assert payment["idempotency_key"] is None
    assert datetime.fromisoformat(payment["created"]).utcoffset() == timedelta(0)


def test_charge_above_the_limit_is_declined_insufficient_funds(client: FlaskClient) -> None:
    payment = charge(client, amount=2001).get_json()

    assert payment["payment_status"] == "failed"
    assert payment["decline_code"] == "insufficient_funds"
    state = inspect(client)
    assert (state["payments"], state["charges"]) == (1, 0)


def test_the_default_card_is_a_per_charge_limit_not_a_balance(client: FlaskClient) -> None:
    # As in the tutorial's fake server and Stripe's test cards: any number of charges
    # below the limit succeed; the limit is what one charge may take.
    statuses = [charge(client, amount=1000).get_json()["payment_status"] for _ in range(5)]
    at_limit = charge(client, amount=2000).get_json()["payment_status"]

    assert statuses == ["success"] * 5
    assert at_limit == "success"
    state = inspect(client)
    assert (state["payments"], state["charges"], state["card_limit"]) == (6, 6, "20.00")


def test_each_prepaid_charge_debits_the_balance_until_it_runs_out(client: FlaskClient) -> None:
    statuses = [
        charge(client, amount=1000, payment_method="pm_card_prepaid").get_json()["payment_status"]
        for _ in range(3)
    ]

    assert statuses == ["success", "success", "failed"]
    state = inspect(client)
    assert (state["payments"], state["charges"], state["balance"]) == (3, 2, "0.00")


@pytest.mark.parametrize(("amount", "status"), [(20, "success"), (21, "failed")])
def test_jpy_amounts_are_whole_yen_against_the_major_unit_limit(
    client: FlaskClient, amount: int, status: str
) -> None:
    payment = charge(client, amount=amount, currency="JPY").get_json()

    assert (payment["amount"], payment["currency"]) == (amount, "JPY")
    assert payment["payment_status"] == status


def test_three_decimal_currency_debits_fractions_of_a_major_unit(client: FlaskClient) -> None:
    paid = charge(client, amount=5, currency="BHD", payment_method="pm_card_prepaid")

    assert paid.get_json()["payment_status"] == "success"
    assert inspect(client)["balance"] == "19.995"


def test_lower_case_currency_is_accepted_and_answered_upper_case(client: FlaskClient) -> None:
    assert charge(client, currency="eur").get_json()["currency"] == "EUR"


def test_integer_cart_id_is_echoed_as_an_integer(client: FlaskClient) -> None:
    assert charge(client, cart_id=42).get_json()["cart_id"] == 42


def test_longest_cart_id_and_idempotency_key_are_accepted(client: FlaskClient) -> None:
    response = charge(client, {"Idempotency-Key": "k" * 255}, cart_id="c" * 64)

    assert response.status_code == 200


def test_largest_amount_is_ten_billion_major_units(client: FlaskClient) -> None:
    biggest = {"amount": 10_000_000_000 * 100, "payment_method": "pm_card_visa"}

    assert charge(client, **biggest).get_json()["payment_status"] == "success"
    assert charge(client, amount=10_000_000_000, currency="JPY").status_code == 200


@pytest.mark.parametrize(
    ("payment_method", "status", "decline_code"),
    [
        ("pm_card_visa", "success", None),
        ("pm_card_chargeDeclined", "failed", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "failed", "insufficient_funds"),
        ("pm_card_chargeDeclinedProcessingError", "failed", "processing_error"),
    ],
)
def test_test_payment_methods_ignore_the_limit_and_the_balance(
    client: FlaskClient, payment_method: str, status: str, decline_code: str | None
) -> None:
    payment = charge(client, amount=999_999, payment_method=payment_method).get_json()

    assert payment["payment_method"] == payment_method
    assert (payment["payment_status"], payment["decline_code"]) == (status, decline_code)
    state = inspect(client)
    assert state["balance"] == "20.00"
    assert state["charges"] == (1 if status == "success" else 0)


def test_explicit_default_card_uses_the_limit(client: FlaskClient) -> None:
    under = charge(client, amount=500, payment_method="pm_card_default").get_json()
    over = charge(client, amount=2500, payment_method="pm_card_default").get_json()

    assert (under["payment_method"], under["payment_status"]) == ("pm_card_default", "success")
    assert (over["payment_status"], over["decline_code"]) == ("failed", "insufficient_funds")
    assert inspect(client)["balance"] == "20.00"


# -- requests refused with 400 ------------------------------------------------------------


@pytest.mark.parametrize("field", ["cart_id", "amount"])
def test_missing_required_field_is_named(client: FlaskClient, field: str) -> None:
    body = {"cart_id": "cart-1", "amount": 1000}
    del body[field]

    assert_error(client.post("/request_payment", json=body), 400, "missing_field", field)
    assert_nothing_charged(client)


@pytest.mark.parametrize(
    "amount_json",
    ["10.5", "10.0", "1e3", '"10"', "true", "false", "0", "-5", "null", "[10]", "100000000000001"],
)
def test_amount_must_be_a_positive_json_integer_within_the_limit(
    client: FlaskClient, amount_json: str
) -> None:
    response = post_raw(client, f'{{"cart_id": "cart-1", "amount": {amount_json}}}')

    assert_error(response, 400, "invalid_field", "amount")
    assert_nothing_charged(client)


def test_amount_limit_depends_on_the_currency_exponent(client: FlaskClient) -> None:
    response = charge(client, amount=10_000_000_001, currency="JPY")

    assert_error(response, 400, "invalid_field", "amount")


@pytest.mark.parametrize("currency", ["ZZZ", "US", "usd ", "", 840, None, ["USD"], "XAU", "XXX"])
def test_currency_must_be_an_iso_code_with_minor_units(
    client: FlaskClient, currency: object
) -> None:
    assert_error(charge(client, currency=currency), 400, "invalid_field", "currency")
    assert_nothing_charged(client)


@pytest.mark.parametrize("cart_id", ["", "c" * 65, True, None, 1.5, [], {}])
def test_cart_id_must_be_a_short_string_or_an_integer(
    client: FlaskClient, cart_id: object
) -> None:
    assert_error(charge(client, cart_id=cart_id), 400, "invalid_field", "cart_id")


@pytest.mark.parametrize("payment_method", ["pm_card_unknown", "", 7, None, ["pm_card_visa"]])
def test_unknown_payment_method_is_refused(client: FlaskClient, payment_method: object) -> None:
    response = charge(client, payment_method=payment_method)

    assert_error(response, 400, "invalid_field", "payment_method")
    assert_nothing_charged(client)


@pytest.mark.parametrize(
    "body",
    [
        '{"cart_id": ',
        "",
        "not json",
        '{"cart_id": "c", "amount": NaN}',
        b'{"cart_id": "\xff", "amount": 1}',
        "[" * 50_000,
    ],
)
def test_invalid_json_is_malformed_json(client: FlaskClient, body: str | bytes) -> None:
    assert_error(post_raw(client, body), 400, "malformed_json", None)
    assert_nothing_charged(client)


@pytest.mark.parametrize("body", ["[]", '"text"', "42", "null", '[{"cart_id": 1}]'])
def test_json_that_is_not_an_object_is_malformed_json(client: FlaskClient, body: str) -> None:
    assert_error(post_raw(client, body), 400, "malformed_json", None)


def test_body_must_be_sent_as_application_json(client: FlaskClient) -> None:
    response = client.post(
        "/request_payment", data='{"cart_id": "c", "amount": 1}', content_type="text/plain"
    )

    assert_error(response, 400, "invalid_field", "Content-Type")


@pytest.mark.parametrize("key", ["", "k" * 256, "tab\there", "caf\u00e9"])
def test_invalid_idempotency_key_is_refused(client: FlaskClient, key: str) -> None:
    response = charge(client, {"Idempotency-Key": key})

    assert_error(response, 400, "invalid_field", "Idempotency-Key")
    assert_nothing_charged(client)


def test_oversized_body_is_refused_with_json(client: FlaskClient) -> None:
    response = post_raw(client, " " * (65 * 1024))

    assert_error(response, 413, "request_entity_too_large", None)


# -- idempotency --------------------------------------------------------------------------


def test_same_idempotency_key_and_body_replays_without_second_debit(
    client: FlaskClient,
) -> None:
    first = charge(client, {"Idempotency-Key": "cart-1-attempt-1"})
    second = charge(client, {"Idempotency-Key": "cart-1-attempt-1"})

    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_data() == first.get_data()
    assert first.get_json()["idempotency_key"] == "cart-1-attempt-1"
    state = inspect(client)
    assert (state["payments"], state["charges"]) == (1, 1)


def test_a_stored_decline_is_replayed_too(client: FlaskClient) -> None:
    headers = {"Idempotency-Key": "k-decline"}
    first = charge(client, headers, amount=5000, payment_method="pm_card_prepaid")
    client.post("/control/balance", json={"balance": "100.00"})
    second = charge(client, headers, amount=5000, payment_method="pm_card_prepaid")

    assert first.get_json()["decline_code"] == "insufficient_funds"
    assert second.get_data() == first.get_data()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert inspect(client)["payments"] == 1


def test_key_order_and_spacing_of_the_body_do_not_change_its_fingerprint(
    client: FlaskClient,
) -> None:
    headers = {"Idempotency-Key": "k-order"}
    first = post_raw(client, '{"cart_id": "c", "amount": 100}', **headers)
    second = post_raw(client, '{ "amount":100,"cart_id":"c" }', **headers)

    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_data() == first.get_data()


@pytest.mark.parametrize(
    "changed", [{"amount": 1001}, {"cart_id": "cart-2"}, {"currency": "usd"}, {"extra": 1}]
)
def test_same_key_with_a_different_body_is_409(
    client: FlaskClient, changed: dict[str, Any]
) -> None:
    headers = {"Idempotency-Key": "k-reused"}
    charge(client, headers)

    response = charge(client, headers, **changed)

    assert_error(response, 409, "idempotency_key_reused", "Idempotency-Key")
    assert inspect(client)["payments"] == 1


def test_requests_without_a_key_are_each_charged(client: FlaskClient) -> None:
    first, second = charge(client), charge(client)

    assert first.get_json()["id"] != second.get_json()["id"]
    assert inspect(client)["charges"] == 2


def test_concurrent_requests_with_one_key_charge_exactly_once(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = app.extensions["fake_payment"]
    record_charge = state.record_charge

    def slow_record_charge(*args: Any) -> Any:
        time.sleep(0.02)  # widen the race window: without the key lock all would charge
        return record_charge(*args)

    monkeypatch.setattr(state, "record_charge", slow_record_charge)
    threads_count = 12
    barrier = threading.Barrier(threads_count)
    responses: list[TestResponse] = []

    def pay() -> None:
        client = app.test_client()
        barrier.wait()
        responses.append(
            charge(client, {"Idempotency-Key": "same-key"}, payment_method="pm_card_prepaid")
        )

    threads = [threading.Thread(target=pay) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in responses] == [200] * threads_count
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == threads_count - 1
    assert len({r.get_data() for r in responses}) == 1
    ledger = app.test_client().get("/payments").get_json()["data"]
    assert len(ledger) == 1
    assert inspect(app.test_client())["balance"] == "10.00"


def test_concurrent_charges_never_overdraw_the_balance(app: Flask) -> None:
    threads_count = 25
    barrier = threading.Barrier(threads_count)

    def pay(number: int) -> None:
        client = app.test_client()
        barrier.wait()
        charge(
            client,
            {"Idempotency-Key": f"key-{number}"},
            amount=100,
            payment_method="pm_card_prepaid",
        )

    threads = [threading.Thread(target=pay, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    state = inspect(app.test_client())
    assert (state["payments"], state["charges"], state["balance"]) == (25, 20, "0.00")


# -- the ledger ---------------------------------------------------------------------------


def test_payment_is_found_by_id(client: FlaskClient) -> None:
    created = charge(client).get_json()

    response = client.get(f"/payments/{created['id']}")

    assert response.status_code == 200
    assert response.get_json() == created
    assert list(response.get_json()) == PAYMENT_FIELDS


def test_unknown_payment_id_is_404_payment_not_found(client: FlaskClient) -> None:
    assert_error(client.get("/payments/pay_000"), 404, "payment_not_found", None)


def test_payments_are_found_by_idempotency_key(client: FlaskClient) -> None:
    created = charge(client, {"Idempotency-Key": "k-find"}).get_json()
    charge(client, {"Idempotency-Key": "k-other"})

    assert client.get("/payments?idempotency_key=k-find").get_json() == {"data": [created]}
    assert client.get("/payments?idempotency_key=k-none").get_json() == {"data": []}


def test_payments_are_listed_by_cart_oldest_first(client: FlaskClient) -> None:
    first = charge(client, cart_id=42, amount=100).get_json()
    charge(client, cart_id="other", amount=100)
    third = charge(client, cart_id=42, amount=99_999).get_json()

    data = client.get("/payments?cart_id=42").get_json()["data"]

    assert data == [first, third]


def test_all_payments_are_listed_oldest_first_declines_included(client: FlaskClient) -> None:
    ids = [charge(client, amount=amount).get_json()["id"] for amount in (1000, 5000, 1000)]

    data = client.get("/payments").get_json()["data"]

    assert [p["id"] for p in data] == ids
    assert [p["payment_status"] for p in data] == ["success", "failed", "success"]


# -- controls -----------------------------------------------------------------------------


def test_inspect_reports_availability_balance_counts_and_queued_faults(
    client: FlaskClient,
) -> None:
    assert inspect(client) == FRESH


def test_journal_records_every_charge_request(client: FlaskClient) -> None:
    charge(client, {"Idempotency-Key": "k-1"})
    post_raw(client, "not json")
    charge(client, {"X-Fake-Fault": "http_503"}, amount=7)

    entries = journal(client)

    assert [(e["fault"], e["status"]) for e in entries] == [
        (None, 200),
        (None, 400),
        ("http_503", 503),
    ]
    first = entries[0]
    assert (first["method"], first["path"]) == ("POST", "/request_payment")
    assert first["idempotency_key"] == "k-1"
    assert first["body"] == {"cart_id": "cart-1", "amount": 1000}
    assert entries[1]["body"] == "not json"
    assert entries[1]["idempotency_key"] is None
    assert entries[2]["body"]["amount"] == 7
    for entry in entries:
        assert datetime.fromisoformat(entry["at"]).utcoffset() == timedelta(0)


def test_journal_keeps_the_callers_request_id(client: FlaskClient) -> None:
    charge(client, {"Idempotency-Key": "k-1", "X-Request-ID": "req-42"})
    charge(client, {"Idempotency-Key": "k-2"})

    assert [entry["request_id"] for entry in journal(client)] == ["req-42", None]


def test_journal_keeps_the_invalid_key_and_fractional_amount_as_received(
    client: FlaskClient,
) -> None:
    post_raw(client, '{"cart_id": "c", "amount": 10.50}', **{"Idempotency-Key": "k" * 256})

    [entry] = journal(client)

    assert entry["idempotency_key"] == "k" * 256
    assert entry["body"] == {"cart_id": "c", "amount": "10.50"}
    assert entry["status"] == 400


def test_reset_forgets_everything_and_restores_the_start_balance(client: FlaskClient) -> None:
    charge(client, {"Idempotency-Key": "k-reset"})
    client.post("/control/faults", json={"kind": "http_500", "count": None})
    client.post("/control/balance", json={"balance": "3.00"})

    response = client.post("/control/reset")

    assert response.status_code == 200
    assert response.get_json() == inspect(client)
    assert inspect(client) == FRESH
    assert journal(client) == []
    replay = charge(client, {"Idempotency-Key": "k-reset"})
    assert "Idempotent-Replayed" not in replay.headers


@pytest.mark.parametrize(("balance", "shown"), [("100.00", "100.00"), (7, "7.00"), ("0", "0.00")])
def test_balance_control_sets_the_prepaid_card_balance(
    client: FlaskClient, balance: object, shown: str
) -> None:
    response = client.post("/control/balance", json={"balance": balance})

    assert response.status_code == 200
    assert response.get_json()["balance"] == shown
    assert inspect(client)["balance"] == shown


def test_raised_balance_allows_a_bigger_prepaid_charge(client: FlaskClient) -> None:
    client.post("/control/balance", json={"balance": "100.00"})

    paid = charge(client, amount=9000, payment_method="pm_card_prepaid")

    assert paid.get_json()["payment_status"] == "success"
    assert inspect(client)["balance"] == "10.00"


@pytest.mark.parametrize(
    "balance", ["-1.00", "abc", "NaN", "Infinity", "", None, True, 1.5, "10000000000.01"]
)
def test_balance_control_refuses_what_is_not_a_balance(
    client: FlaskClient, balance: object
) -> None:
    response = client.post("/control/balance", json={"balance": balance})

    assert_error(response, 400, "invalid_field", "balance")
    assert inspect(client)["balance"] == "20.00"


def test_balance_control_needs_a_balance(client: FlaskClient) -> None:
    assert_error(client.post("/control/balance", json={}), 400, "missing_field", "balance")


def test_start_balance_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PAYMENT_BALANCE", "5.5")

    assert inspect(create_app().test_client())["balance"] == "5.50"


def test_start_balance_defaults_to_twenty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_PAYMENT_BALANCE", raising=False)

    assert inspect(create_app().test_client())["balance"] == "20.00"


def test_invalid_start_balance_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PAYMENT_BALANCE", "twenty")

    with pytest.raises(ValueError, match="Invalid start balance"):
        create_app()


def test_each_app_has_its_own_state() -> None:
    first = create_app(card_limit="5", balance=Decimal("1.5")).test_client()
    second = create_app(card_limit="5.00", balance="1.50").test_client()

    charge(first, amount=100, payment_method="pm_card_prepaid")

    assert inspect(first)["balance"] == "0.50"
    assert inspect(second) == {**FRESH, "balance": "1.50", "card_limit": "5.00"}


def test_card_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PAYMENT_CARD_LIMIT", "50")
    client = create_app().test_client()

    assert inspect(client)["card_limit"] == "50.00"
    assert charge(client, amount=5000).get_json()["payment_status"] == "success"
    assert charge(client, amount=5001).get_json()["payment_status"] == "failed"


def test_card_limit_defaults_to_twenty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_PAYMENT_CARD_LIMIT", raising=False)

    assert inspect(create_app().test_client())["card_limit"] == "20.00"


def test_invalid_card_limit_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PAYMENT_CARD_LIMIT", "-1")

    with pytest.raises(ValueError, match="Invalid card limit"):
        create_app()


# -- faults -------------------------------------------------------------------------------


def test_queued_fault_fails_the_next_charges_then_lets_them_through(
    client: FlaskClient,
) -> None:
    queued = client.post("/control/faults", json={"kind": "http_503", "count": 2, "delay_ms": 0})
    assert queued.status_code == 201
    assert queued.get_json()["faults"] == [{"kind": "http_503", "count": 2, "delay_ms": 0}]
    headers = {"Idempotency-Key": "k-retry"}

    statuses = [charge(client, headers).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    state = inspect(client)
    assert (state["payments"], state["charges"], state["faults"]) == (1, 1, [])
    assert [e["fault"] for e in journal(client)] == ["http_503", "http_503", None]


def test_queued_fault_count_goes_down_with_each_use(client: FlaskClient) -> None:
    client.post("/control/faults", json={"kind": "http_500", "count": 3})
    charge(client)

    assert inspect(client)["faults"] == [{"kind": "http_500", "count": 2, "delay_ms": 0}]


def test_queued_fault_without_count_applies_once(client: FlaskClient) -> None:
    client.post("/control/faults", json={"kind": "http_500"})

    assert [charge(client).status_code for _ in range(2)] == [500, 200]


def test_queued_fault_with_null_count_lasts_until_cleared(client: FlaskClient) -> None:
    client.post("/control/faults", json={"kind": "http_500", "count": None})
    statuses = [charge(client).status_code for _ in range(4)]

    cleared = client.delete("/control/faults")

    assert statuses == [500] * 4
    assert cleared.status_code == 200
    assert cleared.get_json()["faults"] == []
    assert charge(client).status_code == 200


def test_queued_faults_apply_in_order(client: FlaskClient) -> None:
    client.post("/control/faults", json={"kind": "http_500", "count": 1})
    client.post("/control/faults", json={"kind": "http_503", "count": 1})

    assert [charge(client).status_code for _ in range(3)] == [500, 503, 200]


def test_header_fault_applies_to_its_request_only_and_leaves_the_queue(
    client: FlaskClient,
) -> None:
    client.post("/control/faults", json={"kind": "http_503", "count": 1})

    assert charge(client, {"X-Fake-Fault": "http_500"}).status_code == 500
    assert charge(client).status_code == 503
    assert charge(client).status_code == 200


def test_rejected_request_does_not_use_up_a_queued_fault(client: FlaskClient) -> None:
    client.post("/control/faults", json={"kind": "http_503", "count": 1})

    assert charge(client, amount=0).status_code == 400
    assert charge(client).status_code == 503


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "missing_field", "kind"),
        ({"kind": "explode"}, "invalid_field", "kind"),
        ({"kind": None}, "invalid_field", "kind"),
        ({"kind": "http_500", "count": 0}, "invalid_field", "count"),
        ({"kind": "http_500", "count": "2"}, "invalid_field", "count"),
        ({"kind": "http_500", "count": True}, "invalid_field", "count"),
        ({"kind": "latency", "delay_ms": -1}, "invalid_field", "delay_ms"),
        ({"kind": "latency", "delay_ms": "5"}, "invalid_field", "delay_ms"),
        ({"kind": "latency", "delay_ms": 2.5}, "invalid_field", "delay_ms"),
        ({"kind": "latency", "delay_ms": 600_001}, "invalid_field", "delay_ms"),
    ],
)
def test_fault_control_refuses_bad_faults(
    client: FlaskClient, body: dict[str, Any], code: str, field: str
) -> None:
    assert_error(client.post("/control/faults", json=body), 400, code, field)
    assert inspect(client)["faults"] == []


def test_fault_control_needs_a_json_object(client: FlaskClient) -> None:
    response = client.post("/control/faults", data="[]", content_type="application/json")

    assert_error(response, 400, "malformed_json", None)


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X-Fake-Fault": "explode"}, "X-Fake-Fault"),
        ({"X-Fake-Fault": "latency", "X-Fake-Delay-Ms": "soon"}, "X-Fake-Delay-Ms"),
        ({"X-Fake-Fault": "latency", "X-Fake-Delay-Ms": "-1"}, "X-Fake-Delay-Ms"),
        ({"X-Fake-Fault": "latency", "X-Fake-Delay-Ms": "1.5"}, "X-Fake-Delay-Ms"),
        ({"X-Fake-Fault": "latency", "X-Fake-Delay-Ms": "9" * 20}, "X-Fake-Delay-Ms"),
    ],
)
def test_bad_fault_headers_are_refused(
    client: FlaskClient, headers: dict[str, str], field: str
) -> None:
    assert_error(charge(client, headers), 400, "invalid_field", field)
    assert_nothing_charged(client)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("http_500", 500, "internal_error"), ("http_503", 503, "service_unavailable")],
)
def test_http_error_faults_answer_json_and_store_nothing_under_the_key(
    client: FlaskClient, kind: str, status: int, code: str
) -> None:
    headers = {"Idempotency-Key": "k-fault"}

    assert_error(charge(client, headers | {"X-Fake-Fault": kind}), status, code, None)
    assert_nothing_charged(client)
    retry = charge(client, headers)
    assert retry.status_code == 200
    assert "Idempotent-Replayed" not in retry.headers


def test_malformed_fault_answers_200_with_a_body_that_is_not_json(client: FlaskClient) -> None:
    response = charge(client, {"X-Fake-Fault": "malformed"})

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.get_data())
    assert_nothing_charged(client)
    assert journal(client)[0]["status"] == 200


def test_latency_fault_sleeps_then_charges_normally(
    client: FlaskClient, sleeps: list[float]
) -> None:
    response = charge(client, {"X-Fake-Fault": "latency", "X-Fake-Delay-Ms": "250"})

    assert sleeps == [0.25]
    assert response.get_json()["payment_status"] == "success"
    assert inspect(client)["charges"] == 1


def test_latency_fault_defaults_to_no_delay(client: FlaskClient, sleeps: list[float]) -> None:
    charge(client, {"X-Fake-Fault": "latency"})

    assert sleeps == [0]


def test_charge_then_delay_records_the_charge_before_sleeping() -> None:
    seen: list[tuple[float, int]] = []
    app = create_app(
        balance="20.00",
        sleep=lambda seconds: seen.append((seconds, len(app.extensions["fake_payment"].ledger))),
    )
    client = app.test_client()
    headers = {"Idempotency-Key": "k-slow"}

    first = charge(client, headers | {"X-Fake-Fault": "charge_then_delay"})
    retry = charge(client, headers)

    assert seen == [(3.0, 1)]
    assert first.get_json()["payment_status"] == "success"
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_data() == first.get_data()
    assert inspect(client)["charges"] == 1


def test_charge_then_trickle_charges_then_sends_the_answer_a_byte_at_a_time() -> None:
    seen: list[tuple[float, int]] = []
    app = create_app(
        balance="20.00",
        sleep=lambda seconds: seen.append((seconds, len(app.extensions["fake_payment"].ledger))),
    )
    client = app.test_client()
    headers = {"Idempotency-Key": "k-trickle", "X-Fake-Delay-Ms": "50"}

    first = charge(client, headers | {"X-Fake-Fault": "charge_then_trickle"})
    body = first.get_data()
    retry = charge(client, {"Idempotency-Key": "k-trickle"})

    assert first.headers["Content-Length"] == str(len(body))
    assert seen == [(0.05, 1)] * len(body)  # a pause after every byte, the charge made
    assert first.get_json()["payment_status"] == "success"
    assert retry.get_data() == body
    assert inspect(client)["charges"] == 1


def test_queued_charge_then_delay_uses_its_delay(client: FlaskClient, sleeps: list[float]) -> None:
    client.post("/control/faults", json={"kind": "charge_then_delay", "delay_ms": 1500})
    assert inspect(client)["faults"] == [
        {"kind": "charge_then_delay", "count": 1, "delay_ms": 1500}
    ]

    assert charge(client).status_code == 200
    assert sleeps == [1.5]
    assert journal(client)[0]["fault"] == "charge_then_delay"


@pytest.mark.parametrize("kind", ["reset", "empty_reply"])
def test_connection_faults_need_a_real_socket(client: FlaskClient, kind: str) -> None:
    response = charge(client, {"X-Fake-Fault": kind})

    assert_error(response, 500, "fault_unsupported_here", None)
    assert_nothing_charged(client)
    [entry] = journal(client)
    assert (entry["fault"], entry["status"]) == (kind, 500)


@pytest.mark.parametrize("kind", ["charge_then_reset", "charge_then_empty_reply"])
def test_charge_then_drop_faults_charge_before_dropping_the_answer(
    client: FlaskClient, kind: str
) -> None:
    # Flask's test client has no socket to drop: the answer is a 500, but the charge is
    # recorded and stored under the key, as it is before a real connection is dropped.
    headers = {"Idempotency-Key": f"k-{kind}"}

    dropped = charge(client, headers | {"X-Fake-Fault": kind})
    retry = charge(client, headers)

    assert_error(dropped, 500, "fault_unsupported_here", None)
    assert inspect(client)["charges"] == 1
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert [e["fault"] for e in journal(client)] == [kind, None]


def test_reset_then_charge_needs_a_real_socket_and_then_charges_nothing(
    client: FlaskClient, sleeps: list[float]
) -> None:
    response = charge(client, {"X-Fake-Fault": "reset_then_charge"})

    assert_error(response, 500, "fault_unsupported_here", None)
    assert_nothing_charged(client)
    assert sleeps == []


# -- random faults ------------------------------------------------------------------------


def random_statuses(client: FlaskClient, requests_count: int) -> list[tuple[str | None, int]]:
    for number in range(requests_count):
        charge(client, {"Idempotency-Key": f"k-{number}"})
    return [(entry["fault"], entry["status"]) for entry in journal(client)]


def test_random_faults_are_a_reproducible_sequence_for_a_seed(sleeps: list[float]) -> None:
    runs = []
    for _ in range(2):
        client = create_app(sleep=sleeps.append).test_client()
        queued = client.post("/control/faults", json={"mode": "random", "rate": 0.3, "seed": 7})
        assert queued.status_code == 201
        runs.append(random_statuses(client, 60))
    other = create_app(sleep=sleeps.append).test_client()
    other.post("/control/faults", json={"mode": "random", "rate": 0.3, "seed": 8})

    assert runs[0] == runs[1]
    assert random_statuses(other, 60) != runs[0]
    hits = [fault for fault, _ in runs[0] if fault]
    assert 8 <= len(hits) <= 30  # about 30 % of 60


def test_random_faults_draw_from_every_kind(client: FlaskClient) -> None:
    client.post("/control/faults", json={"mode": "random", "rate": 1, "seed": 1})

    seen = {fault for fault, _ in random_statuses(client, 120)}

    assert seen == {
        "latency",
        "http_500",
        "http_503",
        "reset",
        "empty_reply",
        "malformed",
        "charge_then_delay",
        "charge_then_reset",
        "charge_then_empty_reply",
        "reset_then_charge",
        "charge_then_trickle",
    }


def test_random_faults_show_in_inspect_and_are_cleared(client: FlaskClient) -> None:
    client.post(
        "/control/faults",
        json={
            "mode": "random",
            "rate": 0.5,
            "seed": 3,
            "kinds": ["http_503", "latency"],
            "delay_ms": [10, 20],
        },
    )
    random_statuses(client, 10)

    shown = inspect(client)["random_faults"]
    cleared = client.delete("/control/faults").get_json()

    assert shown["mode"] == "random"
    assert (shown["rate"], shown["seed"], shown["kinds"]) == ("0.5", 3, ["http_503", "latency"])
    assert (shown["delay_ms"], shown["draws"]) == ([10, 20], 10)
    assert 0 < shown["hits"] < 10
    assert cleared["random_faults"] is None
    assert charge(client).status_code == 200


def test_random_faults_delay_within_the_range(client: FlaskClient, sleeps: list[float]) -> None:
    client.post(
        "/control/faults",
        json={"mode": "random", "rate": 1, "seed": 5, "kinds": ["latency"], "delay_ms": [5, 9]},
    )
    random_statuses(client, 20)

    assert len(sleeps) == 20
    assert all(0.005 <= seconds <= 0.009 for seconds in sleeps)


def test_the_queue_and_the_random_mode_can_be_cleared_apart(client: FlaskClient) -> None:
    client.post("/control/faults", json={"mode": "random", "rate": 1, "seed": 2})
    client.post("/control/faults", json={"kind": "http_503", "count": None})

    queue_cleared = client.delete("/control/faults?only=queue").get_json()
    client.post("/control/faults", json={"kind": "http_503", "count": None})
    random_cleared = client.delete("/control/faults?only=random").get_json()

    assert (queue_cleared["faults"], queue_cleared["random_faults"]["seed"]) == ([], 2)
    assert (len(random_cleared["faults"]), random_cleared["random_faults"]) == (1, None)
    assert_error(client.delete("/control/faults?only=all"), 400, "invalid_field", "only")


def test_queued_faults_come_before_random_ones(client: FlaskClient) -> None:
    client.post(
        "/control/faults", json={"mode": "random", "rate": 1, "seed": 2, "kinds": ["http_500"]}
    )
    client.post("/control/faults", json={"kind": "http_503", "count": 1})

    assert [charge(client).status_code for _ in range(2)] == [503, 500]


def test_reset_clears_random_faults(client: FlaskClient) -> None:
    client.post("/control/faults", json={"mode": "random", "rate": 1, "seed": 2})

    client.post("/control/reset")

    assert inspect(client)["random_faults"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "chaos"}, "mode"),
        ({"mode": "random", "seed": 1}, "rate"),
        ({"mode": "random", "rate": 0, "seed": 1}, "rate"),
        ({"mode": "random", "rate": 1.5, "seed": 1}, "rate"),
        ({"mode": "random", "rate": "0.2", "seed": 1}, "rate"),
        ({"mode": "random", "rate": 0.2}, "seed"),
        ({"mode": "random", "rate": 0.2, "seed": "7"}, "seed"),
        ({"mode": "random", "rate": 0.2, "seed": 7, "kinds": []}, "kinds"),
        ({"mode": "random", "rate": 0.2, "seed": 7, "kinds": ["explode"]}, "kinds"),
        ({"mode": "random", "rate": 0.2, "seed": 7, "delay_ms": 5}, "delay_ms"),
        ({"mode": "random", "rate": 0.2, "seed": 7, "delay_ms": [9, 5]}, "delay_ms"),
        ({"mode": "random", "rate": 0.2, "seed": 7, "delay_ms": [0, -1]}, "delay_ms"),
    ],
)
def test_random_fault_control_refuses_bad_settings(
    client: FlaskClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/control/faults", json=body)

    assert_error(response, 400, response.get_json()["error"]["code"], field)
    assert inspect(client)["random_faults"] is None


# -- refunds ------------------------------------------------------------------------------

REFUND_FIELDS = [
    "id",
    "payment_id",
    "cart_id",
    "amount",
    "currency",
    "status",
    "reason",
    "idempotency_key",
    "created",
]


def refund(
    client: FlaskClient, payment_id: str, amount: int, key: str | None = None, **fields: Any
) -> TestResponse:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"payment_id": payment_id, "amount": amount, **fields}
    return client.post("/refunds", json=body, headers=headers)


def paid(client: FlaskClient, amount: int = 1000, **fields: Any) -> dict[str, Any]:
    payment = charge(client, amount=amount, **fields).get_json()
    assert payment["payment_status"] == "success"
    return payment


def test_a_refund_gives_back_part_of_a_payment(client: FlaskClient) -> None:
    payment = paid(client)

    response = refund(client, payment["id"], 400, key="r-1", reason="requested_by_customer")

    assert response.status_code == 200
    made = response.get_json()
    assert list(made) == REFUND_FIELDS
    assert re.fullmatch(r"re_[0-9a-f]{24}", made["id"])
    assert (made["payment_id"], made["cart_id"], made["amount"], made["currency"]) == (
        payment["id"],
        "cart-1",
        400,
        "USD",
    )
    assert (made["status"], made["reason"], made["idempotency_key"]) == (
        "succeeded",
        "requested_by_customer",
        "r-1",
    )
    assert inspect(client)["refunds"] == 1


def test_refunds_never_exceed_what_the_payment_captured(client: FlaskClient) -> None:
    payment = paid(client)

    statuses = [refund(client, payment["id"], 300).status_code for _ in range(3)]
    too_much = refund(client, payment["id"], 101)
    rest = refund(client, payment["id"], 100)

    assert statuses == [200, 200, 200]
    assert_error(too_much, 400, "amount_exceeds_refundable", "amount")
    assert rest.status_code == 200
    assert_error(refund(client, payment["id"], 1), 400, "amount_exceeds_refundable", "amount")
    assert inspect(client)["refunds"] == 4


def test_concurrent_refunds_never_exceed_the_payment(app: Flask) -> None:
    payment = paid(app.test_client(), amount=1000)
    threads_count = 20
    barrier = threading.Barrier(threads_count)
    statuses: list[int] = []

    def give_back(number: int) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(refund(client, payment["id"], 150, key=f"r-{number}").status_code)

    threads = [threading.Thread(target=give_back, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * 6 + [400] * 14
    refunds = app.test_client().get(f"/refunds?payment_id={payment['id']}").get_json()["data"]
    assert sum(r["amount"] for r in refunds) == 900


def test_the_same_refund_key_and_body_replays_without_refunding_again(
    client: FlaskClient,
) -> None:
    payment = paid(client)

    first = refund(client, payment["id"], 500, key="r-same")
    second = refund(client, payment["id"], 500, key="r-same")
    other = refund(client, payment["id"], 600, key="r-same")

    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_data() == first.get_data()
    assert_error(other, 409, "idempotency_key_reused", "Idempotency-Key")
    assert inspect(client)["refunds"] == 1


def test_refund_and_charge_keys_are_kept_apart(client: FlaskClient) -> None:
    payment = charge(client, {"Idempotency-Key": "shared"}).get_json()

    response = refund(client, payment["id"], 100, key="shared")

    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers


def test_a_refused_refund_is_decided_again_when_repeated(client: FlaskClient) -> None:
    payment = paid(client, amount=1000)
    refund(client, payment["id"], 800)

    refused = refund(client, payment["id"], 500, key="r-later")
    client.post("/control/reset")  # nothing to refund any more: the payment is gone
    again = refund(client, payment["id"], 500, key="r-later")

    assert_error(refused, 400, "amount_exceeds_refundable", "amount")
    assert_error(again, 400, "payment_not_found", "payment_id")


def test_a_declined_payment_cannot_be_refunded(client: FlaskClient) -> None:
    declined = charge(client, payment_method="pm_card_chargeDeclined").get_json()

    response = refund(client, declined["id"], 100)

    assert_error(response, 400, "payment_not_refundable", "payment_id")
    assert inspect(client)["refunds"] == 0


def test_a_refund_of_an_unknown_payment_is_refused(client: FlaskClient) -> None:
    assert_error(refund(client, "pay_nope", 100), 400, "payment_not_found", "payment_id")


def test_a_refund_in_another_currency_is_refused(client: FlaskClient) -> None:
    payment = paid(client)

    response = refund(client, payment["id"], 100, currency="EUR")

    assert_error(response, 400, "invalid_field", "currency")
    assert refund(client, payment["id"], 100, currency="usd").status_code == 200


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"amount": 100}, "missing_field", "payment_id"),
        ({"payment_id": "pay_x"}, "missing_field", "amount"),
        ({"payment_id": "", "amount": 100}, "invalid_field", "payment_id"),
        ({"payment_id": 7, "amount": 100}, "invalid_field", "payment_id"),
        ({"payment_id": "pay_x", "amount": 0}, "invalid_field", "amount"),
        ({"payment_id": "pay_x", "amount": 1.5}, "invalid_field", "amount"),
        ({"payment_id": "pay_x", "amount": "100"}, "invalid_field", "amount"),
        ({"payment_id": "pay_x", "amount": 100, "currency": "XAU"}, "invalid_field", "currency"),
        ({"payment_id": "pay_x", "amount": 100, "reason": ""}, "invalid_field", "reason"),
        ({"payment_id": "pay_x", "amount": 100, "reason": 5}, "invalid_field", "reason"),
    ],
)
def test_a_malformed_refund_request_names_its_field(
    client: FlaskClient, body: dict[str, Any], code: str, field: str
) -> None:
    assert_error(client.post("/refunds", json=body), 400, code, field)


def test_a_prepaid_refund_credits_the_balance_back(client: FlaskClient) -> None:
    payment = paid(client, amount=1500, payment_method="pm_card_prepaid")
    assert inspect(client)["balance"] == "5.00"

    refund(client, payment["id"], 1000)

    assert inspect(client)["balance"] == "15.00"


def test_refunds_are_found_by_id_key_and_payment(client: FlaskClient) -> None:
    first, second = paid(client), paid(client)
    made = refund(client, first["id"], 100, key="r-a").get_json()
    other = refund(client, second["id"], 200, key="r-b").get_json()

    assert client.get(f"/refunds/{made['id']}").get_json() == made
    assert_error(client.get("/refunds/re_none"), 404, "refund_not_found", None)
    assert client.get("/refunds?idempotency_key=r-a").get_json() == {"data": [made]}
    assert client.get("/refunds?idempotency_key=r-none").get_json() == {"data": []}
    assert client.get(f"/refunds?payment_id={second['id']}").get_json() == {"data": [other]}
    assert client.get("/refunds").get_json() == {"data": [made, other]}


@pytest.mark.parametrize(
    ("kind", "status", "refunded"),
    [
        ("http_500", 500, 0),
        ("http_503", 503, 0),
        ("malformed", 200, 0),
        ("latency", 200, 1),
        ("charge_then_delay", 200, 1),
        ("charge_then_reset", 500, 1),  # 500: the test client has no socket to reset
    ],
)
def test_faults_apply_to_refunds_too(
    client: FlaskClient, kind: str, status: int, refunded: int
) -> None:
    payment = paid(client)
    client.post("/control/faults", json={"kind": kind, "delay_ms": 0})

    response = refund(client, payment["id"], 100, key="r-fault")

    assert response.status_code == status
    assert inspect(client)["refunds"] == refunded
    [_, entry] = journal(client)
    assert (entry["path"], entry["fault"], entry["status"]) == ("/refunds", kind, status)


def test_a_refund_the_provider_refuses_is_answered_even_under_a_drop_fault(
    client: FlaskClient,
) -> None:
    response = refund(client, "pay_nope", 100)
    client.post("/control/faults", json={"kind": "charge_then_reset"})
    under_fault = refund(client, "pay_nope", 100)

    assert_error(response, 400, "payment_not_found", "payment_id")
    assert_error(under_fault, 400, "payment_not_found", "payment_id")


# -- routes -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nowhere", "/static/app.js", "/request_payment/1"])
def test_unknown_route_is_404_json(client: FlaskClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found", None)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/request_payment", "POST"),
        ("PUT", "/inspect", "GET"),
        ("GET", "/control/reset", "POST"),
        ("PATCH", "/control/faults", "DELETE"),
        ("PUT", "/refunds", "POST"),
    ],
)
def test_wrong_method_is_405_json(
    client: FlaskClient, method: str, path: str, allowed: str
) -> None:
    response = client.open(path, method=method)

    assert_error(response, 405, "method_not_allowed", None)
    assert allowed in response.headers["Allow"]


# -- the real server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    """`flask run` (the development server, not gunicorn) in a subprocess; its base URL."""
    port = free_port()
    server = start_process(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "fake_payment_server",
            "run",
            "--port",
            str(port),
        ],
        env={"FAKE_PAYMENT_BALANCE": "20.00"},
    )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/inspect", server)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server)


@pytest.mark.integration
def test_reset_and_empty_reply_break_the_connection_and_the_server_keeps_serving(
    provider_url: str,
) -> None:
    requests.post(f"{provider_url}/control/reset", timeout=5).raise_for_status()
    body = {"cart_id": "cart-1", "amount": 1000}

    for kind in ("reset", "empty_reply"):
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(
                f"{provider_url}/request_payment",
                json=body,
                headers={"X-Fake-Fault": kind, "Idempotency-Key": f"k-{kind}"},
                timeout=5,
            )

    state = requests.get(f"{provider_url}/inspect", timeout=5).json()
    assert (state["payments"], state["charges"], state["balance"]) == (0, 0, "20.00")
    entries = requests.get(f"{provider_url}/control/journal", timeout=5).json()["data"]
    assert [(e["fault"], e["status"]) for e in entries] == [
        ("reset", None),
        ("empty_reply", None),
    ]
    retry = requests.post(
        f"{provider_url}/request_payment",
        json=body,
        headers={"Idempotency-Key": "k-reset"},
        timeout=5,
    )
    assert retry.json()["payment_status"] == "success"
    assert "Idempotent-Replayed" not in retry.headers


@pytest.mark.integration
def test_reset_sends_rst_and_empty_reply_closes_cleanly(provider_url: str) -> None:
    requests.post(f"{provider_url}/control/reset", timeout=5).raise_for_status()
    port = int(provider_url.rsplit(":", 1)[1])
    body = b'{"cart_id": "cart-1", "amount": 1}'

    def send(kind: str) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        connection.sendall(
            b"POST /request_payment HTTP/1.1\r\nHost: fake\r\n"
            b"Content-Type: application/json\r\n"
            + f"X-Fake-Fault: {kind}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        return connection

    with send("reset") as connection, pytest.raises(ConnectionResetError):
        connection.recv(1024)
    with send("empty_reply") as connection:
        assert connection.recv(1024) == b""
    assert requests.get(f"{provider_url}/inspect", timeout=5).json()["charges"] == 0


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["charge_then_reset", "charge_then_empty_reply"])
def test_charge_then_drop_charges_and_the_client_gets_no_answer(
    provider_url: str, kind: str
) -> None:
    requests.post(f"{provider_url}/control/reset", timeout=5).raise_for_status()
    body = {"cart_id": "cart-1", "amount": 1000}
    headers = {"Idempotency-Key": f"k-{kind}"}

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            f"{provider_url}/request_payment",
            json=body,
            headers=headers | {"X-Fake-Fault": kind},
            timeout=5,
        )

    ledger = requests.get(
        f"{provider_url}/payments",
        params={"idempotency_key": headers["Idempotency-Key"]},
        timeout=5,
    ).json()["data"]
    assert [p["payment_status"] for p in ledger] == ["success"]
    [entry] = requests.get(f"{provider_url}/control/journal", timeout=5).json()["data"]
    assert (entry["fault"], entry["status"]) == (kind, None)
    retry = requests.post(f"{provider_url}/request_payment", json=body, headers=headers, timeout=5)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == ledger[0]["id"]


@pytest.mark.integration
def test_charge_then_reset_on_a_refund_refunds_and_drops_the_answer(provider_url: str) -> None:
    requests.post(f"{provider_url}/control/reset", timeout=5).raise_for_status()
    payment = requests.post(
        f"{provider_url}/request_payment", json={"cart_id": "c", "amount": 1000}, timeout=5
    ).json()

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            f"{provider_url}/refunds",
            json={"payment_id": payment["id"], "amount": 300},
            headers={"Idempotency-Key": "r-drop", "X-Fake-Fault": "charge_then_reset"},
            timeout=5,
        )

    found = requests.get(
        f"{provider_url}/refunds", params={"idempotency_key": "r-drop"}, timeout=5
    ).json()["data"]
    assert [(r["amount"], r["status"]) for r in found] == [(300, "succeeded")]


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/request_payment", "/refunds"])
def test_reset_then_charge_resets_first_and_processes_after_the_delay(
    provider_url: str, path: str
) -> None:
    requests.post(f"{provider_url}/control/reset", timeout=5).raise_for_status()
    payment = requests.post(
        f"{provider_url}/request_payment", json={"cart_id": "c", "amount": 1000}, timeout=5
    ).json()
    body = (
        {"cart_id": "c", "amount": 1000}
        if path == "/request_payment"
        else {"payment_id": payment["id"], "amount": 300}
    )
    ledger = f"{provider_url}{'/payments' if path == '/request_payment' else '/refunds'}"
    headers = {"Idempotency-Key": "k-late", "X-Fake-Fault": "reset_then_charge"}

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(
            f"{provider_url}{path}",
            json=body,
            headers=headers | {"X-Fake-Delay-Ms": "800"},
            timeout=5,
        )
    right_after = requests.get(ledger, params={"idempotency_key": "k-late"}, timeout=5).json()
    deadline = time.monotonic() + 5
    while (
        not (
            later := requests.get(ledger, params={"idempotency_key": "k-late"}, timeout=5).json()[
                "data"
            ]
        )
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)

    assert right_after["data"] == []  # the lookup right after the reset finds nothing
    assert len(later) == 1  # and then the request is processed all the same
    journal_entry = requests.get(f"{provider_url}/control/journal", timeout=5).json()["data"][-1]
    assert (journal_entry["fault"], journal_entry["status"]) == ("reset_then_charge", None)
