"""Soak test: a mixed load on the API under gunicorn and PostgreSQL, with provider faults.

    python soak/run.py                                   # 60 s, 8 clients, random seed
    python soak/run.py --duration 60 --clients 8 --seed 7 \\
        --database-url postgres://postgres@127.0.0.1:5432/
    python soak/run.py --seed 7 --record                 # also write docs/soak.md

Run it with the project's virtualenv (`. .venv/bin/activate`): the servers it starts use
the interpreter that runs it. The script itself needs only the standard library and
requests; what needs psycopg or Django runs in `soak/db.py`, in a child process.

What it does, in order (docs/soak.md explains the method and records a run):

1. Creates a fresh PostgreSQL database `soak_<pid>` on the server of `--database-url`
   (trust authentication), migrates it, and starts, on free loopback ports, the fake
   payment provider under gunicorn (1 worker, threads, a huge default-card limit) and
   the API under gunicorn (2 workers x 4 threads, `CoreRoot/gunicorn.py`) with a short
   provider read timeout (1.5 s) and `PAYMENT_ATTEMPT_STALE_SECONDS` = 13, just above
   twice the payment client's worst case. Server output goes to a log directory that is kept and
   printed; the database is dropped and every server stopped at the end, also on Ctrl-C,
   SIGTERM or SIGHUP.
2. Creates discount codes (percent, flat, per-currency with a minimum, a 100 % one and two
   with a small usage limit), then for `--duration` seconds runs `--clients` client
   threads, each with its own seeded RNG, doing a random mix: create carts (USD, EUR,
   JPY), read, list, apply codes (also two or four at once), pay with the default card,
   `pm_card_visa` or `pm_card_chargeDeclined`, pay twice with one Idempotency-Key, pay
   one cart from two threads at once, retry a pay after a 502/503/504 with the same key;
   refund paid carts in part or in full, two to four refunds of one cart at once, the
   same refund twice with one key, and retry a refund after a 502/503/504; create
   itemized carts (with a customer_ref), add, change and remove their lines while
   pending, apply generated single-use codes and a budget-capped, once-per-customer
   campaign code to them, and refund some of them by line.
   Every response is recorded (endpoint, status, error code, times) and checked on the
   spot. The provider runs in its seeded random fault mode for the whole load (a fifth
   of all charges and refunds meet a fault drawn from every kind, `charge_then_reset`,
   `charge_then_empty_reply` and `reset_then_charge` included), and, unless
   `--no-outages`, a fault thread
   adds an outage every 6-12 s: one kind for every charge and refund during a 1-4 s
   window (a hang, then garbage; a brownout; charges whose answers are all dropped),
   which is what gets past the client's retries.
   The background worker (`manage.py run_worker`) runs beside the API: the provider
   pushes its signed events to the API's webhook endpoint, a third of them dropped,
   delayed, duplicated or sent out of order (its seeded random webhook fault mode), and
   the service pushes its own events to a shop: a receiver in this process that
   verifies each signature with `standardwebhooks` and answers the first deliveries 500.
3. Stops the load, clears the faults, counts the payment attempts and refunds left open,
   waits longer than the stale time, runs `manage.py reconcile_payments --older-than 0`
   on the same database, waits for the worker to deliver what that settled, then reads
   everything back (API list, database, the provider's payment and refund ledgers and
   journal, the shop's events) and checks the books, and that every paid cart produced
   exactly one `cart.paid`, delivered once, and no other cart any.

How to read the result: the summary (printed, and written to docs/soak.md with
`--record`) has requests by endpoint, status and error code; the faults that hit and
the pay and refund answers of the carts they hit; carts paid and refunded, charges and
refunds in the ledgers, the books per currency, rows open before and after reconcile; and
the violations. Exit status 0 means zero violations: no 5xx except 502/503/504 on /pay/
and /refund/ with its documented code and an injected fault behind it (or the busy
answer), no 500, no lost update (every cart's total = subtotal - discount, every code's
reserved + consumed uses = carts holding it = 200 applies of it, within its limit,
times_used = consumed uses = paid carts holding it, every 200 apply's
cart is what the database holds), and balanced books: per currency, charges - refunds at
the provider = paid carts' totals - refunded amounts here; every paid cart has exactly
one charge of its total, recorded by its successful attempt; any other charge is a
duplicate recorded here and given back in full; every refund is recorded on both sides
with the same amount; every charge's refund hold equals its refunds made; nothing is
left open. Exit status 1 lists each violation with its evidence (the cart's requests and
the provider's charge requests for it, in time order, or the API log line);
2 means the run could not be set up; 130 that a signal stopped it. The server logs stay
in the printed directory.
The seed fixes every random choice; the interleaving of threads is not reproducible.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from common.testing import WebhookReceiver  # noqa: E402 (needs the root on the path)

DOC = ROOT / "docs" / "soak.md"

# Provider client settings of the API under test. The stale time must stay above the
# client's worst case, (connect + read) x (retries + 1) + backoff = 2.0 x 3 + 0.3 = 6.3 s
# (CoreRoot/settings.py), or a slow attempt could be resumed while still in flight.
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.5
MAX_RETRIES = 2
RETRY_BACKOFF = 0.1
STALE_SECONDS = 13
API_WORKERS = 2
API_THREADS = 4
PROVIDER_THREADS = 16
PROVIDER_LIMIT = "100000000.00"
RATE_LIMITS_OFF = (
    "CART_CREATE_PER_IP",
    "APPLY_DISCOUNT_PER_IP",
    "APPLY_DISCOUNT_PER_CART",
    "PAY_PER_CART",
    "TOKEN_PER_IP",
    "TOKEN_PER_USERNAME",
)
CLIENT_TIMEOUT = 35.0  # above gunicorn's 30 s worker timeout: a hung request shows up
# The clients talk to gunicorn directly, which closes a keep-alive connection idle for 2 s
# (CoreRoot/gunicorn.py). A request sent on one at that moment meets a reset before the
# API has read it: no answer, and nothing the API did. The proxy of deploy/nginx drops its
# idle upstream connections after 1 s for that reason, and the clients here do the same.
CLIENT_IDLE_CLOSE = 1.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
MAX_FAULT_DELAY_MS = 6000  # the longest provider delay any fault below injects
# Events: the shop's secret, how many of its first answers are 500 (each retried), the
# share of provider events that meet a webhook fault, and how long the worker may take
# to deliver what reconcile settled.
SHOP_SECRET = "whsec_c29hay1zaG9wLXNlY3JldC1mb3ItdGhlLXJlY2VpdmVy"
SHOP_FAILURES = 5
WEBHOOK_FAULT_RATE = 0.3
WEBHOOK_FAULT_KINDS = [
    "webhook_drop",
    "webhook_delay",
    "webhook_duplicate",
    "webhook_out_of_order",
]
EVENTS_SETTLE_SECONDS = 60.0

EXPONENTS = {"USD": 2, "EUR": 2, "JPY": 0}
PAY_5XX_CODES = {
    502: {"payment_provider_error"},
    503: {"payment_provider_unavailable", "payment_provider_busy"},
    504: {"payment_outcome_unknown"},
}
REFUND_5XX_CODES = {
    502: {"payment_provider_error"},
    503: {"payment_provider_unavailable", "payment_provider_busy"},
    504: {"refund_outcome_unknown"},
}
# Answers that say no fault needs to have hit this cart: the process was busy elsewhere.
BUSY = "payment_provider_busy"
PAY_409_CODES = {
    "cart_paid",
    "cart_payment_in_progress",
    "idempotency_key_reused",
    "earlier_payment_outcome_unknown",
}
REFUND_409_CODES = {"refund_exceeds_captured", "refund_in_progress", "refund_exceeds_line"}
FROZEN_CODES = {"cart_paid", "cart_payment_in_progress"}
OPEN_ATTEMPT = {"processing", "unknown"}
PAID = {"success", "partially_refunded", "refunded"}
# The provider's random fault mode: the share of charges and refunds broken, drawn from
# every fault kind, with delays for the delayed kinds (ms).
RANDOM_RATE = 0.2
RANDOM_DELAY_MS = [200, 3000]
LOG_PROBLEM = re.compile(r"Traceback|CRITICAL|\[ERROR\]| ERROR ")
# Django's request logger writes every 5xx response at ERROR, the documented provider
# answers of /pay/ too; those lines are counted against the responses, not as problems.
LOG_PAY_5XX = re.compile(
    r" ERROR django\.request (Bad Gateway|Service Unavailable|Gateway Timeout): "
    r"/api/cart/[0-9a-f-]{36}/(pay|refund)/$"
)

CART = "/api/cart/"
E_CREATE = "POST /api/cart/"
E_READ = "GET /api/cart/{id}/"
E_LIST = "GET /api/cart/"
E_APPLY = "POST /api/cart/{id}/apply_discount/"
E_PAY = "POST /api/cart/{id}/pay/"
E_REFUND = "POST /api/cart/{id}/refund/"
E_ADD_LINE = "POST /api/cart/{id}/lines/"
E_EDIT_LINE = "PATCH /api/cart/{id}/lines/{line_id}/"
E_REMOVE_LINE = "DELETE /api/cart/{id}/lines/{line_id}/"


@dataclass(frozen=True)
class Code:
    """A discount code the soak creates, and the rule to predict what it takes off."""

    code: str
    value: Decimal
    kind: str = "amount"
    currency: str = ""
    min_cart_total: Decimal | None = None
    usage_limit: int | None = None

    def body(self) -> dict:
        body = {"code": self.code, "kind": self.kind, "value": str(self.value)}
        body["description"] = f"soak: {self.kind} {self.value}"
        if self.currency:
            body["currency"] = self.currency
        if self.min_cart_total is not None:
            body["min_cart_total"] = str(self.min_cart_total)
        if self.usage_limit is not None:
            body["usage_limit"] = self.usage_limit
        return body

    def refusal(self, subtotal: Decimal, currency: str) -> str | None:
        """The 400 code this cart must get regardless of use counts, or None."""
        if self.currency and self.currency != currency:
            return "discount_currency_mismatch"
        if self.min_cart_total is not None and subtotal < self.min_cart_total:
            return "discount_minimum_not_met"
        if self.amount_off(subtotal, currency) == 0:
            return "discount_has_no_effect"
        return None

    def amount_off(self, subtotal: Decimal, currency: str) -> Decimal:
        step = Decimal(1).scaleb(-EXPONENTS[currency])
        if self.kind == "percent":
            off = (subtotal * self.value / 100).quantize(step, rounding=ROUND_HALF_UP)
        else:
            off = self.value.quantize(step, rounding=ROUND_DOWN)
        return min(off, subtotal)


CODES = (
    Code("SOAK10", Decimal(10), kind="percent"),
    Code("SOAK25EUR", Decimal(25), kind="percent", currency="EUR", min_cart_total=Decimal(50)),
    Code("SOAKFLAT5", Decimal(5)),
    Code("SOAKJPY500", Decimal(500), currency="JPY"),
    Code("SOAKLIMIT", Decimal(2), usage_limit=20),
    Code("SOAKFREE", Decimal(100), kind="percent", usage_limit=12),
)
CODE_BY_NAME = {code.code: code for code in CODES}
UNKNOWN_CODE = "SOAKNOSUCHCODE"
CODE_WEIGHTS = {
    "SOAK10": 3,
    "SOAK25EUR": 2,
    "SOAKFLAT5": 3,
    "SOAKJPY500": 2,
    "SOAKLIMIT": 3,
    "SOAKFREE": 1,
    UNKNOWN_CODE: 0.5,
}
APPLY_400_ALWAYS_OK = {"discount_already_applied", "discount_usage_limit_reached"}

# Campaigns, applied to itemized carts only (their line edits move the subtotal, so the
# exact predictions above do not hold for them; the books check them instead):
# a budget-capped, once-per-customer code in USD, and a percent discount used through
# generated single-use codes, which clients try more than once on purpose.
CAMPAIGN = {
    "code": "SOAKCAMP",
    "kind": "amount",
    "value": "3.00",
    "currency": "USD",
    "budget_amount": "30.00",
    "min_cart_total": "25.00",  # line changes that go below it take the code off
    "limit_per_customer": 1,
    "description": "soak: budget-capped, once per customer",
}
GENERATED = {
    "code": "SOAKGEN",
    "kind": "percent",
    "value": "15",
    "sku_prefixes": ["TEA-"],  # removing a cart's last TEA- line takes the code off
    "description": "soak: generated codes, TEA- lines only",
}
GENERATED_COUNT = 40
CUSTOMERS = 25
CAMPAIGN_400_OK = APPLY_400_ALWAYS_OK | {
    "discount_budget_exhausted",
    "discount_customer_limit_reached",
    "discount_code_used",
    "discount_currency_mismatch",
    "discount_has_no_effect",
    "discount_minimum_not_met",
    "discount_no_matching_lines",
    "discount_customer_required",  # a cart without customer_ref
}
SKUS = ("TEA-GREEN", "TEA-BLACK", "MUG-WHITE", "POT-CLAY", "CUP-BLUE")
LINE_409_CODES = FROZEN_CODES | {"cart_frozen"}

# The fault kinds of the provider's random mode (docs/payment-provider.md).
FAULT_KINDS = (
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
)
# Outages: one kind for every charge and refund request during a window (`count: null`,
# then cleared), phase after phase: (label, [(kind, delay_ms, seconds)]). A random fault
# hits one attempt of one request and the client's retries mostly absorb it; a window
# hits every retry of the requests in it, so a pay really ends 502/504 and attempts stay
# open for reconcile. The first is a provider that hangs, then answers garbage; the last
# charges and drops every answer.
OUTAGES = (
    ("outage: latency 4 s, then malformed", (("latency", 4000, 1.0), ("malformed", None, 2.0))),
    ("outage: latency 6 s (brownout)", (("latency", MAX_FAULT_DELAY_MS, 4.0),)),
    ("outage: charge, then reset", (("charge_then_reset", None, 2.0),)),
)

OPERATIONS = {
    "create": 14,
    "create_bad": 1,
    "read": 14,
    "list": 5,
    "apply": 16,
    "apply_race": 3,
    "apply_burst": 1,
    "pay": 20,
    "pay_same_key": 5,
    "pay_concurrent": 5,
    "pay_declined": 4,
    "pay_paid": 2,
    "refund_partial": 5,
    "refund_full": 2,
    "refund_race": 2,
    "refund_same_key": 2,
    "create_lines": 8,
    "edit_lines": 8,
    "apply_campaign": 6,
    "refund_lines": 3,
}


class SetupError(Exception):
    """The run could not be set up (database, servers)."""


class Interrupted(Exception):
    """A signal asked the run to stop."""


def dec(value) -> Decimal:
    return Decimal(str(value))


def minor_units(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(EXPONENTS[currency]))


def parse_json(text: str):
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return None


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- Recording ----------------------------------------------------------------------


@dataclass
class Rec:
    """One request the soak made and what came back."""

    client: str
    scenario: str
    endpoint: str
    cart: str | None
    t0: float
    t1: float = 0.0
    status: int = 0  # 0: no HTTP answer
    code: str = ""
    key: str | None = None
    method: str | None = None
    payment_id: str | None = None
    body: object = None
    text: str = ""

    def line(self) -> str:
        at = datetime.fromtimestamp(self.t0, UTC).strftime("%H:%M:%S.%f")[:-3]
        took = f"{self.t1 - self.t0:.2f}s"
        extra = " ".join(
            f"{name}={value}"
            for name, value in (
                ("key", self.key),
                ("pm", self.method),
                ("payment", self.payment_id),
            )
            if value
        )
        return (
            f"{at} +{took} {self.client} {self.scenario}: {self.endpoint} -> "
            f"{self.status} {self.code} {extra}".rstrip()
        )


@dataclass
class CartInfo:
    """What the soak knows of one cart; observations are guarded by Soak.lock."""

    id: str
    currency: str
    subtotal: Decimal
    owner: str
    discount: str | None = None  # from a 200 apply
    paid: bool = False
    seen_discount: str | None = None
    seen_discount_at: float | None = None  # t1 of the first answer showing the discount
    seen_paid_at: float | None = None  # t1 of the first answer showing it paid
    itemized: bool = False
    lines: tuple = ()  # (line id, quantity) as last shown


@dataclass
class Injected:
    """One fault queued on the provider; `count` None: every request until `until`."""

    group: int
    label: str
    kind: str
    count: int | None
    delay_ms: int | None
    at: float
    until: float | None = None


class Soak:
    """Shared state of one run: URLs, carts, records, violations."""

    def __init__(self, args, api_url: str, provider_url: str):
        self.args = args
        self.api_url = api_url
        self.provider_url = provider_url
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.deadline = time.monotonic() + args.duration
        self.records: list[Rec] = []
        self.carts: dict[str, CartInfo] = {}
        self.cart_list: list[CartInfo] = []
        self.applied: dict[str, list[Rec]] = defaultdict(list)  # cart -> 200 applies
        self.campaign_applied: dict[str, list[Rec]] = defaultdict(list)  # itemized carts
        self.generated: list[str] = []  # SOAKGEN's single-use codes
        self.removed = Counter()  # line changes that took a discount off, by code
        # Lines some client has sent a DELETE for (answered or still in flight): another
        # client's change to one of them may fairly find it gone (404 line_not_found).
        self.lines_removed = Counter()
        self.injected: list[Injected] = []
        self.violations: list[tuple[str, str]] = []
        self.journal: list[dict] = []  # the provider's, read at the end
        self.local = threading.local()

    # -- time and HTTP --

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        now = time.monotonic()
        if session is not None and now - self.local.used > CLIENT_IDLE_CLOSE:
            session.close()  # its connections may be the ones gunicorn is closing
            session = None
        if session is None:
            session = requests.Session()
            session.trust_env = False  # loopback only, whatever the proxy variables say
            self.local.session = session
        self.local.used = now  # call() moves it to the answer's time
        return session

    def call(
        self,
        client: str,
        scenario: str,
        endpoint: str,
        method: str,
        path: str,
        cart: str | None = None,
        body: dict | None = None,
        key: str | None = None,
        pm: str | None = None,
        params: dict | None = None,
    ) -> Rec:
        rec = Rec(client, scenario, endpoint, cart, time.time(), key=key, method=pm)
        headers = {"Idempotency-Key": key} if key else {}
        try:
            response = self.session().request(
                method,
                self.api_url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=CLIENT_TIMEOUT,
            )
        except requests.RequestException as exc:
            rec.t1 = time.time()
            self.local.used = time.monotonic()
            rec.text = f"{type(exc).__name__}: {exc}"
            self.record(rec)
            return rec
        rec.t1 = time.time()
        self.local.used = time.monotonic()  # idle from the answer on
        rec.status = response.status_code
        rec.body = parse_json(response.text)
        if isinstance(rec.body, dict) and isinstance(rec.body.get("error"), dict):
            rec.code = str(rec.body["error"].get("code", ""))
        if rec.status >= 500 or rec.body is None:
            rec.text = response.text[:500]
        payment = rec.body.get("payment") if isinstance(rec.body, dict) else None
        if isinstance(payment, dict):
            rec.payment_id = payment.get("provider_payment_id") or payment.get("id")
        refund = rec.body.get("refund") if isinstance(rec.body, dict) else None
        if isinstance(refund, dict):
            rec.payment_id = refund.get("provider_refund_id") or refund.get("id")
        self.record(rec)
        return rec

    def record(self, rec: Rec) -> None:
        with self.lock:
            self.records.append(rec)
        if rec.status == 0:
            self.violate("no_answer", f"{rec.line()}: {rec.text}")
        elif rec.status >= 500:
            documented = {E_PAY: PAY_5XX_CODES, E_REFUND: REFUND_5XX_CODES}.get(rec.endpoint, {})
            if rec.code not in documented.get(rec.status, set()):
                self.violate("5xx", f"{rec.line()}: {rec.text}")

    def violate(self, check: str, detail: str) -> None:
        with self.lock:
            self.violations.append((check, detail))

    # -- carts --

    def add_cart(self, info: CartInfo) -> None:
        with self.lock:
            self.carts[info.id] = info
            self.cart_list.append(info)

    def pick(self, rng: random.Random, owner: str | None, want) -> CartInfo | None:
        """A random cart (of `owner` if given) for which want(cart) holds; None if none
        turns up in a few draws."""
        with self.lock:
            pool = self.cart_list
            if not pool:
                return None
            for _ in range(20):
                info = pool[rng.randrange(len(pool))]
                if (owner is None or info.owner == owner) and want(info):
                    return info
        return None

    def observe(self, cart: dict, t0: float, t1: float, where: str) -> None:
        """Check a cart as the API showed it, and against what was seen of it before."""
        info = self.carts.get(str(cart.get("id")))
        problems = []
        try:
            total, subtotal = dec(cart["total"]), dec(cart["subtotal"])
            off = dec(cart["amount_discounted"])
            step = Decimal(1).scaleb(-EXPONENTS[cart["currency"]])
            if total != subtotal - off or dec(cart["total_discounted"]) != total:
                problems.append(f"total {total} != subtotal {subtotal} - discount {off}")
            if min(total, subtotal, off) < 0:
                problems.append("a negative amount")
            if any(value != value.quantize(step) for value in (total, subtotal, off)):
                problems.append("more decimals than the currency has")
            successes = [p for p in cart.get("payments", []) if p["status"] == "success"]
            if len(successes) > 1:
                problems.append(f"{len(successes)} successful attempts")
            if cart["payment_status"] in PAID and (
                len(successes) != 1 or dec(successes[0]["amount"]) != total
            ):
                problems.append("paid without exactly one successful attempt of its total")
            refunded = dec(cart["amount_refunded"])
            made = sum(
                (
                    dec(r["amount"])
                    for r in cart.get("refunds", [])
                    if r["status"] == "success" and r["reason"] == "requested_by_customer"
                ),
                Decimal(0),
            )
            # The cart row is read before its refunds: a refund made in between is listed
            # but not counted yet, never the other way round.
            if refunded > made or not 0 <= refunded <= total:
                problems.append(f"amount_refunded {refunded}: refunds made {made}, total {total}")
            wanted = (
                "refunded"
                if refunded and refunded == total
                else "partially_refunded"
                if refunded
                else None
            )
            if wanted and cart["payment_status"] != wanted:
                problems.append(f"{refunded} of {total} refunded, status {cart['payment_status']}")
            discount = (cart.get("discount") or {}).get("code")
            problems.extend(line_problems(cart))
        except (KeyError, TypeError, ArithmeticError) as exc:
            problems.append(f"malformed cart: {exc!r}")
            discount = None
        if info is not None:
            with self.lock:
                if (
                    discount
                    and info.seen_discount
                    and discount != info.seen_discount
                    and not info.itemized
                ):
                    problems.append(f"discount changed {info.seen_discount} -> {discount}")
                seen_at = info.seen_discount_at
                # A line change may take an itemized cart's discount off (and say so).
                if seen_at is not None and t0 > seen_at and not discount and not info.itemized:
                    problems.append(f"discount {info.seen_discount} lost")
                if discount and not info.seen_discount:
                    info.seen_discount, info.seen_discount_at = discount, t1
                paid = cart.get("payment_status") in PAID
                if info.seen_paid_at is not None and t0 > info.seen_paid_at and not paid:
                    problems.append("was paid, now " + str(cart.get("payment_status")))
                if paid and info.seen_paid_at is None:
                    info.seen_paid_at = t1
                    info.paid = True
        for problem in problems:
            self.violate("cart_state", f"{where}: cart {cart.get('id')}: {problem}")


def line_problems(cart: dict) -> list[str]:
    """An itemized cart's lines against its amounts: line amounts add up to the subtotal,
    quantities to items_number, discount shares to amount_discounted."""
    lines = cart.get("lines") or []
    if not cart.get("itemized"):
        return ["lines on a cart that is not itemized"] if lines else []
    problems = []
    amounts = sum((dec(line["amount"]) for line in lines), Decimal(0))
    shares = sum((dec(line["amount_discounted"]) for line in lines), Decimal(0))
    for line in lines:
        if dec(line["amount"]) != line["quantity"] * dec(line["unit_price"]):
            problems.append(f"line {line['id']}: amount != quantity x unit_price")
        if dec(line["total"]) != dec(line["amount"]) - dec(line["amount_discounted"]):
            problems.append(f"line {line['id']}: total != amount - its discount")
        if not 0 <= dec(line["amount_discounted"]) <= dec(line["amount"]):
            problems.append(f"line {line['id']}: discount share out of range")
    if amounts != dec(cart["subtotal"]):
        problems.append(f"lines add up to {amounts}, subtotal {cart['subtotal']}")
    if shares != dec(cart["amount_discounted"]):
        problems.append(f"line shares add up to {shares}, discount {cart['amount_discounted']}")
    if sum(line["quantity"] for line in lines) != cart["items_number"]:
        problems.append("line quantities do not add up to items_number")
    return problems


# --- Clients ------------------------------------------------------------------------


def run_together(calls: list) -> list:
    """Run the calls at once, each in its own thread (and HTTP connection)."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CLIENT_TIMEOUT + 10)
    return results


