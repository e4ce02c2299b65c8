"""A fake payment provider for development and tests.

It speaks the protocol in docs/payment-provider.md, the contract `utils.PaymentAPI` is
written against; its parts live in the `fake_provider` package. The rules, in short:

* Money: `amount` is a JSON integer of minor units (1500 = 15.00 USD, 15 = 15 JPY) in
  an ISO-4217 currency that has minor units (XAU, XXX... are refused). Amounts stay
  integers and `Decimal`, never binary floating point.
* Test payment methods: `pm_card_default` (the default) charges any amount up to its
  per-charge limit, FAKE_PAYMENT_CARD_LIMIT major units (20.00 unless set), and declines
  a larger one `insufficient_funds`; any number of charges below the limit succeed, as
  with Stripe's test cards. `pm_card_prepaid` holds a balance, FAKE_PAYMENT_BALANCE
  (20.00 unless set), that each charge debits and each refund credits back.
  `pm_card_visa` always succeeds. `pm_card_chargeDeclined`,
  `pm_card_chargeDeclinedInsufficientFunds` and `pm_card_chargeDeclinedProcessingError`
  are declined `generic_decline`, `insufficient_funds` and `processing_error`.
* Refunds: `POST /refunds` `{"payment_id", "amount"}` gives back part or all of a
  successful payment, never more than it has left (400 `amount_exceeds_refundable`).
* Idempotency: a processed charge (success or decline) or refund is stored under its
  `Idempotency-Key`. The same key with the same body gets the stored answer back,
  byte for byte, with `Idempotent-Replayed: true`; with another body, 409. Concurrent
  requests with one key are serialised, so at most one of them is processed. Charges
  and refunds keep their keys apart.
* Ledgers: every processed payment and refund, for reconciliation: `GET /payments/<id>`,
  `GET /payments?idempotency_key=K` or `?cart_id=C`; `GET /refunds/<id>`,
  `GET /refunds?idempotency_key=K` or `?payment_id=P`.
* Faults (`fake_provider.faults`): `X-Fake-Fault: <kind>` (with `X-Fake-Delay-Ms`)
  breaks one write request; faults queued with `POST /control/faults` break the next
  `count` valid charges or refunds; `{"mode": "random", "rate": 0.2, "seed": 7}` breaks
  a seeded, reproducible share of them with kinds drawn from every kind. Kinds: latency,
  http_500, http_503, reset, empty_reply, malformed, charge_then_delay,
  charge_then_reset, charge_then_empty_reply, reset_then_charge, charge_then_trickle.
  latency and the charge_then_* kinds process the request (it is stored under its key)
  before the answer is late, lost or sent a byte every `delay_ms` (200);
  reset_then_charge resets the connection first and processes the request `delay_ms`
  (500) later; the others store nothing. The kinds that drop the
  connection need a real server socket; the server then logs that writing its answer
  failed, which is expected.
* Webhooks (`fake_provider.webhooks`): every processed charge and refund is pushed to
  FAKE_PAYMENT_WEBHOOK_URL as `payment.succeeded`, `payment.failed` or
  `refund.succeeded`, signed as Standard Webhooks with PAYMENT_WEBHOOK_SECRET, retried
  with backoff until answered 2xx. Faults `webhook_duplicate`, `webhook_out_of_order`,
  `webhook_delay` and `webhook_drop` are queued (or drawn at random) with
  `POST /control/faults` like the others, and apply to the next events.
* Controls: `GET /inspect`, `GET /control/journal` (every write request as received),
  `POST /control/reset`, `POST /control/balance`, `POST|DELETE /control/faults`,
  `GET|POST /control/webhooks` (the deliveries made; set `url`, `secret`).
* Tests build their own provider with `create_app(card_limit=..., balance=..., sleep=...)`.

Run it locally with::

    flask --app fake_payment_server run --port 5005

or under gunicorn with ONE worker process and several threads::

    gunicorn -w 1 --threads 8 -b 0.0.0.0:5005 fake_payment_server:app

The ledgers, balance, idempotency keys and faults live in the memory of the process:
with several workers each would keep its own copy, so a retry or a ledger lookup landing
on another worker would not see the charge.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from decimal import Decimal

from flask import Flask

from fake_provider.routes import EXTENSION_KEY, provider
from fake_provider.state import ProviderState
from fake_provider.webhooks import DEV_WEBHOOK_SECRET, WebhookSender
from fake_provider.wire import MONEY_RULE, to_money

DEFAULT_CARD_LIMIT = "20.00"
CARD_LIMIT_ENV_VAR = "FAKE_PAYMENT_CARD_LIMIT"
DEFAULT_BALANCE = "20.00"
BALANCE_ENV_VAR = "FAKE_PAYMENT_BALANCE"
WEBHOOK_URL_ENV_VAR = "FAKE_PAYMENT_WEBHOOK_URL"
WEBHOOK_SECRET_ENV_VAR = "PAYMENT_WEBHOOK_SECRET"
WEBHOOK_RETRY_ENV_VAR = "FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS"
MAX_BODY_BYTES = 64 * 1024


def create_app(
    *,
    card_limit: Decimal | str | None = None,
    balance: Decimal | str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    webhook_url: str | None = None,
) -> Flask:
    """A fake provider with its own fresh state.

    `card_limit` is the default card's per-charge limit and `balance` the prepaid card's
    starting balance, in major units (defaults: the FAKE_PAYMENT_CARD_LIMIT and
    FAKE_PAYMENT_BALANCE environment variables, else 20.00). `sleep` is called with
    seconds for the delay faults; tests pass a recorder so nothing really waits.
    `webhook_url` is where events go (default: FAKE_PAYMENT_WEBHOOK_URL; empty: none),
    signed with PAYMENT_WEBHOOK_SECRET (default: the development secret) and retried
    after FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS (1), doubling.
    """
    limit = _money(card_limit, CARD_LIMIT_ENV_VAR, DEFAULT_CARD_LIMIT, "card limit")
    start_balance = _money(balance, BALANCE_ENV_VAR, DEFAULT_BALANCE, "start balance")
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    webhooks = WebhookSender(
        url=os.environ.get(WEBHOOK_URL_ENV_VAR, "") if webhook_url is None else webhook_url,
        secret=os.environ.get(WEBHOOK_SECRET_ENV_VAR) or DEV_WEBHOOK_SECRET,
        retry_first=_seconds(WEBHOOK_RETRY_ENV_VAR, default="1"),
    )
    app.extensions[EXTENSION_KEY] = ProviderState(
        card_limit=limit, balance=start_balance, sleep=sleep, webhooks=webhooks
    )
    app.register_blueprint(provider)
    return app


def _seconds(env_var: str, default: str) -> float:
    """A duration from the environment ("0.05", "2"), to the millisecond. Read as a
    Decimal, like every number here that a person writes; the sender's clock arithmetic
    takes it as seconds."""
    text = os.environ.get(env_var) or default
    try:
        milliseconds = int(Decimal(text) * 1000)
    except (ArithmeticError, ValueError):  # not a number, NaN or infinite
        milliseconds = -1
    if milliseconds < 0:
        raise ValueError(f"Invalid {env_var} {text!r}: seconds, e.g. 0.5")
    return milliseconds / 1000


def _money(value: Decimal | str | None, env_var: str, default: str, what: str) -> Decimal:
    if value is None:
        value = os.environ.get(env_var, default)
    money = to_money(str(value))
    if money is None:
        raise ValueError(f"Invalid {what} {value!r}: {MONEY_RULE}")
    return money


app = create_app()
