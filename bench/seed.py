"""Seeding and checking for bench/run.py, through the Django ORM of the app itself.

    python bench/seed.py create-db postgres://postgres@127.0.0.1:5432/bench_123
    python bench/seed.py drop-db postgres://postgres@127.0.0.1:5432/bench_123
    python bench/seed.py serve      # JSON commands on stdin, one JSON answer per line

`serve` sets Django up once (DJANGO_SETTINGS_MODULE and DATABASE_URL from the
environment, as the API's gunicorn gets them) and then answers one JSON line per command
line, so a whole benchmark run pays for one Django start-up:

    {"cmd": "info"}                                     database vendor and version
    {"cmd": "discount", "code": "BENCH", "value": "5"}  a code without usage limit
    {"cmd": "carts", "count": 900, "file": "/tmp/x"}    bulk-create pending 20.00 USD carts
                                                        (ids appended to `file` if given)
    {"cmd": "count"}                                    rows in the cart table
    {"cmd": "verify_apply", "code": ..., "pool_file": ..., "ok_file": ..., "max_unseen": 8}
    {"cmd": "verify_pay", "runs": [[pool_file, ok_file], ...], "provider_url": URL,
     "max_unseen": 8}

The verify commands read the database after a load run and say whether any update was
lost (see `verify_apply` and `verify_pay`). Answers are `{"ok": true, ...}` or
`{"ok": false, "error": "..."}`; Django's own logging goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
CART_TOTAL = Decimal("20.00")
CART_CURRENCY = "USD"
BATCH = 2000
CHUNK = 500  # ids per IN (...) query: well under SQLite's variable limit


# --- PostgreSQL database per run -------------------------------------------------------


def _admin_connection(url: str):
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    return psycopg.connect(admin, autocommit=True), parts.path.lstrip("/")


def create_db(url: str) -> None:
    drop_db(url)
    from psycopg import sql

    conn, name = _admin_connection(url)
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_db(url: str) -> None:
    from psycopg import sql

    conn, name = _admin_connection(url)
    with conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


# --- Commands of `serve` ---------------------------------------------------------------


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


def _read_ids(path: str | None) -> list[str]:
    if not path or not Path(path).exists():
        return []
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def _chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def cmd_info() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            version = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            cursor.execute("SELECT sqlite_version()")
            version = f"SQLite {cursor.fetchone()[0]}"
    return {"vendor": connection.vendor, "version": version}


def cmd_discount(code: str, value: str = "5", usage_limit: int | None = None) -> dict:
    from discount.services import discount_create

    discount = discount_create(
        code=code, value=Decimal(value), description="benchmark", usage_limit=usage_limit
    )
    return {"id": discount.pk, "code": discount.code}


def cmd_carts(count: int, file: str | None = None) -> dict:
    from django.db import transaction

    from cart.models import Cart

    carts = [
        Cart(subtotal=CART_TOTAL, total=CART_TOTAL, currency=CART_CURRENCY, items_number=3)
        for _ in range(count)
    ]
    with transaction.atomic():
        Cart.objects.bulk_create(carts, batch_size=BATCH)
    if file:
        with open(file, "a") as out:
            out.writelines(f"{cart.pk}\n" for cart in carts)
    return {"created": count, "rows": Cart.objects.count()}


def cmd_count() -> dict:
    from cart.models import Cart

    return {"rows": Cart.objects.count()}


def _settled(read, timeout: float = 20.0):
    """`read()` once two reads 0.3 s apart agree: the API has finished the requests still
    queued when wrk stopped. After `timeout` the last read is returned as it is (the
    checks then fail and say so)."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = read()
        if current == last:
            break
        last = current
    return last