class Client(threading.Thread):
    def __init__(self, soak: Soak, number: int, seed: int):
        super().__init__(name=f"c{number}", daemon=True)
        self.soak = soak
        self.rng = random.Random(f"{seed}-client-{number}")
        self.operations = list(OPERATIONS)
        self.weights = list(OPERATIONS.values())

    def run(self) -> None:
        try:
            while self.soak.running():
                operation = self.rng.choices(self.operations, self.weights)[0]
                getattr(self, f"op_{operation}")()
                time.sleep(self.rng.uniform(0, 0.01))
        except Exception:
            self.soak.violate("soak_client_crashed", traceback.format_exc())

    # -- carts --

    def op_create(self, scenario: str = "create") -> CartInfo | None:
        currency = self.rng.choice(list(EXPONENTS))
        if currency == "JPY":
            total = Decimal(self.rng.randint(100, 40000))
        else:
            total = Decimal(self.rng.randint(100, 40000)).scaleb(-2)
        body = {"total": str(total), "currency": currency, "items_number": self.rng.randint(1, 9)}
        rec = self.soak.call(self.name, scenario, E_CREATE, "POST", CART, body=body)
        if rec.status != 201:
            if rec.status:
                self.soak.violate("create", f"{rec.line()}: {str(rec.body)[:300]}")
            return None
        cart = rec.body
        info = CartInfo(cart["id"], currency, total, self.name)
        self.soak.add_cart(info)
        if dec(cart["subtotal"]) != total or cart["payment_status"] != "pending":
            self.soak.violate("create", f"{rec.line()}: created as {cart}")
        self.soak.observe(cart, rec.t0, rec.t1, rec.line())
        return info

    def op_create_bad(self) -> None:
        body = {"total": "10.5", "currency": "JPY", "items_number": 1}
        rec = self.soak.call(self.name, "create_bad", E_CREATE, "POST", CART, body=body)
        if rec.status and rec.status != 400:
            self.soak.violate("create_bad", f"{rec.line()}: expected 400")

    def op_read(self) -> None:
        info = self.soak.pick(self.rng, None, lambda cart: True)
        if info is None:
            self.op_create()
            return
        rec = self.soak.call(self.name, "read", E_READ, "GET", f"{CART}{info.id}/", info.id)
        if rec.status == 200:
            self.soak.observe(rec.body, rec.t0, rec.t1, rec.line())
        elif rec.status:
            self.soak.violate("read", f"{rec.line()}: expected 200")

    def op_list(self) -> None:
        params: dict = {"page_size": self.rng.choice((10, 20, 50))}
        if self.rng.random() < 0.5:
            params["payment_status"] = self.rng.choice(("pending", "success", "failed"))
        if self.rng.random() < 0.3:
            params["currency"] = self.rng.choice(list(EXPONENTS)).lower()
        rec = self.soak.call(self.name, "list", E_LIST, "GET", CART, params=params)
        if rec.status != 200:
            if rec.status:
                self.soak.violate("list", f"{rec.line()}: expected 200")
            return
        for cart in rec.body.get("results", []):
            if "currency" in params and cart["currency"] != params["currency"].upper():
                self.soak.violate("list", f"{rec.line()}: {params} listed {cart['id']}")
            # A status filter may legitimately see a cart move between query and render
            # only within one request; rows are read once, so they must match.
            status = params.get("payment_status")
            if status and cart["payment_status"] != status:
                self.soak.violate("list", f"{rec.line()}: {params} listed {cart['id']}")
            self.soak.observe(cart, rec.t0, rec.t1, rec.line())

    # -- discounts --

    def choose_code(self) -> str:
        names = list(CODE_WEIGHTS)
        return self.rng.choices(names, [CODE_WEIGHTS[name] for name in names])[0]

    def apply(self, info: CartInfo, code: str, scenario: str) -> Rec:
        path = f"{CART}{info.id}/apply_discount/"
        rec = self.soak.call(
            self.name, scenario, E_APPLY, "POST", path, info.id, body={"code": code.lower()}
        )
        self.check_apply(rec, info, code)
        return rec

    def check_apply(self, rec: Rec, info: CartInfo, code: str) -> None:
        soak = self.soak
        spec = CODE_BY_NAME.get(code)
        refusal = (
            "discount_not_found" if spec is None else spec.refusal(info.subtotal, info.currency)
        )
        if rec.status == 200:
            cart = rec.body
            with soak.lock:
                soak.applied[info.id].append(rec)
                earlier = len(soak.applied[info.id]) > 1
                info.discount = code
            if earlier:
                soak.violate("lost_update", f"{rec.line()}: a second 200 apply on this cart")
            if refusal is not None:
                soak.violate("apply", f"{rec.line()}: applied, expected 400 {refusal}")
            elif (cart.get("discount") or {}).get("code") != code or dec(
                cart["amount_discounted"]
            ) != spec.amount_off(info.subtotal, info.currency):
                expected = spec.amount_off(info.subtotal, info.currency)
                soak.violate(
                    "apply",
                    f"{rec.line()}: got {cart.get('discount')} {cart['amount_discounted']} "
                    f"off {info.subtotal} {info.currency}, expected {code} {expected}",
                )
            soak.observe(cart, rec.t0, rec.t1, rec.line())
        elif rec.status == 400:
            if rec.code not in APPLY_400_ALWAYS_OK and rec.code != refusal:
                soak.violate("apply", f"{rec.line()}: expected {refusal or '200'}")
        elif rec.status == 409:
            if rec.code not in FROZEN_CODES:
                soak.violate("apply", f"{rec.line()}: unexpected 409 code")
        elif rec.status:
            soak.violate("apply", f"{rec.line()}: unexpected status")

    def fresh_cart(self) -> CartInfo | None:
        info = self.soak.pick(
            self.rng,
            self.name,
            lambda cart: cart.discount is None and not cart.paid and not cart.itemized,
        )
        return info or self.op_create()

    def op_apply(self) -> None:
        owner = self.name if self.rng.random() < 0.7 else None
        info = (
            self.soak.pick(self.rng, owner, lambda cart: not cart.paid and not cart.itemized)
            or self.op_create()
        )
        if info is not None:
            self.apply(info, self.choose_code(), "apply")

    def op_apply_race(self) -> None:
        """Two codes on one cart at once: at most one may be applied."""
        info = self.op_create("create")
        if info is None:
            return
        first, second = self.rng.sample(["SOAK10", "SOAKFLAT5", "SOAKLIMIT", "SOAKJPY500"], 2)
        recs = run_together(
            [lambda c=c: self.apply(info, c, "apply_race") for c in (first, second)]
        )
        if sum(1 for rec in recs if rec and rec.status == 200) > 1:
            self.soak.violate("lost_update", "two 200 applies at once: " + recs[0].line())

    def op_apply_burst(self) -> None:
        """The limited code on four fresh carts at once."""
        carts = [self.fresh_cart() for _ in range(4)]
        carts = [info for info in carts if info is not None]
        if len({info.id for info in carts}) == len(carts) and carts:
            run_together(
                [lambda i=info: self.apply(i, "SOAKLIMIT", "apply_burst") for info in carts]
            )

    # -- payments --

    def pay(self, info: CartInfo, scenario: str, pm: str | None, key: str | None) -> Rec:
        body = {"payment_method": pm} if pm else {}
        path = f"{CART}{info.id}/pay/"
        rec = self.soak.call(
            self.name, scenario, E_PAY, "POST", path, info.id, body=body, key=key, pm=pm
        )
        self.check_pay(rec, info, pm)
        return rec

    def check_pay(self, rec: Rec, info: CartInfo, pm: str | None) -> None:
        soak = self.soak
        body = rec.body if isinstance(rec.body, dict) else {}
        cart, payment = body.get("cart") or {}, body.get("payment") or {}
        if rec.status == 200:
            ok = (
                cart.get("payment_status") in PAID
                and payment.get("status") == "success"
                and dec(payment.get("amount")) == dec(cart.get("total"))
            )
            if not ok:
                soak.violate("pay", f"{rec.line()}: 200 but {str(body)[:400]}")
            # (A pay may resume another request's open attempt, with that one's card.)
            declining = payment.get("payment_method") == "pm_card_chargeDeclined"
            if declining and dec(payment.get("amount", 0)) != 0:
                soak.violate("pay", f"{rec.line()}: a declining card was charged")
            info.paid = True
        elif rec.status == 402:
            # The cart is shown as it is after the decline, or on a repeated request now:
            # another request may have paid it meanwhile. A declined cart is never pending.
            if (rec.code, payment.get("status")) != ("card_declined", "failed") or cart.get(
                "payment_status"
            ) not in ("failed", "processing", *PAID):
                soak.violate("pay", f"{rec.line()}: 402 but {str(body)[:400]}")
        elif rec.status == 409:
            if rec.code not in PAY_409_CODES:
                soak.violate("pay", f"{rec.line()}: unexpected 409 code")
            if rec.code == "cart_paid":
                info.paid = True
        elif rec.status and rec.status < 500:
            soak.violate("pay", f"{rec.line()}: unexpected status {str(body)[:300]}")
        if cart:
            soak.observe(cart, rec.t0, rec.t1, rec.line())

    def pay_and_retry(self, info: CartInfo, scenario: str, pm: str | None, key: str | None):
        """Pay; after a 502/503/504 retry with the same key a few times (mostly)."""
        rec = self.pay(info, scenario, pm, key)
        retries = 0
        while (
            rec.status in PAY_5XX_CODES
            and retries < 4
            and self.rng.random() < 0.85
            and self.soak.running()
        ):
            retries += 1
            time.sleep(0.2 * retries)
            rec = self.pay(info, "pay_retry", pm, key)
        return rec

    # -- refunds --

    def refund(self, info: CartInfo, scenario: str, amount: Decimal | None, key: str | None):
        body = {} if amount is None else {"amount": str(amount)}
        path = f"{CART}{info.id}/refund/"
        rec = self.soak.call(self.name, scenario, E_REFUND, "POST", path, info.id, body, key)
        self.check_refund(rec, amount)
        return rec

    def check_refund(self, rec: Rec, amount: Decimal | None) -> None:
        soak = self.soak
        body = rec.body if isinstance(rec.body, dict) else {}
        cart, refund = body.get("cart") or {}, body.get("refund") or {}
        if rec.status == 200:
            ok = (
                refund.get("status") == "success"
                and refund.get("reason") == "requested_by_customer"
                and (amount is None or dec(refund.get("amount")) == amount)
                and cart.get("payment_status") in ("partially_refunded", "refunded")
            )
            if not ok:
                soak.violate("refund", f"{rec.line()}: 200 but {str(body)[:400]}")
        elif rec.status == 409:
            if rec.code not in REFUND_409_CODES and rec.code != "cart_not_paid":
                soak.violate("refund", f"{rec.line()}: unexpected 409 code")
        elif rec.status and rec.status < 500:
            soak.violate("refund", f"{rec.line()}: unexpected status {str(body)[:300]}")
        if cart:
            soak.observe(cart, rec.t0, rec.t1, rec.line())

    def refund_and_retry(self, info: CartInfo, scenario: str, amount, key: str | None):
        rec = self.refund(info, scenario, amount, key)
        retries = 0
        while rec.status in REFUND_5XX_CODES and retries < 4 and self.soak.running():
            retries += 1
            time.sleep(0.2 * retries)
            rec = self.refund(info, "refund_retry", amount, key)
        return rec

    def paid_cart(self) -> CartInfo | None:
        return self.soak.pick(self.rng, None, lambda cart: cart.paid and not cart.itemized)

    def part_of(self, info: CartInfo) -> Decimal:
        """A random tenth to a third of the cart's subtotal, in its currency's steps."""
        step = Decimal(1).scaleb(-EXPONENTS[info.currency])
        share = Decimal(self.rng.randint(10, 33)) / 100
        return max(step, (info.subtotal * share).quantize(step, rounding=ROUND_DOWN))

    def op_refund_partial(self) -> None:
        info = self.paid_cart()
        if info is not None:
            key = self.new_key() if self.rng.random() < 0.7 else None
            self.refund_and_retry(info, "refund_partial", self.part_of(info), key)

    def op_refund_full(self) -> None:
        info = self.paid_cart()
        if info is not None:
            self.refund_and_retry(info, "refund_full", None, self.new_key())

    def op_refund_race(self) -> None:
        """Two to four refunds of one cart at once: never more than was charged."""
        info = self.paid_cart()
        if info is None:
            return
        amounts = [self.part_of(info) for _ in range(self.rng.randint(2, 4))]
        if self.rng.random() < 0.3:
            amounts[0] = None  # everything left, racing partial ones
        run_together(
            [lambda a=amount: self.refund(info, "refund_race", a, None) for amount in amounts]
        )

    def op_refund_same_key(self) -> None:
        """The same refund twice: the second must give the first one's refund back."""
        info = self.paid_cart()
        if info is None:
            return
        key, amount = self.new_key(), self.part_of(info)
        first = self.refund(info, "refund_same_key", amount, key)
        second = self.refund(info, "refund_same_key_again", amount, key)
        if first.status == 200 and (second.status, second.payment_id) != (200, first.payment_id):
            self.soak.violate(
                "idempotency",
                f"same refund key, other outcome:\n  {first.line()}\n  {second.line()}",
            )

    def payable(self, owner: str | None) -> CartInfo | None:
        info = self.soak.pick(self.rng, owner, lambda cart: not cart.paid)
        return info or self.op_create()

    def new_key(self) -> str:
        return f"soak-{uuid.UUID(int=self.rng.getrandbits(128)).hex}"

    def op_pay(self) -> None:
        info = self.payable(self.name if self.rng.random() < 0.8 else None)
        if info is None:
            return
        pm = self.rng.choices((None, "pm_card_visa"), (6, 4))[0]
        key = self.new_key() if self.rng.random() < 0.7 else None
        self.pay_and_retry(info, "pay", pm, key)

    def op_pay_declined(self) -> None:
        info = self.payable(self.name)
        if info is not None:
            self.pay_and_retry(info, "pay_declined", "pm_card_chargeDeclined", self.new_key())

    def op_pay_same_key(self) -> None:
        """The same request twice: the second must give the first one's outcome."""
        info = self.payable(self.name)
        if info is None:
            return
        pm = self.rng.choice((None, "pm_card_visa", "pm_card_chargeDeclined"))
        key = self.new_key()
        first = self.pay(info, "pay_same_key", pm, key)
        second = self.pay(info, "pay_same_key_again", pm, key)
        if first.status in (200, 402) and (second.status, second.payment_id) != (
            first.status,
            first.payment_id,
        ):
            self.soak.violate(
                "idempotency", f"same key, other outcome:\n  {first.line()}\n  {second.line()}"
            )

    def op_pay_concurrent(self) -> None:
        """One cart paid from two threads at once: at most one charge."""
        info = self.payable(self.name)
        if info is None:
            return
        keys = [self.new_key() if self.rng.random() < 0.7 else None for _ in range(2)]
        pms = [self.rng.choice((None, "pm_card_visa")) for _ in range(2)]
        recs = run_together(
            [lambda n=n: self.pay(info, "pay_concurrent", pms[n], keys[n]) for n in range(2)]
        )
        paid = {rec.payment_id for rec in recs if rec and rec.status == 200}
        if len(paid) > 1:
            lines = "\n  ".join(rec.line() for rec in recs)
            self.soak.violate("double_charge", f"two charges at once:\n  {lines}")
        for n, rec in enumerate(recs):
            if rec and rec.status in PAY_5XX_CODES and self.soak.running():
                time.sleep(0.3)
                self.pay_and_retry(info, "pay_retry", pms[n], keys[n])
                break

    # -- lines and campaigns --

    def remember_lines(self, info: CartInfo, cart: dict) -> None:
        with self.soak.lock:
            info.lines = tuple((line["id"], line["quantity"]) for line in cart.get("lines", []))
            info.subtotal = dec(cart["subtotal"])

    def new_line(self, currency: str) -> dict:
        if currency == "JPY":
            price = Decimal(self.rng.randint(50, 9000))
        else:
            price = Decimal(self.rng.randint(50, 9000)).scaleb(-2)
        sku = f"{self.rng.choice(SKUS)}-{self.rng.randint(1, 99)}"
        return {
            "sku": sku,
            "name": sku.title(),
            "quantity": self.rng.randint(1, 4),
            "unit_price": str(price),
        }

    def op_create_lines(self) -> CartInfo | None:
        currency = self.rng.choices(list(EXPONENTS), (6, 2, 2))[0]
        lines = [self.new_line(currency) for _ in range(self.rng.randint(1, 4))]
        body = {"currency": currency, "lines": lines}
        if self.rng.random() < 0.9:
            body["customer_ref"] = f"cust-{self.rng.randrange(CUSTOMERS)}"
        rec = self.soak.call(self.name, "create_lines", E_CREATE, "POST", CART, body=body)
        if rec.status != 201:
            if rec.status:
                self.soak.violate("create", f"{rec.line()}: {str(rec.body)[:300]}")
            return None
        cart = rec.body
        subtotal = sum((line["quantity"] * dec(line["unit_price"]) for line in lines), Decimal(0))
        info = CartInfo(cart["id"], currency, subtotal, self.name, itemized=True)
        self.remember_lines(info, cart)
        self.soak.add_cart(info)
        if dec(cart["subtotal"]) != subtotal or dec(cart["total"]) != subtotal:
            self.soak.violate("create", f"{rec.line()}: lines {lines}, created as {cart}")
        self.soak.observe(cart, rec.t0, rec.t1, rec.line())
        return info

    def check_line_change(
        self,
        rec: Rec,
        info: CartInfo,
        wanted: int,
        line_id: str | None = None,
        removing: bool = False,
    ) -> None:
        soak = self.soak
        body = rec.body if isinstance(rec.body, dict) else {}
        if rec.status == wanted:
            cart = body.get("cart") or {}
            removed = body.get("discount_removed")
            if removed:
                code = removed.get("code") if isinstance(removed, dict) else str(removed)
                with soak.lock:
                    soak.removed[code] += 1
                if (cart.get("discount") or {}).get("code"):
                    soak.violate("lines", f"{rec.line()}: discount removed but still held")
            self.remember_lines(info, cart)
            soak.observe(cart, rec.t0, rec.t1, rec.line())
        elif rec.status == 409:
            if rec.code not in LINE_409_CODES:
                soak.violate("lines", f"{rec.line()}: unexpected 409 code")
        elif rec.status == 400 and rec.code in ("too_many_lines", "subtotal_too_large"):
            pass
        elif rec.status == 404 and rec.code == "line_not_found":
            # Clients edit each other's carts: a line another client removed meanwhile is
            # gone. A line nobody asked to remove must still be there.
            with soak.lock:
                removals = soak.lines_removed[str(line_id)] - (1 if removing else 0)
            if removals < 1:
                soak.violate("lines", f"{rec.line()}: line {line_id} was never removed")
        elif rec.status:
            soak.violate("lines", f"{rec.line()}: unexpected {str(body)[:300]}")

    def op_edit_lines(self) -> None:
        """Add, change or remove one to three lines of a pending itemized cart (any
        client's, while it may be paid: then 409), mostly one holding a code."""
        held = self.rng.random() < 0.6
        info = self.soak.pick(
            self.rng, None, lambda c: c.itemized and not c.paid and (c.discount or not held)
        )
        if info is None:
            self.op_create_lines()
            return
        for _ in range(self.rng.randint(1, 3)):
            self.edit_line(info)

    def edit_line(self, info: CartInfo) -> None:
        base = f"{CART}{info.id}/lines/"
        action = self.rng.choice(("add", "change", "change", "remove"))
        if action == "add" or not info.lines:
            body = self.new_line(info.currency)
            rec = self.soak.call(self.name, "add_line", E_ADD_LINE, "POST", base, info.id, body)
            self.check_line_change(rec, info, 201)
            return
        line_id, _ = self.rng.choice(info.lines)
        if action == "remove" and len(info.lines) > 1:
            path = f"{base}{line_id}/"
            with self.soak.lock:
                self.soak.lines_removed[str(line_id)] += 1
            rec = self.soak.call(self.name, "remove_line", E_REMOVE_LINE, "DELETE", path, info.id)
        else:
            body = {"quantity": self.rng.randint(1, 6)}
            if self.rng.random() < 0.3:
                body["unit_price"] = self.new_line(info.currency)["unit_price"]
            path = f"{base}{line_id}/"
            rec = self.soak.call(
                self.name, "change_line", E_EDIT_LINE, "PATCH", path, info.id, body
            )
        self.check_line_change(rec, info, 200, line_id, removing=rec.scenario == "remove_line")

    def op_apply_campaign(self) -> None:
        """A generated single-use code (some already used) or the campaign code on a
        pending itemized cart; sometimes the same code on two carts at once."""
        with self.soak.lock:
            generated = list(self.soak.generated)
        code = (
            self.rng.choice(generated)
            if generated and self.rng.random() < 0.6
            else CAMPAIGN["code"]
        )
        n = 2 if self.rng.random() < 0.25 else 1
        carts = []
        for _ in range(n):
            info = (
                self.soak.pick(
                    self.rng, None, lambda c: c.itemized and not c.paid and c.discount is None
                )
                or self.op_create_lines()
            )
            if info is not None and info not in carts:
                carts.append(info)
        if carts:
            run_together([lambda i=info: self.apply_campaign(i, code) for info in carts])

    def apply_campaign(self, info: CartInfo, code: str) -> Rec:
        soak = self.soak
        path = f"{CART}{info.id}/apply_discount/"
        rec = soak.call(
            self.name, "apply_campaign", E_APPLY, "POST", path, info.id, body={"code": code}
        )
        if rec.status == 200:
            with soak.lock:
                soak.campaign_applied[info.id].append(rec)
                info.discount = code
            held = (rec.body.get("discount") or {}).get("code")
            if held not in (CAMPAIGN["code"], GENERATED["code"], code.upper()):
                soak.violate("apply", f"{rec.line()}: holds {held} after applying {code}")
            self.remember_lines(info, rec.body)
            soak.observe(rec.body, rec.t0, rec.t1, rec.line())
        elif rec.status == 400:
            if rec.code not in CAMPAIGN_400_OK:
                soak.violate("apply", f"{rec.line()}: unexpected {str(rec.body)[:300]}")
        elif rec.status == 409:
            if rec.code not in FROZEN_CODES:
                soak.violate("apply", f"{rec.line()}: unexpected 409 code")
        elif rec.status:
            soak.violate("apply", f"{rec.line()}: unexpected status")
        return rec

    def op_refund_lines(self) -> None:
        """Give back some units of a line of a paid itemized cart; now and then all of a
        line twice at once (one may pass)."""
        info = self.soak.pick(self.rng, None, lambda c: c.itemized and c.paid)
        if info is None or not info.lines:
            return
        line_id, quantity = self.rng.choice(info.lines)
        units = self.rng.randint(1, quantity)
        body = {"lines": [{"line_id": line_id, "quantity": units}]}
        path = f"{CART}{info.id}/refund/"
        if self.rng.random() < 0.3:
            body = {"lines": [{"line_id": line_id, "quantity": quantity}]}
            recs = run_together(
                [
                    lambda: self.soak.call(
                        self.name, "refund_lines_race", E_REFUND, "POST", path, info.id, body
                    )
                ]
                * 2
            )
            for rec in recs:
                if rec is not None:
                    self.check_refund(rec, None)
            return
        key = self.new_key()
        rec = self.soak.call(self.name, "refund_lines", E_REFUND, "POST", path, info.id, body, key)
        self.check_refund(rec, None)
        retries = 0
        while rec.status in REFUND_5XX_CODES and retries < 4 and self.soak.running():
            retries += 1
            time.sleep(0.2 * retries)
            rec = self.soak.call(
                self.name, "refund_lines_retry", E_REFUND, "POST", path, info.id, body, key
            )
            self.check_refund(rec, None)

    def op_pay_paid(self) -> None:
        info = self.soak.pick(self.rng, None, lambda cart: cart.paid)
        if info is not None:
            self.pay(info, "pay_paid", None, None)


