"""Generated single-use codes: how long making 100,000 takes, and what applying one costs
once they exist, on SQLite and PostgreSQL.

    python bench/codes.py --db both                  # prints the table
    python bench/codes.py --db both --output docs/benchmarks.md   # and records it

A fresh database per run (SQLite in a temporary file; PostgreSQL as a new database
`bench_codes_<pid>` on --postgres-url, dropped at the end), migrated. Generation is timed
through `discount_generate_codes` (the one home the API and the admin use); applying is
timed through the API view stack in process (`POST /api/cart/{id}/apply_discount/` with a
generated code, each on its own fresh cart), rate limits off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Generated codes"


def measure(database_url: str, count: int, applies: int) -> dict:
    """Run in a child process (one Django per database)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "CoreRoot.settings",
        "ENV": "DEV",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "testserver",
        "RATELIMIT_APPLY_DISCOUNT_PER_IP": "off",
        "RATELIMIT_APPLY_DISCOUNT_PER_CART": "off",
    }
    code = f"import bench.codes as b; b._child({count}, {applies})"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode:
        raise SystemExit(f"measuring on {database_url} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(count: int, applies: int) -> None:
    import django

    django.setup()
    from decimal import Decimal

    from django.core.management import call_command
    from rest_framework.test import APIClient

    from cart.models import Cart
    from discount.services import discount_create, discount_generate_codes

    call_command("migrate", verbosity=0)
    discount = discount_create(code="BENCH", value=Decimal("1"))
    started = time.perf_counter()
    codes = discount_generate_codes(discount=discount, count=count, prefix="BENCH-")
    generate = time.perf_counter() - started
    client = APIClient()
    carts = [
        Cart.objects.create(
            subtotal=Decimal(20), total=Decimal(20), currency="USD", items_number=1
        )
        for _ in range(applies)
    ]
    timings = []
    for cart, code in zip(carts, codes[:: max(1, len(codes) // applies)], strict=False):
        started = time.perf_counter()
        response = client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code.code})
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content
    timings.sort()
    print(
        json.dumps(
            {
                "count": count,
                "generate_s": round(generate, 2),
                "applies": len(timings),
                "apply_median_ms": round(statistics.median(timings) * 1000, 1),
                "apply_p95_ms": round(timings[int(len(timings) * 0.95) - 1] * 1000, 1),
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--applies", type=int, default=200)
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = {}
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            results["SQLite"] = measure(f"sqlite:///{tmp}/codes.sqlite3", args.count, args.applies)
    if args.db in ("postgres", "both"):
        import psycopg

        name = f"bench_codes_{os.getpid()}"
        admin = args.postgres_url.rstrip("/") + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = args.postgres_url.rstrip("/") + f"/{name}"
            results["PostgreSQL"] = measure(url, args.count, args.applies)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    table = [
        SECTION,
        "",
        "`python bench/codes.py --db both`: `discount_generate_codes` making the codes in one "
        "transaction, then `POST /api/cart/{id}/apply_discount/` with generated codes (in "
        "process, each on a fresh cart) while they exist. Measured on the 2-CPU machine "
        "shared with other work, under `flock /tmp/bench.lock`.",
        "",
        "| database | codes | generated in | applies | apply median | apply p95 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        table.append(
            f"| {name} | {r['count']:,} | {r['generate_s']} s | {r['applies']} | "
            f"{r['apply_median_ms']} ms | {r['apply_p95_ms']} ms |"
        )
    text = "\n".join(table) + "\n"
    print(text)
    if args.output:
        current = args.output.read_text() if args.output.exists() else ""
        if SECTION in current:
            before, rest = current.split(SECTION, 1)
            after = rest.split("\n## ", 1)
            tail = f"\n## {after[1]}" if len(after) > 1 else ""
            current = before + text + tail
        else:
            current = current.rstrip("\n") + "\n\n" + text
        args.output.write_text(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
