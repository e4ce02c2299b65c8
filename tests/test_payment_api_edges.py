"""`utils.PaymentAPI` at the edges of what it accepts and answers: idempotency keys of
every allowed length and character, amounts of one minor unit, and the ledger lookups'
checks of what the provider stored under a key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.test_payment_api import KEY, FakeResponse, charge, make_api, ok, payment
from utils import IDEMPOTENCY_KEY_MAX_LENGTH, PaymentProviderProtocolError


@pytest.mark.parametrize(
    "key",
    ["k", "k" * IDEMPOTENCY_KEY_MAX_LENGTH, "order 42", "order~42", "~"],
    ids=["one-character", "longest", "space-inside", "tilde", "tilde-alone"],
)
def test_every_allowed_idempotency_key_is_sent_as_given(key):
    api, session, _ = make_api(ok(idempotency_key=key))

    charge(api, idempotency_key=key)

    assert session.calls[0].headers["Idempotency-Key"] == key


@pytest.mark.parametrize(
    "key",
    ["", "k" * (IDEMPOTENCY_KEY_MAX_LENGTH + 1), " k", "k\x7f", "k\x1f"],
    ids=["empty", "one-too-long", "leading-space", "delete-character", "control-character"],
)
def test_a_key_outside_the_allowed_ones_is_refused_before_anything_is_sent(key):
    api, session, _ = make_api()

    with pytest.raises(ValueError, match="idempotency_key"):
        charge(api, idempotency_key=key)

    assert session.calls == []


def test_a_charge_of_one_minor_unit_is_read_back():
    api, _, _ = make_api(ok(amount=1))

    result = charge(api, amount=Decimal("0.01"))

    assert result.amount == Decimal("0.01")


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -1500}, "amount"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"idempotency_key": "someone-else"}, "idempotency_key"),
    ],
    ids=["zero-amount", "negative-amount", "lower-case-currency", "unknown-currency", "other-key"],
)
def test_a_ledger_lookup_answer_that_cannot_be_a_charge_is_a_protocol_error(stored, problem):
    api, _, _ = make_api(FakeResponse(200, {"data": [payment(**stored)]}))

    with pytest.raises(PaymentProviderProtocolError, match=problem) as caught:
        api.find_payment(idempotency_key=KEY)

    assert caught.value.idempotency_key == KEY


def test_a_ledger_lookup_finds_the_charge_stored_under_the_key():
    api, session, _ = make_api(FakeResponse(200, {"data": [payment()]}))

    found = api.find_payment(idempotency_key=KEY)

    assert (found.amount, found.currency, found.idempotency_key) == (Decimal("15.00"), "USD", KEY)
    assert session.calls[0].params == {"idempotency_key": KEY}