class FaultInjector(threading.Thread):
    """Sets the provider's seeded random fault mode for the whole load, and every 6-12 s
    (unless --no-outages) runs an outage window on top of it."""

    def __init__(self, soak: Soak, seed: int, outages: bool):
        super().__init__(name="faults", daemon=True)
        self.soak = soak
        self.seed = seed
        self.rng = random.Random(f"{seed}-faults")
        self.outages = outages
        self.http = requests.Session()
        self.http.trust_env = False
        # A fresh connection per control call: the injector waits 6-12 s between calls,
        # longer than the provider keeps an idle connection, and a reused one it has just
        # closed answers with a reset that would end the injector.
        self.http.headers["Connection"] = "close"
        self.group = 0

    def queue(self, label: str, kind: str, count: int | None, delay_ms: int | None):
        body = {"kind": kind, "count": count}
        if delay_ms is not None:
            body["delay_ms"] = delay_ms
        url = f"{self.soak.provider_url}/control/faults"
        self.http.post(url, json=body, timeout=10).raise_for_status()
        fault = Injected(self.group, label, kind, count, delay_ms, time.time())
        with self.soak.lock:
            self.soak.injected.append(fault)
        return fault

    def run(self) -> None:
        try:
            self.http.post(
                f"{self.soak.provider_url}/control/faults",
                json={
                    "mode": "random",
                    "rate": RANDOM_RATE,
                    "seed": self.seed,
                    "delay_ms": RANDOM_DELAY_MS,
                },
                timeout=10,
            ).raise_for_status()
            self.http.post(
                f"{self.soak.provider_url}/control/faults",
                json={
                    "mode": "random",
                    "rate": WEBHOOK_FAULT_RATE,
                    "seed": self.seed,
                    "kinds": WEBHOOK_FAULT_KINDS,
                },
                timeout=10,
            ).raise_for_status()
            while not self.soak.stop.wait(self.rng.uniform(6.0, 12.0)) and self.soak.running():
                if self.outages:
                    self.group += 1
                    self.outage(*self.rng.choice(OUTAGES))
        except Exception:
            self.soak.violate("soak_injector_crashed", traceback.format_exc())

    def outage(self, label: str, phases) -> None:
        for kind, delay_ms, seconds in phases:
            fault = self.queue(label, kind, None, delay_ms)
            self.soak.stop.wait(seconds)  # cut short when the run stops
            self.http.delete(
                f"{self.soak.provider_url}/control/faults", params={"only": "queue"}, timeout=10
            )
            fault.until = time.time()


