"""CPU per request of each benchmark scenario, served in this process: a quick look at
what a change does to an endpoint's own cost, in seconds instead of `make bench`'s
quarter of an hour, and much less moved by other work on the machine (CPU time, not
requests per second).

    python bench/inprocess.py                                  # SQLite, every scenario
    python bench/inprocess.py --db postgres --only get_cart,pay
    python bench/inprocess.py --only apply_discount --profile  # and cProfile's top functions
    python bench/inprocess.py --only pay --calls   # and Python function calls per request
    python bench/inprocess.py --only apply_discount --layers  # and time by layer of the stack

Each request goes through Django's `WSGIHandler` as gunicorn calls it (middleware, URL
resolution, DRF, the database), with `bench.settings`, `ENV=DEV`, `DEBUG=false` and
`LOG_LEVEL=WARNING`, as `bench/run.py` runs the API; gunicorn's own work, the network and
wrk are left out. A scenario is timed with `time.process_time()` over `--requests`
requests after `--warmup` of them, in `--rounds` rounds (the median round is shown).
Pay calls the fake provider, started here under gunicorn on a free loopback port; its
CPU is not counted. On PostgreSQL the server's CPU is not counted either: see the
"+ PG" column of `make bench` for it.

`--layers` adds where each scenario's time goes, by layer of the stack (Django's request
handling, DRF, the ORM, the database driver, ours…; `bench/layers.py`), beside its
limit view and the bare endpoint: one more round profiled, the profiler's own overhead
taken off, each layer's share applied to the scenario's measured wall time (in process
its CPU, and on PostgreSQL the server's answers waited for).

`--calls` adds the Python function calls per request, counted by cProfile over one more
round: a count the machine's speed does not move, for comparing two versions of the code
on a machine whose speed drifts (a shared VM), where CPU milliseconds measured minutes
apart may differ by a quarter for the same code.

The numbers compare changes and scenarios with each other (the `× bare` column is the
bare endpoint's CPU divided by the scenario's, the in-process analogue of the table's
"ratio by CPU"); the recorded results are `make bench`'s (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SCENARIOS = (
    "bare",
    "get_cart",
    "list_carts",
    "create_cart",
    "create_discount",
    "apply_discount",
    "pay",
)
LIMITS = {
    "get_cart": "limit_get_cart",
    "list_carts": "limit_list_carts",
    "create_cart": "limit_create_cart",
    "create_discount": "limit_create_discount",
    "apply_discount": "limit_apply_discount",
    "pay": "limit_pay",
}
LIST_ROWS = 10_000
JSON = "application/json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Bench:
    def __init__(self, opts: argparse.Namespace, work: Path) -> None:
        self.opts = opts
        self.work = work
        self.counter = itertools.count()
        self.layers: dict[str, dict[str, float]] = {}  # --layers: µs by layer
        self.provider: subprocess.Popen | None = None

    # Set-up: environment, database, provider, Django.

    def setup(self) -> None:
        from bench import seed

        if self.opts.db == "sqlite":
            url = f"sqlite:///{self.work / 'inprocess.sqlite3'}"
        else:
            url = f"{self.opts.postgres_url.rstrip('/')}/bench_inprocess_{os.getpid()}"
            seed.create_db(url)
            self.pg_url = url
        port = free_port()
        os.environ.update(
            DJANGO_SETTINGS_MODULE="bench.settings",
            ENV="DEV",
            DEBUG="false",
            LOG_LEVEL="WARNING",
            DATABASE_URL=url,
            FAKE_PAYMENT_API=f"127.0.0.1:{port}",
        )
        for name in list(os.environ):
            if name.startswith(("PAYMENT_API_", "RATELIMIT_", "REDIS_URL")):
                del os.environ[name]
        from bench.run import BENCH_RATE, RATE_LIMIT_NAMES

        os.environ.update({f"RATELIMIT_{name}": BENCH_RATE for name in RATE_LIMIT_NAMES})
        self.provider = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "--no-control-socket",
                "--log-level=warning",
                "--workers=1",
                "--threads=8",
                f"--bind=127.0.0.1:{port}",
                "fake_payment_server:app",
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from django.core.handlers.wsgi import WSGIHandler

        self.handler = WSGIHandler()
        self.code = f"INPROC{os.getpid()}"
        seed.cmd_discount(self.code)
        self.carts = self._carts(100)
        self._wait_for_provider(port)

    def teardown(self) -> None:
        if self.provider is not None:
            os.killpg(self.provider.pid, signal.SIGTERM)
            self.provider.wait(timeout=10)
        if self.opts.db == "postgres":
            from django.db import connections

            connections.close_all()
            from bench import seed

            seed.drop_db(self.pg_url)

    @staticmethod
    def _wait_for_provider(port: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the fake provider did not start")

    def _carts(self, count: int) -> list[str]:
        from bench import seed

        path = self.work / f"carts-{next(self.counter)}"
        seed.cmd_carts(count, str(path))
        return path.read_text().split()

    # One request, as gunicorn hands it to Django.

    def call(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_ACCEPT": JSON,
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        if body:
            environ.update(CONTENT_TYPE=JSON, CONTENT_LENGTH=str(len(body)))
        for name, value in (headers or {}).items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        status = []
        chunks = self.handler(environ, lambda s, h, exc_info=None: status.append(s))
        content = b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
        if not status[0].startswith("2"):
            raise RuntimeError(f"{method} {path}: {status[0]} {content[:300]!r}")
        return content

    # The scenarios: each returns a function serving one request, given what it needs.

    def requests_for(self, name: str, count: int):
        limit = name.startswith("limit_")
        base = name.removeprefix("limit_")
        prefix = "/bench/limit" if limit else ""
        if base == "bare":
            return lambda: self.call("GET", "/bench/bare/")
        if base == "get_cart":
            ids = itertools.cycle(self.carts)
            return lambda: self.call("GET", f"{prefix}/api/cart/{next(ids)}/")
        if base == "list_carts":
            from bench import seed

            rows = seed.cmd_count()["rows"]
            if rows < LIST_ROWS:
                self._carts(LIST_ROWS - rows)
            return lambda: self.call("GET", f"{prefix}/api/cart/")
        if base == "create_cart":
            body = b'{"total": 20.00, "currency": "USD", "items_number": 3}'
            return lambda: self.call("POST", f"{prefix}/api/cart/", body)
        if base == "create_discount":

            def create_discount():
                code = f"C{uuid.uuid4().hex[:20]}"
                body = (
                    f'{{"code": "{code}", "kind": "amount", "value": 5, '
                    '"description": "benchmark"}'
                ).encode()
                return self.call("POST", f"{prefix}/api/discount/", body)

            return create_discount
        if base == "apply_discount":
            fresh = iter(self._carts(count))
            body = f'{{"code": "{self.code}"}}'.encode()
            return lambda: self.call(
                "POST", f"{prefix}/api/cart/{next(fresh)}/apply_discount/", body
            )
        if base == "pay":
            fresh = iter(self._carts(count))
            body = b'{"payment_method": "pm_card_visa"}'
            return lambda: self.call(
                "POST",
                f"{prefix}/api/cart/{next(fresh)}/pay/",
                body,
                {"Idempotency-Key": uuid.uuid4().hex},
            )
        raise ValueError(name)

    def measure(self, name: str) -> tuple[float, float, float | None, str]:
        opts = self.opts
        counted = opts.requests if opts.calls else 0
        layered = opts.requests if opts.layers else 0
        serve = self.requests_for(
            name, opts.warmup + opts.requests * opts.rounds + counted + layered
        )
        for _ in range(opts.warmup):
            serve()
        rounds = []
        profile = cProfile.Profile() if opts.profile and name in opts.profiled else None
        for _ in range(opts.rounds):
            if profile:
                profile.enable()
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            for _ in range(opts.requests):
                serve()
            cpu = (time.process_time() - start_cpu) / opts.requests * 1000
            wall = (time.perf_counter() - start_wall) / opts.requests * 1000
            if profile:
                profile.disable()
            rounds.append((cpu, wall))
        cpu = statistics.median(r[0] for r in rounds)
        wall = statistics.median(r[1] for r in rounds)
        if opts.layers:
            from bench import layers

            profiled = cProfile.Profile()
            start_cpu = time.process_time()
            profiled.enable()
            for _ in range(opts.requests):
                serve()
            profiled.disable()
            # The profiler's cost per call: this round's CPU above the same requests'
            # unprofiled CPU (CPU time: a busy machine does not stretch it as it does
            # the wall time), shared by the calls it counted.
            stats = pstats.Stats(profiled)
            extra = time.process_time() - start_cpu - cpu * opts.requests / 1000
            per_call = max(0.0, extra) / max(1, layers.calls(stats))
            shares = layers.shares(stats, per_call=per_call)
            self.layers[name] = {layer: share * wall * 1000 for layer, share in shares.items()}
        calls = None
        if counted:
            counter = cProfile.Profile()
            counter.enable()
            for _ in range(counted):
                serve()
            counter.disable()
            calls = pstats.Stats(counter).total_calls / counted
        report = ""
        if profile:
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            stats.sort_stats(opts.sort).print_stats(opts.top)
            report = out.getvalue()
        return cpu, wall, calls, report


def layers_table(spent: dict[str, dict[str, float]], names: list[str]) -> str:
    """µs per request by layer (rows) and scenario (columns)."""
    from bench import layers

    columns = [name for name in names if name in spent]
    width = max(len(name) for name in columns) + 1
    first = max(len(layer) for layer in layers.ORDER) + 1
    lines = [
        "µs per request, by layer (bench/layers.py: a profile's shares, less its own "
        "overhead, of each scenario's measured wall time: its CPU, and on PostgreSQL "
        "the server's answers waited for)",
        f"{'layer':<{first}}" + "".join(f"{name:>{width}}" for name in columns),
    ]
    for layer in layers.ORDER:
        if any(spent[name].get(layer, 0) >= 0.5 for name in columns):
            values = "".join(f"{spent[name].get(layer, 0):>{width}.0f}" for name in columns)
            lines.append(f"{layer:<{first}}{values}")
    totals = "".join(f"{sum(spent[name].values()):>{width}.0f}" for name in columns)
    lines.append(f"{'total':<{first}}{totals}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/")
    parser.add_argument("--only", default="", help="scenarios, comma-separated (bare always)")
    parser.add_argument("--no-limits", action="store_true", help="skip the limit views")
    parser.add_argument("--requests", type=int, default=300, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="cProfile the scenarios")
    parser.add_argument(
        "--calls", action="store_true", help="also count Python function calls per request"
    )
    parser.add_argument(
        "--layers", action="store_true", help="also show the time by layer of the stack"
    )
    parser.add_argument("--sort", default="cumulative", help="pstats sort key")
    parser.add_argument("--top", type=int, default=40, help="functions shown per profile")
    opts = parser.parse_args(argv)
    wanted = [s for s in opts.only.split(",") if s] or list(SCENARIOS)
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    opts.profiled = set(wanted) - {"bare"}
    names = ["bare", *[s for s in SCENARIOS if s in wanted and s != "bare"]]
    if not opts.no_limits:
        names += [LIMITS[s] for s in names if s in LIMITS]
    opts.names = names
    return opts


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as work:
        bench = Bench(opts, Path(work))
        try:
            bench.setup()
            from django.db import connection

            print(f"{connection.vendor}, {opts.requests} requests × {opts.rounds} rounds")
            calls_header = f" {'calls':>7}" if opts.calls else ""
            print(f"{'scenario':<24} {'CPU ms':>8} {'wall ms':>8} {'× bare':>7}{calls_header}")
            bare = None
            reports = []
            for name in opts.names:
                cpu, wall, calls, report = bench.measure(name)
                bare = bare or cpu
                shown = f" {calls:7.0f}" if calls is not None else ""
                print(f"{name:<24} {cpu:8.2f} {wall:8.2f} {bare / cpu:7.2f}{shown}", flush=True)
                if report:
                    reports.append(f"\n=== {name}\n{report}")
            print("".join(reports))
            if opts.layers:
                print(layers_table(bench.layers, opts.names))
        finally:
            bench.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