def cmd_verify_apply(code: str, pool_file: str, ok_file: str, max_unseen: int) -> dict:
    """No lost update after an apply-discount run with one code on a pool of fresh carts.

    - every cart that got a 200 holds the code, with total == subtotal - amount_discounted
      and the code's amount off;
    - the uses counted for the code equal the number of carts holding it (no lost
      increment): its reservations not released (the app reserves a use when a code is
      applied) plus its `times_used` (what the limit view, bench/limits.py, counts);
    - only carts of the pool hold it, and at most `max_unseen` more than wrk saw answered:
      requests still in flight when wrk stopped were processed but not counted.
    """
    from django.db.models import F

    from cart.models import Cart
    from discount.models import Discount, ReservationStatus

    def uses(discount: Discount) -> int:
        live = discount.reservations.exclude(status=ReservationStatus.RELEASED).count()
        return discount.times_used + live

    _settled(
        lambda: (
            uses(Discount.objects.get(code=code)),
            Cart.objects.filter(discount__code=code).count(),
        )
    )
    discount = Discount.objects.get(code=code)
    pool = set(_read_ids(pool_file))
    ok = _read_ids(ok_file)
    holding = Cart.objects.filter(discount=discount)
    holding_ids = {str(pk) for pk in holding.values_list("pk", flat=True)}
    expected_off = discount.amount_off(CART_TOTAL, CART_CURRENCY)
    ok_missing = 0
    for chunk in _chunks(ok):
        ok_missing += len(chunk) - Cart.objects.filter(pk__in=chunk, discount=discount).count()
    report = {
        "code": code,
        "answered_200": len(ok),
        "duplicate_200": len(ok) - len(set(ok)),
        "carts_holding": len(holding_ids),
        "uses_counted": uses(discount),
        "ok_without_discount": ok_missing,
        "wrong_total": holding.exclude(total=F("subtotal") - F("amount_discounted")).count(),
        "wrong_amount": holding.exclude(amount_discounted=expected_off).count(),
        "outside_pool": len(holding_ids - pool),
        "unseen_in_flight": len(holding_ids) - len(set(ok)),
    }
    report["passed"] = (
        report["duplicate_200"] == 0
        and report["ok_without_discount"] == 0
        and report["wrong_total"] == 0
        and report["wrong_amount"] == 0
        and report["outside_pool"] == 0
        and report["uses_counted"] == report["carts_holding"]
        and 0 <= report["unseen_in_flight"] <= max_unseen
    )
    return report


def _provider_charges(provider_url: str) -> int:
    import requests

    session = requests.Session()
    session.trust_env = False  # loopback: no proxy
    return session.get(f"{provider_url}/inspect", timeout=5).json()["charges"]


def cmd_verify_pay(runs: list[list[str]], provider_url: str, max_unseen: int) -> dict:
    """Exactly once after pay runs (pairs of pool file and file of carts answered 200):

    - every cart answered 200 is `success` with exactly one successful payment;
    - per run, at most `max_unseen` more carts were charged than wrk saw answered;
    - no attempt is left open, and the provider's ledger holds exactly as many charges as
      the database has successful payments (the provider was reset before the runs).
    """
    from django.db.models import Count

    from cart.models import Cart
    from payments.models import OPEN_ATTEMPT_STATUSES, Payment, PaymentAttemptStatus

    success = PaymentAttemptStatus.SUCCESS
    # Requests still queued when wrk stopped go on charging and settling: wait for both
    # the database and the provider's ledger to stop changing.
    _, provider_charges = _settled(
        lambda: (
            list(Payment.objects.values_list("status").annotate(n=Count("pk"))),
            _provider_charges(provider_url),
        )
    )
    report: dict = {"answered_200": 0, "not_paid": 0, "charged_twice": 0, "unseen_in_flight": 0}
    unseen_ok = True
    for pool_file, ok_file in runs:
        ok = set(_read_ids(ok_file))
        pool = _read_ids(pool_file)
        report["answered_200"] += len(ok)
        for chunk in _chunks(sorted(ok)):
            report["not_paid"] += (
                len(chunk) - Cart.objects.filter(pk__in=chunk, payment_status="success").count()
            )
        paid = 0
        for chunk in _chunks(pool):
            paid_here = Payment.objects.filter(cart_id__in=chunk, status=success)
            carts_paid = paid_here.values("cart_id").distinct().count()
            paid += carts_paid
            report["charged_twice"] += paid_here.count() - carts_paid
        unseen = paid - len(ok)
        report["unseen_in_flight"] += unseen
        unseen_ok = unseen_ok and 0 <= unseen <= max_unseen
    report["open_attempts"] = Payment.objects.filter(status__in=OPEN_ATTEMPT_STATUSES).count()
    report["other_attempts"] = Payment.objects.exclude(status=success).count()
    report["db_successful_payments"] = Payment.objects.filter(status=success).count()
    report["provider_charges"] = provider_charges
    report["passed"] = (
        report["not_paid"] == 0
        and report["charged_twice"] == 0
        and report["open_attempts"] == 0
        and unseen_ok
        and provider_charges == report["db_successful_payments"]
    )
    return report


COMMANDS = {
    "info": cmd_info,
    "discount": cmd_discount,
    "carts": cmd_carts,
    "count": cmd_count,
    "verify_apply": cmd_verify_apply,
    "verify_pay": cmd_verify_pay,
}


def serve() -> None:
    _setup_django()
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            args = json.loads(line)
            answer = {"ok": True, **COMMANDS[args.pop("cmd")](**args)}
        except Exception as exc:  # report it to run.py, which fails the run
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve()
    elif len(argv) == 2 and argv[0] == "create-db":
        create_db(argv[1])
    elif len(argv) == 2 and argv[0] == "drop-db":
        drop_db(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