# --- Processes and database ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A child process in its own process group; stdout and stderr go to log files."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.out_path = log_dir / f"{name}.stdout.log"
        self.err_path = log_dir / f"{name}.stderr.log"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def wait_until_answers(self, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        session = requests.Session()
        session.trust_env = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SetupError(
                    f"{self.name} exited with {self.process.returncode}: {self.tail()}"
                )
            try:
                if session.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SetupError(f"{self.name} did not answer {url} in {START_TIMEOUT} s: {self.tail()}")

    def tail(self, lines: int = 30) -> str:
        text = self.err_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """SIGTERM to the group (gunicorn's graceful stop), SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Still running, so its group id is still ours: kill the master and workers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_tool(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise SetupError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def db_dump(env: dict) -> dict:
    result = run_tool([sys.executable, "-m", "soak.db", "dump"], env)
    return json.loads(result.stdout)


def git(*args: str) -> str:
    result = subprocess.run(
        ["git", "--no-optional-locks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


# --- Checks at the end --------------------------------------------------------------


def list_all_carts(soak: Soak) -> list[dict]:
    session = soak.session()
    carts, url = [], f"{soak.api_url}{CART}?page_size=100"
    for _ in range(10_000):
        response = session.get(url, timeout=CLIENT_TIMEOUT)
        response.raise_for_status()
        page = parse_json(response.text)
        carts.extend(page["results"])
        url = page.get("next")
        if not url:
            return carts
    raise SetupError("the cart list did not end")


def provider_get(soak: Soak, path: str):
    response = soak.session().get(soak.provider_url + path, timeout=30)
    response.raise_for_status()
    return response.json()


def cart_history(soak: Soak, cart_id: str) -> str:
    """The soak's requests for the cart and the provider's charge requests for it, in time
    order: the evidence printed with a violation."""
    events = [(rec.t0, rec.line()) for rec in soak.records if rec.cart == cart_id]
    for entry in soak.journal:
        body = entry.get("body")
        if isinstance(body, dict) and str(body.get("cart_id")) == cart_id:
            at = epoch(entry["at"])
            stamp = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]
            events.append(
                (
                    at,
                    f"{stamp} provider <- POST /request_payment key={entry['idempotency_key']} "
                    f"fault={entry['fault']} -> {entry['status']}",
                )
            )
    return "\n    ".join(line for _, line in sorted(events)) or "(no request of the soak)"


def check_lost_updates(soak: Soak, db: dict) -> None:
    carts = {cart["id"]: cart for cart in db["carts"]}
    for cart in db["carts"]:
        total, subtotal = dec(cart["total"]), dec(cart["subtotal"])
        if total != subtotal - dec(cart["amount_discounted"]):
            soak.violate("lost_update", f"database cart {cart}: total != subtotal - discount")
    applies = Counter()
    for cart_id, recs in soak.applied.items():
        code = (recs[-1].body.get("discount") or {}).get("code")
        applies.update((rec.body.get("discount") or {}).get("code") for rec in recs)
        held = carts.get(cart_id)
        shown = recs[-1].body
        wanted = (
            code,
            dec(shown["subtotal"]),
            dec(shown["amount_discounted"]),
            dec(shown["total"]),
        )
        got = held and (
            held["discount"],
            dec(held["subtotal"]),
            dec(held["amount_discounted"]),
            dec(held["total"]),
        )
        if got != wanted:
            soak.violate(
                "lost_update",
                f"cart {cart_id}: a 200 apply showed {wanted}, the database holds {got}\n    "
                + cart_history(soak, cart_id),
            )
    for cart in db["carts"]:
        if (
            cart["discount"]
            and cart["id"] not in soak.applied
            and cart["id"] not in soak.campaign_applied
        ):
            soak.violate(
                "lost_update",
                f"cart {cart['id']} holds {cart['discount']} but no apply answered 200\n    "
                + cart_history(soak, cart["id"]),
            )
    for discount in db["discounts"]:
        # A use is reserved when the code is applied and consumed when the cart is paid:
        # every 200 apply holds one (no reservation expires within a soak), and
        # times_used counts the consumed ones, one per paid cart holding the code.
        used, limit = discount["times_used"], discount["usage_limit"]
        held = discount["reserved"] + discount["consumed"]
        # Campaign codes go to itemized carts, whose line changes may take them off again.
        campaign = discount["code"] not in CODE_BY_NAME
        if held != discount["carts"] or (not campaign and held != applies[discount["code"]]):
            soak.violate(
                "lost_update",
                f"code {discount['code']}: {discount['reserved']} reserved + "
                f"{discount['consumed']} consumed uses, carts holding it {discount['carts']}, "
                f"200 applies {applies[discount['code']]}",
            )
        if not (used == discount["consumed"] == discount["paid_carts"]):
            soak.violate(
                "lost_update",
                f"code {discount['code']}: times_used {used}, consumed {discount['consumed']}, "
                f"paid carts holding it {discount['paid_carts']}",
            )
        if limit is not None and held > limit:
            soak.violate("lost_update", f"code {discount['code']}: held {held} > limit {limit}")


def check_campaigns(soak: Soak, db: dict) -> dict:
    """Generated codes, budgets, per-customer limits, itemized carts and refunds by line,
    as the database holds them after reconcile."""
    paid_status = PAID
    carts = {cart["id"]: cart for cart in db["carts"]}
    live = [r for r in db["reservations"] if r["status"] != "released"]
    # Every generated code held or consumed by one cart at most.
    by_code = Counter(r["code"] for r in live if r["code"])
    consumed_codes = Counter(r["code"] for r in live if r["code"] and r["status"] == "consumed")
    for code, count in by_code.items():
        if count > 1:
            soak.violate("campaigns", f"generated code {code} held by {count} carts")
    for discount in db["discounts"]:
        name = discount["code"]
        mine = [r for r in live if r["discount"] == name]
        consumed = sum((dec(r["amount"]) for r in mine if r["status"] == "consumed"), Decimal(0))
        reserved = sum((dec(r["amount"]) for r in mine if r["status"] == "reserved"), Decimal(0))
        paid_off = sum(
            (
                dec(c["amount_discounted"])
                for c in carts.values()
                if c["discount"] == name and c["payment_status"] in paid_status
            ),
            Decimal(0),
        )
        if dec(discount["amount_consumed"]) != consumed or consumed != paid_off:
            soak.violate(
                "campaigns",
                f"{name}: amount_consumed {discount['amount_consumed']}, consumed "
                f"reservations {consumed}, paid carts' discounts {paid_off}",
            )
        budget = discount["budget_amount"]
        if budget is not None and consumed + reserved > dec(budget):
            soak.violate(
                "campaigns", f"{name}: {consumed} consumed + {reserved} reserved > budget {budget}"
            )
        limit = discount["limit_per_customer"]
        if limit is not None:
            per_customer = Counter(r["customer_ref"] for r in mine)
            for customer, count in per_customer.items():
                if count > limit:
                    soak.violate(
                        "campaigns", f"{name}: customer {customer!r} holds {count} > {limit}"
                    )
        for r in mine:
            cart = carts.get(r["cart"])
            if (
                cart is None
                or cart["discount"] != name
                or dec(r["amount"]) != dec(cart["amount_discounted"])
            ):
                soak.violate("campaigns", f"{name}: reservation {r} vs cart {cart}")
    # Itemized carts: lines add up, shares add up; refunds by line within units paid.
    itemized = [cart for cart in carts.values() if cart["itemized"]]
    refund_lines = db["refund_lines"]
    units_refunded = 0
    for cart in itemized:
        lines = cart["lines"]
        amounts = sum((line["quantity"] * dec(line["unit_price"]) for line in lines), Decimal(0))
        shares = sum((dec(line["amount_discounted"]) for line in lines), Decimal(0))
        if amounts != dec(cart["subtotal"]) or shares != dec(cart["amount_discounted"]):
            soak.violate(
                "campaigns",
                f"cart {cart['id']}: lines {amounts} vs subtotal {cart['subtotal']}, shares "
                f"{shares} vs discount {cart['amount_discounted']}",
            )
        if sum(line["quantity"] for line in lines) != cart["items_number"]:
            soak.violate("campaigns", f"cart {cart['id']}: quantities != items_number")
        for line in lines:
            given = refund_lines.get(str(line["id"]))
            if given is None:
                continue
            units_refunded += given["quantity"]
            paid_per_unit = line["quantity"] * dec(line["unit_price"]) - dec(
                line["amount_discounted"]
            )
            if given["quantity"] > line["quantity"] or dec(given["amount"]) > paid_per_unit:
                soak.violate(
                    "campaigns",
                    f"cart {cart['id']} line {line['id']}: {given} refunded of "
                    f"{line['quantity']} units paid {paid_per_unit}",
                )
    return {
        "generated codes": len(soak.generated),
        "generated codes consumed": len(consumed_codes),
        "generated codes held (not paid)": len(by_code) - len(consumed_codes),
        "itemized carts": len(itemized),
        "itemized carts paid": sum(1 for c in itemized if c["payment_status"] in paid_status),
        "discounts taken off by a line change": sum(soak.removed.values()),
        "line units refunded": units_refunded,
        **{
            f"{d['code']} consumed / budget": f"{d['amount_consumed']} / {d['budget_amount']}"
            for d in db["discounts"]
            if d["budget_amount"] is not None
        },
        **{
            f"{d['code']} customers (limit {d['limit_per_customer']})": len(
                {r["customer_ref"] for r in live if r["discount"] == d["code"]}
            )
            for d in db["discounts"]
            if d["limit_per_customer"] is not None
        },
    }


def check_books(
    soak: Soak, api_carts: list[dict], db: dict, ledger: list[dict], refunds: list[dict]
) -> dict:
    """The provider's ledgers against our database, after reconcile.

    Per currency: charges - refunds at the provider = paid carts' totals - refunded
    amounts here. Every paid cart has exactly one charge of its total recorded by its
    successful attempt; any other charge of a cart is a duplicate recorded here and given
    back in full; every refund is recorded on both sides; nothing is left open.
    """
    carts = {cart["id"]: cart for cart in api_carts}
    db_carts = {cart["id"]: cart for cart in db["carts"]}
    attempts_by_key = {attempt["idempotency_key"]: attempt for attempt in db["payments"]}
    attempts_by_charge = {
        a["provider_payment_id"]: a for a in db["payments"] if a["provider_payment_id"]
    }
    charges = defaultdict(list)
    for payment in ledger:
        if payment["payment_status"] == "success":
            charges[str(payment["cart_id"])].append(payment)
    paid = {cid for cid, cart in carts.items() if cart["payment_status"] in PAID}
    free = {cid for cid in paid if dec(carts[cid]["total"]) == 0}
    refunded_at_provider = defaultdict(int)  # payment id -> minor units
    for made in refunds:
        refunded_at_provider[made["payment_id"]] += made["amount"]

    if set(carts) != set(db_carts) or set(carts) != set(soak.carts):
        soak.violate(
            "books",
            f"carts: {len(carts)} listed by the API, {len(db_carts)} in the database, "
            f"{len(soak.carts)} created by the soak",
        )
    for cid, cart in carts.items():
        held = db_carts.get(cid)
        if held and (held["payment_status"], dec(held["amount_refunded"])) != (
            cart["payment_status"],
            dec(cart["amount_refunded"]),
        ):
            soak.violate("books", f"cart {cid}: API says {cart['payment_status']}, DB {held}")

    # Charges: the paid cart's own, or duplicates given back in full.
    duplicates = 0
    for cid in sorted(set(charges) | paid):
        cart = carts.get(cid) or {}
        own, others = [], []
        for charge in charges.get(cid, []):
            attempt = attempts_by_key.get(charge["idempotency_key"]) or attempts_by_charge.get(
                charge["id"]
            )
            if attempt and attempt["status"] == "success":
                own.append((charge, attempt))
            else:
                others.append((charge, attempt))
        wanted = 1 if cid in paid - free else 0
        if len(own) != wanted:
            soak.violate(
                "books",
                f"cart {cid} ({cart.get('payment_status')}) has {len(own)} charges recorded "
                f"as its payment, wants {wanted}\n    " + cart_history(soak, cid),
            )
        for charge, attempt in own:
            if attempt["provider_payment_id"] != charge["id"] or charge["amount"] != minor_units(
                dec(cart.get("total", 0)), cart.get("currency", "USD")
            ):
                soak.violate("books", f"cart {cid}: charge {charge} vs attempt {attempt}")
        for charge, attempt in others:
            duplicates += 1
            given_back = refunded_at_provider[charge["id"]]
            if (
                attempt is None
                or attempt["status"] != "duplicate"
                or given_back != charge["amount"]
            ):
                soak.violate(
                    "books",
                    f"cart {cid}: charge {charge['id']} of {charge['amount']} is not its payment "
                    f"and {given_back} of it was given back (attempt: "
                    f"{attempt and attempt['status']})\n    " + cart_history(soak, cid),
                )

    # Refunds: recorded on both sides, amounts equal; nothing open; holds match.
    db_refunds = {r["provider_refund_id"]: r for r in db["refunds"] if r["provider_refund_id"]}
    for made in refunds:
        ours = db_refunds.get(made["id"])
        if (
            ours is None
            or ours["status"] != "success"
            or minor_units(dec(ours["amount"]), ours["currency"]) != made["amount"]
        ):
            soak.violate("books", f"provider refund {made} is recorded as {ours}")
    provider_refund_ids = {made["id"] for made in refunds}
    held_by = defaultdict(Decimal)
    for ours in db["refunds"]:
        if ours["status"] in OPEN_ATTEMPT:
            soak.violate("books", f"refund left open after reconcile: {ours}")
        if ours["status"] == "success":
            held_by[ours["payment"]] += dec(ours["amount"])
            if ours["provider_refund_id"] not in provider_refund_ids:
                soak.violate("books", f"refund {ours} is not in the provider's ledger")
    for attempt in db["payments"]:
        if attempt["status"] in OPEN_ATTEMPT:
            soak.violate("books", f"attempt left open after reconcile: {attempt}")
        if dec(attempt["amount_refunded"]) != held_by[attempt["id"]]:
            soak.violate("books", f"attempt {attempt['id']} holds {attempt['amount_refunded']}")
    for cid, held in db_carts.items():
        if held["payment_status"] == "processing":
            soak.violate("books", f"cart {cid} still processing after reconcile")

    # The books, per currency, in minor units.
    books = {}
    currencies = {cart["currency"] for cart in carts.values()}
    for currency in sorted(currencies):
        charged = sum(
            p["amount"] for found in charges.values() for p in found if p["currency"] == currency
        )
        given_back = sum(r["amount"] for r in refunds if r["currency"] == currency)
        paid_totals = sum(
            minor_units(dec(carts[cid]["total"]), currency)
            for cid in paid
            if carts[cid]["currency"] == currency
        )
        refunded = sum(
            minor_units(dec(cart["amount_refunded"]), currency)
            for cart in carts.values()
            if cart["currency"] == currency
        )
        books[currency] = (charged - given_back, paid_totals - refunded)
        if charged - given_back != paid_totals - refunded:
            soak.violate(
                "books",
                f"{currency}: charges {charged} - refunds {given_back} at the provider != paid "
                f"carts {paid_totals} - refunded {refunded} here (minor units)",
            )
    return {
        "carts": len(carts),
        "paid": len(paid),
        "paid_free": len(free),
        "partially_refunded": sum(
            1 for c in carts.values() if c["payment_status"] == "partially_refunded"
        ),
        "refunded": sum(1 for c in carts.values() if c["payment_status"] == "refunded"),
        "charges": sum(len(found) for found in charges.values()),
        "duplicates": duplicates,
        "declines": sum(1 for payment in ledger if payment["payment_status"] == "failed"),
        "ledger": len(ledger),
        "refunds": len(refunds),
        "duplicate_refunds": sum(1 for r in refunds if r.get("reason") == "duplicate_charge"),
        "books": books,
    }


def match_fault(entry: dict, at: float, soak: Soak) -> str:
    """The label of the fault that hit this journal entry: an outage window, else a draw
    of the random mode."""
    for fault in soak.injected:
        window = fault.count is None and fault.kind == entry["fault"]
        if window and fault.at - 0.05 <= at <= (fault.until or float("inf")) + 0.05:
            return fault.label
    return f"random: {entry['fault']}"


def journal_cart(entry: dict, payment_carts: dict[str, str]) -> str | None:
    """The cart a charge or refund request was about."""
    body = entry.get("body")
    if not isinstance(body, dict):
        return None
    if "cart_id" in body:
        return str(body["cart_id"])
    return payment_carts.get(str(body.get("payment_id")))


def attribute_faults(soak: Soak, journal: list[dict], ledger: list[dict]) -> dict[str, dict]:
    """For each fault, the pay and refund answers of the cart whose request it hit."""
    payment_carts = {p["id"]: str(p["cart_id"]) for p in ledger}
    labels = [f"random: {kind}" for kind in FAULT_KINDS] + [label for label, _ in OUTAGES]
    stats: dict[str, dict] = {
        label: {"injected": set(), "used": 0, "answers": Counter()} for label in labels
    }
    for fault in soak.injected:
        stats[fault.label]["injected"].add(fault.group)
    calls = defaultdict(list)
    for rec in soak.records:
        if rec.endpoint in (E_PAY, E_REFUND):
            calls[rec.cart].append(rec)
    explained = set()
    for entry in journal:
        if not entry.get("fault"):
            continue
        at = epoch(entry["at"])
        label = match_fault(entry, at, soak)
        stats.setdefault(label, {"injected": set(), "used": 0, "answers": Counter()})
        stats[label]["used"] += 1
        cart = journal_cart(entry, payment_carts)
        hits = [rec for rec in calls.get(cart, []) if rec.t0 - 0.05 <= at <= rec.t1 + 0.05]
        for rec in hits:
            if id(rec) not in explained:
                kind = "refund" if rec.endpoint == E_REFUND else "pay"
                stats[label]["answers"][f"{kind} {rec.status} {rec.code}".strip()] += 1
            explained.add(id(rec))
        if not hits:
            stats[label]["answers"]["(no request of ours in flight)"] += 1
    for rec in soak.records:
        documented = {E_PAY: PAY_5XX_CODES, E_REFUND: REFUND_5XX_CODES}.get(rec.endpoint, {})
        if rec.status in documented and rec.code != BUSY and id(rec) not in explained:
            soak.violate(
                "5xx", f"{rec.line()}: no injected fault hit this cart during the request"
            )
    for label, item in stats.items():
        item["injected"] = len(item["injected"]) if not label.startswith("random") else "-"
    return stats


def scan_log(path: Path, start: int = 0, end: int | None = None) -> tuple[list[str], Counter]:
    """Problem lines (tracebacks, errors) and counts of log levels in a server log."""
    with path.open("rb") as log:
        log.seek(start)
        text = log.read(None if end is None else max(0, end - start)).decode(errors="replace")
    levels = Counter()
    problems = []
    for line in text.splitlines():
        match = re.search(r"\[(INFO|WARNING|ERROR|CRITICAL|DEBUG)\]| (INFO|WARNING|ERROR) ", line)
        if match:
            levels[match.group(1) or match.group(2)] += 1
        if LOG_PAY_5XX.search(line):
            levels["ERROR of a documented 5xx of /pay/ or /refund/"] += 1
        elif LOG_PROBLEM.search(line):
            problems.append(line)
    return problems, levels


def paid_cart_ids(db: dict) -> set[str]:
    return {cart["id"] for cart in db["carts"] if cart["payment_status"] in PAID}


def wait_for_events(env: dict, shop: WebhookReceiver) -> float:
    """Seconds until every paid cart's cart.paid reached the shop (or the time ran out:
    the check below says which are missing)."""
    started = time.monotonic()
    paid = paid_cart_ids(db_dump(env))
    while time.monotonic() - started < EVENTS_SETTLE_SECONDS:
        with shop.lock:
            delivered = {
                body["data"]["cart"]["id"]
                for _, body in shop.accepted
                if body["type"] == "cart.paid"
            }
        if paid <= delivered:
            break
        time.sleep(0.5)
    return time.monotonic() - started


def check_events(soak: Soak, db: dict, shop: WebhookReceiver) -> dict:
    """Every paid cart produced exactly one cart.paid, delivered to the shop once; no
    other cart produced one; every delivery's signature verified."""
    paid = paid_cart_ids(db)
    with shop.lock:
        accepted = list(shop.accepted)
        refused = list(shop.refused)
        retried = sum(1 for _, status in shop.received if status >= 300)
    per_id = Counter(msg_id for msg_id, _ in accepted)
    for msg_id, count in per_id.items():
        if count > 1:
            soak.violate("events", f"event {msg_id} delivered {count} times")
    paid_events = defaultdict(set)
    for msg_id, body in accepted:
        if body["type"] == "cart.paid":
            paid_events[body["data"]["cart"]["id"]].add(msg_id)
    for cart_id in sorted(paid):
        if len(paid_events.get(cart_id, ())) != 1:
            soak.violate(
                "events",
                f"paid cart {cart_id}: {len(paid_events.get(cart_id, ()))} cart.paid events",
            )
    for cart_id in sorted(set(paid_events) - paid):
        soak.violate("events", f"cart.paid for cart {cart_id}, which is not paid")
    if refused:
        soak.violate("events", f"{len(refused)} deliveries whose signature did not verify")
    provider = provider_get(soak, "/control/webhooks")
    fault_of = {d["id"]: d["fault"] for d in provider["deliveries"] if d.get("fault")}
    faults = Counter(fault_of.values())
    answers = Counter(d.get("status") for d in provider["deliveries"] if "status" in d)
    return {
        "accepted": len(accepted),
        "paid": sum(len(ids) for ids in paid_events.values()),
        "paid_carts": len(paid),
        "retried": retried,
        "provider": f"{provider['published']} published; faults "
        + (", ".join(f"{k} {n}" for k, n in sorted(faults.items())) or "none")
        + "; delivery answers "
        + ", ".join(f"{k} x{n}" for k, n in sorted(answers.items(), key=str)),
    }


# --- Report -------------------------------------------------------------------------


def table(header: tuple, rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return "\n".join(lines)


def report(soak: Soak, facts: dict) -> str:
    by_endpoint = Counter((rec.endpoint, rec.status, rec.code) for rec in soak.records)
    request_rows = [
        (endpoint, status or "no answer", code or "", count)
        for (endpoint, status, code), count in sorted(by_endpoint.items())
    ]
    scenarios = Counter(rec.scenario for rec in soak.records)
    fault_rows = [
        (
            label,
            stats["injected"],
            stats["used"],
            ", ".join(f"{answer} x{n}" for answer, n in sorted(stats["answers"].items())) or "-",
        )
        for label, stats in facts["faults"].items()
        if stats["injected"] or stats["used"] or not soak.args.no_outages
    ]
    books = facts["books"]
    open_before = facts["open_before"]
    violations = Counter(check for check, _ in soak.violations)
    elapsed = facts["load_seconds"]
    parts = [
        f"- date: {facts['date']}, commit: {facts['commit']}, seed: {soak.args.seed}, "
        f"duration: {soak.args.duration} s, clients: {soak.args.clients}",
        f"- API: gunicorn {API_WORKERS} workers x {API_THREADS} threads on PostgreSQL; "
        f"provider read timeout {READ_TIMEOUT} s, connect {CONNECT_TIMEOUT} s, "
        f"{MAX_RETRIES} retries, backoff {RETRY_BACKOFF} s, stale after {STALE_SECONDS} s",
        f"- requests: {len(soak.records)} in {elapsed:.1f} s "
        f"({len(soak.records) / max(elapsed, 0.001):.0f}/s)",
        "",
        "Requests by endpoint, status and error code:",
        "",
        table(("endpoint", "status", "code", "count"), request_rows),
        "",
        "Scenarios: " + ", ".join(f"{name} {n}" for name, n in sorted(scenarios.items())),
        "",
        "Faults (used = charge and refund requests it broke; answers = the pay and refund "
        "responses of that cart in flight when it hit):",
        "",
        table(("fault", "injected", "used", "pay answers"), fault_rows),
        "",
        f"- faults still queued when the load stopped (cleared): {facts['faults_left']}",
        f"- carts: {books['carts']} created; paid: {books['paid']} "
        f"({books['paid_free']} fully discounted, nothing to charge; "
        f"{books['partially_refunded']} partially refunded, {books['refunded']} refunded)",
        f"- provider ledger: {books['ledger']} payments, {books['charges']} successful "
        f"charges ({books['duplicates']} duplicates, each given back), "
        f"{books['declines']} declines; {books['refunds']} refunds "
        f"({books['duplicate_refunds']} of duplicate charges)",
        "- books (minor units), charges - refunds at the provider = paid carts' totals - "
        "refunded here: "
        + ", ".join(
            f"{currency} {ours} = {theirs}" for currency, (ours, theirs) in books["books"].items()
        ),
        "- lines and campaigns: "
        + ", ".join(f"{name} {value}" for name, value in facts["campaigns"].items()),
        f"- attempts and refunds open when the load stopped: {len(open_before)}"
        + (
            " (" + ", ".join(f"{s} {n}" for s, n in sorted(Counter(open_before).items())) + ")"
            if open_before
            else ""
        ),
        f"- reconcile_payments --older-than 0: {facts['reconcile']}",
        f"- shop events (worker, signed, first {SHOP_FAILURES} answers 500): "
        f"{facts['events']['accepted']} delivered ({facts['events']['paid']} cart.paid for "
        f"{facts['events']['paid_carts']} paid carts), {facts['events']['retried']} "
        f"answered 500 and retried, settled {facts['events_wait']:.1f} s after reconcile",
        f"- provider events: {facts['events']['provider']}",
        f"- API log: {dict(sorted(facts['log_levels'].items()))}; problem lines: "
        f"{len(facts['log_problems'])}",
        f"- violations: {len(soak.violations)}"
        + (
            " (" + ", ".join(f"{c} {n}" for c, n in sorted(violations.items())) + ")"
            if violations
            else ""
        ),
    ]
    return "\n".join(parts)


METHOD = """\
`python soak/run.py` (module docstring: usage) runs a mixed load against the API as it is
deployed, gunicorn on PostgreSQL, while the fake payment provider breaks now and then, and
then checks that nothing was lost and the books balance.

## Set-up

- A fresh PostgreSQL database (`soak_<pid>`, dropped at the end), migrated.
- The fake provider under gunicorn, one worker with 16 threads (its ledger lives in
  memory), default card limit 100000000.00, so the default card takes every cart.
- The API under gunicorn with `CoreRoot/gunicorn.py`: 2 workers x 4 threads, `ENV=DEV`,
  provider connect timeout 0.5 s, read timeout 1.5 s, 2 retries, backoff 0.1 s, and
  `PAYMENT_ATTEMPT_STALE_SECONDS=13`, above twice the client's worst case of 6.3 s (the rule in
  `CoreRoot/settings.py`), and the rate limits off (`RATELIMIT_*=off`: every client is
  127.0.0.1 and one cart sees many requests on purpose). Both on free loopback ports;
  their stdout (access log) and stderr (error log, Django's log) go to files in a log
  directory the run prints.

## Load

Client threads (`--clients`, 8) each draw operations from their own RNG seeded from
`--seed` until `--duration` (60 s) is over: create a cart (USD, EUR or JPY, random total
with the currency's decimals; now and then an invalid JPY total, which must be a 400),
read one, list carts (with and without filters), apply a discount code (`SOAK10` 10 %,
`SOAK25EUR` 25 % of EUR carts from 50.00, `SOAKFLAT5` 5 off, `SOAKJPY500` 500 JPY off,
`SOAKLIMIT` 2 off usable 20 times, `SOAKFREE` 100 % usable 12 times, and an unknown
code), two codes on one cart at once, the limited code on four carts at once; pay with
the default card, `pm_card_visa` or `pm_card_chargeDeclined`, with or without an
Idempotency-Key; the same pay twice with one key; one cart paid from two threads at
once; pay a paid cart; after a 502/503/504, retry with the same key (mostly; some are
left to the end's reconcile); refund a paid cart by a tenth to a third of its subtotal
or in full, two to four refunds of one cart at once (one of them sometimes "everything
left"), the same refund twice with one key, and retry a refund after a 502/503/504.
Itemized carts too: create one with 1-4 lines (SKUs, quantities, unit prices in the
currency's steps; most with a `customer_ref` out of 25 customers); add, change
(quantity, sometimes price) or remove a line while it is pending (a paid or paying cart
must answer 409); apply a generated single-use code of `SOAKGEN` (15 % of `TEA-` lines,
40 codes made by `POST /api/discount/{id}/codes/` and tried again and again, so most
tries meet `discount_code_used`) or `SOAKCAMP` (3.00 off USD carts from 25.00, once per
customer, budget 30.00), sometimes one code on two carts at once; pay them like the
others; refund some units of a line of a paid one, or all of a line twice at once. The
lines an answer shows must add up to its subtotal and items_number, and their discount
shares to its `amount_discounted`. Every response is recorded and checked at once:
statuses and error codes each endpoint documents, a 200 pay shows a paid cart and an
attempt for its total, a 402 a declined one, a 200 refund a refund made of the amount
asked and a partially refunded or refunded cart, an apply takes off what the code's rule
says, every cart shown has total = subtotal - discount, at most one successful attempt,
an `amount_refunded` within its total that its status agrees with, and a discount or a
paid status once seen never goes away. (The check allows a refund listed before
`amount_refunded` counts it, never the other way round, though a cart is now read in one
snapshot.)

The provider runs in its random fault mode for the whole load (`{"mode": "random",
"rate": 0.2, "seed": <seed>, "delay_ms": [200, 3000]}`): every charge and refund request
draws, and a fifth meet a fault of a kind drawn from all ten: latency and
charge_then_delay (0.2-3 s, below and above the 1.5 s read timeout), http_500, http_503,
reset, empty_reply, malformed, charge_then_reset and charge_then_empty_reply (the
provider charges or refunds, then drops the answer), and reset_then_charge (the
connection is reset, the charge or refund is made 0.2-3 s later). A random fault breaks one attempt
of one request and the API's retries mostly absorb it, so a fault thread also runs an
outage every 6-12 s (left out with `--no-outages`): one kind with `count: null` for a
window, then the queue is cleared (the random mode goes on). "latency 4 s, then
malformed" makes the provider hang for 1 s (those requests land 4 s later) and then
answer garbage for 2 s, which is where the retries of the hung requests land;
"brownout" hangs every request for 4 s by 6 s, longer than all the retries, so attempts
and refunds end 504 and stay open for reconcile; "charge, then reset" processes every
request and drops every answer for 2 s. The provider's journal says which request each
fault hit; the pay and refund responses for that cart in flight at that moment are its
answers. While the provider is slow, each API process lets 2 provider calls wait
(`PAYMENT_MAX_IN_FLIGHT`, half its 4 threads); the others get a fast 503
`payment_provider_busy`, which the clients retry.

## Checks after the load

The load stops; faults are cleared; attempts and refunds still open are counted; after
waiting the stale time plus the longest fault delay (so every delayed provider request
has landed), `python manage.py reconcile_payments --older-than 0` runs on the same
database. Then the API's cart list, the database (`soak/db.py dump`), the provider's
ledgers (`GET /payments`, `GET /refunds`) and journal are read, and:

1. No 500 and no 5xx other than 502/503/504 on `/pay/` and `/refund/` with their
   documented code (`payment_provider_error`, `payment_provider_unavailable`,
   `payment_provider_busy`, `payment_outcome_unknown`, `refund_outcome_unknown`) and an
   injected fault hitting that cart's request during it (a busy answer needs none). No
   request without an answer (the client waits 35 s, more than gunicorn's 30 s worker
   timeout). No traceback or ERROR line in the API's log, except `django.request`'s
   line for each documented 5xx (counted apart).
2. No lost update: every cart in the database has total = subtotal - amount_discounted;
   each code's reserved plus consumed uses equal the carts holding it and the number of
   200 applies of it, and never exceed its limit; its times_used equals its consumed
   uses and the paid carts holding it; every 200 apply's cart (code, subtotal, discount,
   total) is what the database holds; no cart got two 200 applies; no cart holds a code
   without a 200 apply.
3. The books balance, per currency, in minor units: successful charges minus refunds in
   the provider's ledgers equal the totals of the carts paid (success, partially
   refunded or refunded) minus their `amount_refunded`. Every paid cart with a non-zero
   total has exactly one charge recorded as its payment (its successful attempt names it,
   of the cart's total), fully discounted ones none; any other charge of a cart is a
   duplicate recorded here (`duplicate`) and given back in full at the provider; every
   provider refund is a successful refund here of the same amount and every successful
   refund here is in the provider's ledger; each charge's refund hold
   (`amount_refunded`) equals its refunds made; the API and the database agree on every
   cart's status and amount refunded; no attempt or refund is left open and no cart is
   processing.

4. Lines and campaigns: no generated code is held or consumed by two carts; each code's
   `amount_consumed` equals its consumed reservations and the discounts of the paid
   carts holding it, and with a budget, consumed plus reserved amounts stay within it;
   no customer holds a per-customer-limited code more often than its limit; every live
   reservation's amount is its cart's discount; every itemized cart's lines add up to
   its subtotal and items_number and their shares to its `amount_discounted`; no line
   had more units refunded than it has, nor more money than it was paid.

The exit status is 1 when any check fails; each violation is printed with the cart's
request sequence. With `--record` the summary below is rewritten from the run.
"""


FOUND = """\
## What it has found

Each bug it found is fixed, with a regression test:

1. **A double charge** (`tests/test_payment_api.py`:
   `test_nonsense_after_an_earlier_read_timeout_still_means_maybe_charged`;
   `payments/tests/test_pay_integration.py`:
   `test_a_slow_charge_then_nonsense_keeps_the_attempt_open_so_no_second_charge`).
   The provider hung past the read timeout, the client's retry got a malformed answer,
   the ledger had no charge *yet*, so the attempt was closed as "nothing charged" and a
   later pay with a new key charged again when the hung request completed. Now nonsense
   after a timed-out attempt counts as "maybe charged": the attempt stays open and the
   next pay resumes it with the same key; and `reconcile_payments` re-checks attempts
   recently closed as not charged and records any charge that landed late.
2. **An Idempotency-Key replaying another outcome**
   (`payments/tests/test_pay_service.py`:
   `test_a_key_that_resumed_another_attempt_replays_that_attempts_outcome`).
   A keyed pay that resumed an attempt left open by another request answered with that
   attempt's decline, but repeating it paid anew. Keys now map to the attempt that
   answered them (`PaymentRequest`).
3. **A pay answering a stale cart**
   (`payments/tests/test_pay_service.py`:
   `test_the_pay_answer_shows_a_discount_applied_while_the_request_began`).
   A discount applied between a pay request reading the cart and locking it was charged
   correctly (the total is read under the lock) but the answer showed the cart without
   it. The answer now shows the cart as locked.
4. **A refund retry answered 200 with nothing refunded**
   (`payments/tests/test_refund_service.py`:
   `test_the_same_key_after_a_refund_proven_not_made_tries_it_again_with_the_same_key`,
   `test_a_busy_process_tries_a_refund_not_made_again_later_instead_of_replaying_it`).
   A refund that had ended 502/503 (proven not made) was "replayed" by its key with its
   `error` status. The same request now tries it again, with the same provider key, after
   reserving its amount again; only a refund made or declined is replayed.

5. **A cart read showing lines that do not add up**
   (`cart/tests/test_concurrency.py`:
   `test_a_cart_read_while_a_line_is_added_shows_one_moment_of_it`). GET of a cart or a
   page of carts read the cart row and its lines in separate queries; a line change
   committed in between showed lines whose amounts did not add up to the subtotal (and
   shares not to the discount). Reads now run in one snapshot (`common/snapshot.py`:
   REPEATABLE READ on PostgreSQL, one transaction on SQLite).
6. **An apply answer with a stale items_number**
   (`cart/tests/test_lines.py`:
   `test_the_apply_answer_shows_lines_added_while_the_request_began`). An apply that
   read the cart before a concurrent line change discounted the new subtotal (read
   under the lock) but answered the old `items_number`. It now answers every line field
   as locked.

The double charge of a lost answer (the provider charges, the connection drops before
its answer) is what the random fault mode's `charge_then_reset` and
`charge_then_empty_reply` would hit at once with the old rule, and `reset_then_charge`
(the charge is made after the lookup that follows the reset) with the rule that took an
empty ledger for "nothing charged"; the integration test
`payments/tests/test_pay_integration.py::TestLostAnswers` reproduces both directly.

"""


def write_doc(summary: str, violations: list[tuple[str, str]], command: str) -> None:
    parts = [
        "# Soak test",
        "",
        METHOD,
        FOUND,
        "## Recorded run",
        "",
        f"`{command}`",
        "",
        summary,
        "",
    ]
    if violations:
        parts += ["Violations:", "", "```"]
        parts += [f"[{check}] {detail}" for check, detail in violations]
        parts += ["```", ""]
    DOC.write_text("\n".join(parts))


# --- Main ---------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Mixed load with provider faults against the API on PostgreSQL."
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/",
        help="PostgreSQL server; a database soak_<pid> is created on it and dropped",
    )
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    parser.add_argument("--record", action="store_true", help="write the summary to docs/soak.md")
    parser.add_argument("--log-dir", type=Path, default=None, help="server logs (default: temp)")
    parser.add_argument(
        "--no-outages",
        action="store_true",
        help="single faults only: no outage windows (see OUTAGES)",
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    if args.duration <= 0 or args.clients < 1:
        parser.error("--duration must be > 0 and --clients >= 1")
    return args


def on_signal(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    name = f"soak_{os.getpid()}"
    db_url = database_url(args.database_url, name)
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    servers: list[Server] = []
    created = False
    shop = WebhookReceiver(SHOP_SECRET, answers=[500] * SHOP_FAILURES).__enter__()
    print(f"soak: seed {args.seed}, database {name}, logs in {log_dir}", flush=True)
    try:
        run_tool([sys.executable, "-m", "soak.db", "create", args.database_url, name], base_env)
        created = True
        provider_port, api_port = free_port(), free_port()
        env = {
            **base_env,
            "ENV": "DEV",
            "DEBUG": "false",
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": db_url,
            "FAKE_PAYMENT_API": f"127.0.0.1:{provider_port}",
            "PAYMENT_API_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            "PAYMENT_API_READ_TIMEOUT": str(READ_TIMEOUT),
            "PAYMENT_API_MAX_RETRIES": str(MAX_RETRIES),
            "PAYMENT_API_RETRY_BACKOFF": str(RETRY_BACKOFF),
            "PAYMENT_ATTEMPT_STALE_SECONDS": str(STALE_SECONDS),
            # Every client is 127.0.0.1 here, and one cart sees many requests on purpose:
            # the rate limits would answer 429 to what the soak is about.
            **{f"RATELIMIT_{name}": "off" for name in RATE_LIMITS_OFF},
            "SHOP_WEBHOOK_URL": shop.url,
            "SHOP_WEBHOOK_SECRET": SHOP_SECRET,
            "EVENTS_RETRY_FIRST_SECONDS": "0.5",
            "EVENTS_DELIVERY_LEASE_SECONDS": "10",
            "EVENTS_SWEEP_SECONDS": "2",
        }
        run_tool([sys.executable, "manage.py", "migrate", "--noinput"], env)
        servers.append(
            Server(
                "provider",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--workers=1",
                    f"--threads={PROVIDER_THREADS}",
                    f"--bind=127.0.0.1:{provider_port}",
                    "--access-logfile=-",
                    "--no-control-socket",
                    "fake_payment_server:app",
                ],
                {
                    **env,
                    "FAKE_PAYMENT_CARD_LIMIT": PROVIDER_LIMIT,
                    "FAKE_PAYMENT_WEBHOOK_URL": (
                        f"http://127.0.0.1:{api_port}/api/webhooks/payment-provider/"
                    ),
                    "FAKE_PAYMENT_WEBHOOK_RETRY_SECONDS": "0.5",
                },
                log_dir,
            )
        )
        api_env = {
            **env,
            "GUNICORN_WORKERS": str(API_WORKERS),
            "GUNICORN_THREADS": str(API_THREADS),
            "GUNICORN_BIND": f"127.0.0.1:{api_port}",
        }
        api_args = [sys.executable, "-m", "gunicorn", "--config", "python:CoreRoot.gunicorn"]
        api_args += ["--no-control-socket", "CoreRoot.wsgi"]
        servers.append(Server("api", api_args, api_env, log_dir))
        worker_args = [sys.executable, "manage.py", "run_worker", "--interval", "0.2"]
        servers.append(Server("worker", worker_args, env, log_dir))
        provider_url, api_url = f"http://127.0.0.1:{provider_port}", f"http://127.0.0.1:{api_port}"
        servers[0].wait_until_answers(f"{provider_url}/inspect")
        servers[1].wait_until_answers(f"{api_url}/health/ready/")
        return soak(args, api_url, provider_url, env, servers[1], servers[2], shop)
    except Interrupted as exc:
        print(f"soak: stopped by {exc}", file=sys.stderr)
        return 130
    except (SetupError, subprocess.TimeoutExpired, requests.RequestException) as exc:
        print(f"soak: could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # let the clean-up finish
        for server in reversed(servers):
            server.stop()
        shop.__exit__(None, None, None)
        if created:
            try:
                run_tool(
                    [sys.executable, "-m", "soak.db", "drop", args.database_url, name], base_env
                )
            except (SetupError, subprocess.TimeoutExpired) as exc:
                print(f"soak: could not drop {name}: {exc}", file=sys.stderr)
        print(f"soak: servers stopped, database {name} dropped; logs in {log_dir}", flush=True)


def soak(
    args,
    api_url: str,
    provider_url: str,
    env: dict,
    api: Server,
    worker: Server,
    shop: WebhookReceiver,
) -> int:
    state = Soak(args, api_url, provider_url)
    # Warm up every worker thread (URL conf, database connection) before the clock runs.
    run_together(
        [lambda: state.session().get(f"{api_url}/health/ready/", timeout=30)]
        * (API_WORKERS * API_THREADS * 2)
    )
    for code in CODES:
        response = state.session().post(f"{api_url}/api/discount/", json=code.body(), timeout=30)
        if response.status_code != 201:
            raise SetupError(f"creating {code.code}: {response.status_code} {response.text}")
    for body in (CAMPAIGN, GENERATED):
        response = state.session().post(f"{api_url}/api/discount/", json=body, timeout=30)
        if response.status_code != 201:
            raise SetupError(f"creating {body['code']}: {response.status_code} {response.text}")
    generated_id = response.json()["id"]
    response = state.session().post(
        f"{api_url}/api/discount/{generated_id}/codes/",
        json={"count": GENERATED_COUNT, "prefix": "SOAK-"},
        timeout=30,
    )
    if response.status_code != 201:
        raise SetupError(f"generating codes: {response.status_code} {response.text}")
    state.generated = list(response.json()["codes"])

    state.deadline = time.monotonic() + args.duration
    started = time.monotonic()
    threads: list[threading.Thread] = [FaultInjector(state, args.seed, not args.no_outages)]
    threads += [Client(state, n, args.seed) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() < state.deadline:
            time.sleep(0.2)
    finally:
        state.stop.set()
    for thread in threads:
        thread.join(
            timeout=max(0.1, started + args.duration + 2 * CLIENT_TIMEOUT - time.monotonic())
        )
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        state.violate("soak_stuck", f"threads still running after the load: {stuck}")
    load_seconds = time.monotonic() - started
    print(f"soak: load done: {len(state.records)} requests in {load_seconds:.1f} s", flush=True)

    faults_left = provider_get(state, "/inspect")["faults"]
    state.session().delete(f"{provider_url}/control/faults", timeout=30).raise_for_status()
    before = db_dump(env)
    open_before = [p["status"] for p in before["payments"] if p["status"] in OPEN_ATTEMPT]
    open_before += [
        f"refund {r['status']}" for r in before["refunds"] if r["status"] in OPEN_ATTEMPT
    ]
    wait = STALE_SECONDS + MAX_FAULT_DELAY_MS / 1000 + 1
    print(f"soak: {len(open_before)} attempts open; reconcile in {wait:.0f} s", flush=True)
    time.sleep(wait)
    reconcile = run_tool(
        [sys.executable, "manage.py", "reconcile_payments", "--older-than", "0"], env
    )
    reconciled = (reconcile.stdout + reconcile.stderr).strip().replace("\n", " ")
    print(f"soak: {reconciled}", flush=True)

    events_wait = wait_for_events(env, shop)
    print(f"soak: the shop's events settled in {events_wait:.1f} s", flush=True)

    api_carts = list_all_carts(state)
    db = db_dump(env)
    ledger = provider_get(state, "/payments")["data"]
    provider_refunds = provider_get(state, "/refunds")["data"]
    journal = provider_get(state, "/control/journal")["data"]
    state.journal = journal
    log_problems, log_levels = scan_log(api.err_path)
    for line in log_problems:
        state.violate("api_log", line)
    worker_problems = scan_log(worker.err_path)[0] + scan_log(worker.out_path)[0]
    for line in worker_problems:
        state.violate("worker_log", line)
    events = check_events(state, db, shop)

    check_lost_updates(state, db)
    campaigns = check_campaigns(state, db)
    books = check_books(state, api_carts, db, ledger, provider_refunds)
    faults = attribute_faults(state, journal, ledger)
    facts = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "load_seconds": load_seconds,
        "books": books,
        "campaigns": campaigns,
        "faults": faults,
        "faults_left": faults_left or "none",
        "open_before": open_before,
        "reconcile": reconciled,
        "log_levels": log_levels,
        "log_problems": log_problems,
        "events": events,
        "events_wait": events_wait,
    }
    if git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown"):
        facts["commit"] += " (with uncommitted changes)"
    summary = report(state, facts)
    print("\n" + summary + "\n")
    for check, detail in state.violations:
        print(f"VIOLATION [{check}] {detail}")
    if args.record:
        command = "python soak/run.py " + " ".join(
            f"--{name} {value}"
            for name, value in (
                ("duration", f"{args.duration:g}"),
                ("clients", args.clients),
                ("seed", args.seed),
            )
        )
        if args.no_outages:
            command += " --no-outages"
        write_doc(summary, state.violations, command + " --record")
        print(f"soak: wrote {DOC.relative_to(ROOT)}")
    print("soak: PASS" if not state.violations else f"soak: FAIL ({len(state.violations)})")
    return 1 if state.violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
