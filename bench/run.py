"""Load benchmark of the API under gunicorn, with wrk, on SQLite and PostgreSQL.

    python bench/run.py --db both                       # the whole run, 13-20 minutes
    python bench/run.py --db sqlite --duration 5        # a quicker look
    python bench/run.py --db both --output docs/benchmarks.md   # record the results
    python bench/run.py --db postgres --profile list_10000,pay  # py-spy the workers

One command does everything, loopback only, every step bounded in time:

1. A fresh database per run: SQLite in a temporary file; PostgreSQL as a new database
   `bench_<pid>` on --postgres-url (default postgres://postgres@127.0.0.1:5432/, created
   and dropped by bench/seed.py). `manage.py migrate` runs on it.
2. The fake payment provider under gunicorn (1 worker, 8 threads: it keeps its ledger in
   memory) and the API under gunicorn in two server configurations (--configs), both
   running at once, each on a free 127.0.0.1 port, with
   DJANGO_SETTINGS_MODULE=bench.settings (the app's settings plus `/bench/bare/` and the
   limit views of bench/limits.py), ENV=DEV, DEBUG=false and the rate limits at a rate
   wrk never reaches (still counted):
       sync   exactly 2 sync workers (`--workers 2 --worker-class sync`)
       prod   `--config python:CoreRoot.gunicorn` as the image runs it: 2 workers x 4
              threads, its metrics directory, its max_requests (kept: a restart's cost
              is what production pays per request too; restarts during a measured run
              are counted and listed), PAYMENT_MAX_IN_FLIGHT=4 so that 8 connections
              of pays are not shed as 503 payment_provider_busy by design
   Every scenario is measured on one configuration and right after on the other.
3. Data is seeded through the Django ORM by bench/seed.py (one process for the whole
   run, bulk_create): carts for the list scenarios (the cart table holds exactly 100,
   1,000, then 10,000 rows when they are measured), pools of fresh carts for
   apply-discount and pay (every request takes its own cart; a pool holds 1.2 x the bare
   endpoint's rate x the run time, an upper bound, and a run that still runs out is
   rejected), and discount codes without usage limit. Ids go to files the Lua scripts
   read; each wrk thread takes its own slice of them.
4. Each scenario is one Lua script of bench/lua/, run by wrk with --threads 2 (at most
   --connections) and --connections 8 (default): a warm-up of --warmup seconds (default
   2) whose numbers are dropped, then --duration seconds (default 6) measured.
   Scenarios, in order:
       bare            GET /bench/bare/: a DRF APIView returning a constant, no database,
                       through the same middleware, authentication, permission and
                       renderer classes: the baseline of every ratio
       get_cart        GET /api/cart/<id>/ over 100 existing carts
       list_100, list_1000, list_10000
                       GET /api/cart/ (first page, newest first) with that many carts
       create_cart     POST /api/cart/
       create_discount POST /api/discount/ with a unique code per request
       apply_discount  POST /api/cart/<id>/apply_discount/, one fresh cart per request,
                       one unlimited code; then the database is checked for lost updates
       provider        POST /request_payment at the fake provider itself, the body our
                       client sends (minor units, currency, cart_id, pm_card_visa, an
                       Idempotency-Key per request): the provider's own rate
       pay             POST /api/cart/<id>/pay/ {"payment_method": "pm_card_visa"} with an
                       Idempotency-Key, one fresh cart per request; then the database and
                       the provider's ledger are checked for exactly-once charges
       limit_*         the same requests (get cart, list at 10,000 rows, create cart,
                       create discount, apply, pay) at /bench/limit/..., plain Django
                       views running the minimal SQL by hand: what the stack allows
5. Every scenario is reported as requests/s, p50 and p99 latency, errors (non-2xx answers
   plus socket errors and timeouts) and its ratio to the bare endpoint of the same run,
   with its target and whether it is met (a scenario with errors never meets it):
       get_cart >= 0.60, create_cart >= 0.30, create_discount >= 0.25,
       apply_discount >= 0.25 and no lost update, list_10000 >= 0.40 and >= 0.9 x
       list_100, pay >= 0.5 x the provider's own rate; and each endpoint's rate over its
       limit row's ("ratio to limit"), and "done?": the target met, or within 1.5x of
       the limit row (issue 13's Done when).
   Each row also says how much CPU our processes spent per request (the API workers,
   the PostgreSQL backends of the run's database, the provider, wrk), the bare
   endpoint's total divided by the scenario's ("ratio by CPU": the ratio a quiet machine
   would show while the CPUs are the bottleneck), and the share of the machine's CPU
   other processes took during the run ("others' CPU", from /proc). The machine is
   shared: a run during which others took more than --max-others % (15), or in the
   production configuration one where a worker held more than one of wrk's connections
   above its share, is repeated up to --retries times (3) and the quietest evenly spread
   run (or the most even) kept, as long as the rest fits in --budget seconds (1200 for
   the whole command); a disturbed bare run is measured once more at the end. After the
   pay runs the ledger of the provider and the database are compared.
   The markdown (one section per database, with the date in UTC, the commit of HEAD and
   whether the tree or bench/ differ from it, CPUs, CPU model, Python, database
   versions) is printed; --output FILE also replaces that database's section of FILE
   (between the markers `<!-- bench:sqlite:start -->` and `<!-- bench:sqlite:end -->`)
   or appends it; --json FILE writes the raw numbers.

Exit status: 0 when every measurement is valid (targets may be missed: they are
benchmark targets, not tests), 1 when a check failed (a lost update, a double charge,
errors, an exhausted pool), 130 on Ctrl-C. Processes started here are stopped on every
exit path (SIGTERM to their process group, SIGKILL after 10 s); the PostgreSQL database
and the temporary directory are removed (--keep keeps the directory: logs, id files).

--only NAME[,NAME] runs only those scenarios (bare always runs; an endpoint brings its
limit row along). --profile NAME[,NAME]
runs `py-spy record --idle` (pip install py-spy) on both API workers during those
scenarios' measured runs and prints where the time went (by layer, inside a few telling
functions, busiest functions); raw stacks and summaries are kept in bench/profiles/.
Profiling slows the workers: such rows are marked. --provider-latency MS makes every
charge at the fake provider take MS milliseconds (a what-if for pay).

Needs: wrk (installed with apt-get if missing: run as root), PostgreSQL reachable at
--postgres-url for --db postgres, the project's venv (run with its python). Standard
library and requests only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
PROFILES = BENCH / "profiles"
PYTHON = sys.executable
WRK_TIMEOUT = "10s"
SETTLE = 0.5  # seconds after each wrk run: requests still queued when it stopped finish
# The bare endpoint measured again at the end: a change beyond this is called out.
DRIFT_WARNING = 0.10
POOL_MARGIN = 1.2  # pool = margin x bare rate x seconds: the bare rate bounds every other
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
DB_LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# settings.RATE_LIMITS, each set to a rate the benchmark never reaches (still counted).
RATE_LIMIT_NAMES = (
    "CART_CREATE_PER_IP",
    "APPLY_DISCOUNT_PER_IP",
    "APPLY_DISCOUNT_PER_CART",
    "PAY_PER_CART",
    "TOKEN_PER_IP",
    "TOKEN_PER_USERNAME",
)
BENCH_RATE = "1000000/s"


# --- Targets ---------------------------------------------------------------------------


@dataclass
class Attempt:
    """What one wrk run of a scenario uses: ids to read, a tag (code, key prefix), where
    to write the ids answered 200."""

    ids: Path | None = None
    tag: str | None = None
    ok_file: Path | None = None


@dataclass
class Result:
    name: str
    label: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    requests: int = 0
    statuses: dict = field(default_factory=dict)
    exhausted: int = 0
    raw: dict = field(default_factory=dict)
    others_cpu: float = 0.0
    cpu_ratio: float | None = None
    parts: list = field(default_factory=list)
    attempts: list = field(default_factory=list)
    kept: Attempt | None = None
    plans: list = field(default_factory=list)
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    limit_ratio: float | None = None  # rate / its limit row's rate (same config)
    done: bool | None = None  # target met, or within LIMIT_FACTOR of the limit row
    done_text: str = ""
    unsound: bool = False  # errors or a failed check: never done
    restarts: int = 0  # workers restarted (max_requests) during the kept measured run
    # prod: wrk's connections each worker held halfway through the kept run
    split: list | None = None


def connections_per_worker(pids: list[int], port: int) -> list[int]:
    """How many established connections to `port` each process of `pids` holds (its
    sockets among /proc/net/tcp's, by inode), in the order of `pids`."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    established.add(inode)
    counts = []
    for pid in pids:
        held = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    held += target.startswith("socket:[") and target[8:-1] in established
        counts.append(held)
    return counts


def split_excess(counts: list[int]) -> int:
    """How many connections the busiest worker holds above its share (4/4: 0, 5/3: 1,
    7/1: 3); 0 when not sampled."""
    if not counts or not sum(counts):
        return 0
    return max(0, max(counts) - math.ceil(sum(counts) / len(counts)))


def split_is_even(counts: list[int]) -> bool:
    """Whether kept-alive connections are spread over the workers about evenly: none holds
    more than one above its share. Each gthread worker is one process, one CPU at most (the
    GIL); which worker accepts a connection is the kernel's choice, and a worker holding
    7 of wrk's 8 connections leaves a CPU idle, whatever the endpoint costs."""
    return split_excess(counts) <= 1


def kept_run(runs: list[tuple[float, dict, Attempt]]) -> tuple[float, dict, Attempt]:
    """The run a row keeps: the quietest of those whose connections were spread evenly;
    when none was, the most evenly spread (then the quietest)."""
    return min(runs, key=lambda run: (max(1, split_excess(run[1].get("split") or [])), run[0]))


def repeated_note(results: dict[str, Result], max_others: float) -> str:
    """The rows measured more than once, each run with what disturbed it: other processes
    above `max_others` % of the CPUs, or (production) wrk's connections split unevenly
    between the workers."""
    rows = []
    for name in SCENARIOS:
        result = results.get(name)
        if result is None or len(result.attempts) < 2:
            continue
        runs = []
        for others, rps, split in result.attempts:
            why = []
            if others > max_others:
                why.append(f"others' CPU {others:.0f}%")
            if split and not split_is_even(split):
                why.append(f"connections {split_text(split)}")
            runs.append(f"{rps:.0f} req/s ({', '.join(why) or 'undisturbed'})")
        rows.append(f"{result.label.split(' `')[0]} " + ", ".join(runs))
    if not rows:
        return ""
    return (
        "Measured again when other processes took more than "
        f"{max_others:g}% of the CPUs or one worker held more than one of wrk's connections "
        "above its share (the run kept is in the table): " + "; ".join(rows) + "."
    )


def split_text(counts: list[int] | None) -> str:
    return "/".join(str(n) for n in sorted(counts, reverse=True)) if counts else "—"


def bare_drift_note(config: str, start_rps: float, end_rps: float, restarts: int = 0) -> str:
    """What the bare endpoint measured at the start and at the end of one configuration's
    runs says about the machine's speed in between (`restarts`: workers restarted by
    `max_requests` during the run at the end, which slow it too)."""
    drift = end_rps / start_rps - 1 if start_rps else 0.0
    text = (
        f"{config}: the bare endpoint served {start_rps:,.1f} requests/s at the start and "
        f"{end_rps:,.1f} at the end ({drift:+.0%})"
    )
    if restarts and abs(drift) > DRIFT_WARNING:
        return text + (
            f": {restarts} worker{'s' if restarts > 1 else ''} restarted by `max_requests` "
            "during the run at the end, so the drift may be the restart's rather than the "
            "machine's."
        )
    if abs(drift) > DRIFT_WARNING:
        return text + (
            ": the machine's speed moved during the run, and so may the ratios of the rows"
            " measured in between."
        )
    return text + "."


def split_note(results: dict[str, Result]) -> str:
    """Which worker held wrk's kept-alive connections in each production row kept."""
    rows = ", ".join(
        f"{name} {split_text(result.split)}" for name, result in results.items() if result.split
    )
    return (
        "prod: wrk's connections held by each worker halfway through each kept run (a run "
        "where one worker held more than one above its share was measured again, as a "
        f"disturbed one, up to --retries times): {rows or 'not sampled'}."
    )


def apply_targets(results: dict[str, Result], checks: dict[str, dict]) -> None:
    """Ratios to the bare endpoint, and each target with whether it is met: `parts` says
    how each part of a target fared."""
    bare = results["bare"].rps
    bare_cpu = total_cpu_ms(results["bare"].raw)
    for result in results.values():
        result.ratio = result.rps / bare if bare else None
        cpu = total_cpu_ms(result.raw)
        result.cpu_ratio = bare_cpu / cpu if cpu else None

    def part(result: Result, ok: bool, text: str, *, check: bool = False) -> None:
        result.parts.append(f"{text} {'✓' if ok else '✗'}")
        result.met = ok if result.met is None else (result.met and ok)
        result.unsound = result.unsound or (check and not ok)

    def ratio_target(name: str, minimum: float) -> Result | None:
        result = results.get(name)
        if result is not None:
            result.target = f"≥ {minimum:.2f} × bare"
            ok = result.ratio is not None and result.ratio >= minimum
            part(result, ok, f"{result.ratio:.2f} {'≥' if ok else '<'} {minimum:.2f}")
        return result

    results["bare"].target = "baseline"
    ratio_target("get_cart", 0.60)
    ratio_target("create_cart", 0.30)
    ratio_target("create_discount", 0.25)
    apply = ratio_target("apply_discount", 0.25)
    if apply is not None:
        apply.target += ", no lost update"
        check = checks.get("apply_discount")
        passed = bool(check and check["passed"])
        part(apply, passed, "no lost update" if passed else "LOST UPDATES", check=True)
    big = ratio_target("list_10000", 0.40)
    small = results.get("list_100")
    if big is not None and small is not None and small.rps:
        big.target += " and ≥ 0.9 × 100 rows"
        versus = big.rps / small.rps
        ok = versus >= 0.9
        part(big, ok, f"{versus:.2f} × the 100-row rate {'≥' if ok else '<'} 0.9")
    if "pay" in results and "provider" in results:
        pay, provider = results["pay"], results["provider"]
        pay.target = "≥ 0.50 × provider"
        provider.target = "reference for pay"
        versus = pay.rps / provider.rps if provider.rps else 0.0
        ok = versus >= 0.5
        part(pay, ok, f"{versus:.2f} × provider {'≥' if ok else '<'} 0.50")
        by_cpu = total_cpu_ms(provider.raw) / max(total_cpu_ms(pay.raw), 1e-9)
        pay.parts.append(f"by CPU {by_cpu:.2f}")
        if "pay" in checks:
            passed = checks["pay"]["passed"]
            part(pay, passed, "exactly once" if passed else "CHARGE CHECK FAILED", check=True)
    for suffix in ("", "_nolimit"):
        quiet = results.get(f"get_cart_prod{suffix}")
        busy = results.get(f"get_cart_slow_pays{suffix}")
        if quiet is None or busy is None:
            continue
        quiet.target = "reference: no pay running"
        busy.target = "≥ 0.80 × no pay running (median of the pairs)"
        load = checks.get(f"slow_pays{suffix}") or {}
        versus = load.get("median_ratio", busy.rps / quiet.rps if quiet.rps else 0.0)
        ok = versus >= 0.8
        part(busy, ok, f"{versus:.2f} × {'≥' if ok else '<'} 0.80")
        if "median_ratio_by_cpu" in load:
            busy.parts.append(f"by CPU {load['median_ratio_by_cpu']:.2f}")
        if load:
            ok = load["max_pay_s"] <= PAY_BOUND_SECONDS
            part(busy, ok, f"slowest pay {load['max_pay_s']:.1f} s ≤ {PAY_BOUND_SECONDS:.1f} s")
    for result in results.values():
        if result.errors or result.exhausted:
            part(result, False, f"{result.errors} errors", check=True)
    apply_limits(results, checks)


def apply_limits(results: dict[str, Result], checks: dict[str, dict]) -> None:
    """Each endpoint's rate against its limit row's (the same request done with the least
    work the stack allows, bench/limits.py), and the Done-when verdict: the target met, or
    the limit at most LIMIT_FACTOR times faster (the remaining cost is the stack's)."""
    for name, limit_name in LIMITS.items():
        result, limit = results.get(name), results.get(limit_name)
        if limit is not None:
            limit.target = "limit: " + SCENARIOS[name].split(" `")[0]
            check = checks.get(limit_name)
            if check is not None and not check["passed"]:
                limit.parts.append("CHECK FAILED ✗")
                limit.unsound = True
        if result is None:
            continue
        if limit is not None and limit.rps and not limit.unsound:
            result.limit_ratio = result.rps / limit.rps
        if result.unsound:
            result.done, result.done_text = False, "errors or a failed check"
        elif result.met:
            result.done, result.done_text = True, "target met"
        elif result.limit_ratio is None:
            result.done, result.done_text = False, "target missed, no limit row"
        else:
            factor = 1 / result.limit_ratio if result.limit_ratio else math.inf
            result.done = factor <= LIMIT_FACTOR
            result.done_text = (
                f"limit {factor:.2f}× faster {'≤' if result.done else '>'} {LIMIT_FACTOR:g}"
            )


# --- Processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Processes:
    """Every long-running child: each in its own session, all stopped on exit."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict, log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            process = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append((name, process))
        return process

    def stop(self, process: subprocess.Popen) -> None:
        """Stop one child (and its process group) started here."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.children = [(n, p) for n, p in self.children if p is not process]

    def stop_all(self) -> None:
        for _, process in reversed(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for _, process in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # The group too: a gunicorn worker must not outlive its master.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.children.clear()


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from the environment
    return session


def wait_until_answers(url: str, process: subprocess.Popen, log: Path) -> None:
    session = http()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited: {process.returncode}\n{tail(log)}")
        with contextlib.suppress(requests.RequestException):
            if session.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT} s\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def worker_pids(master: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master:
                pids.append(int(stat.parent.name))
    return sorted(pids)


@dataclass
class CpuSnapshot:
    busy: int  # machine-wide busy ticks (all CPUs)
    total: int  # machine-wide ticks, busy or idle
    ticks: dict[int, tuple[str, int]]  # our pid -> (group, utime + stime ticks)
    mine: float  # seconds used by this script and its waited-for children (wrk)


@dataclass
class CpuUse:
    others_percent: float  # share of all CPUs used by processes that are not ours
    seconds: dict[str, float]  # CPU seconds of our groups: api, provider, pg, wrk


class CpuMeter:
    """Who used the CPUs during a measurement.

    Ours: the API's gunicorn (group "api"), the provider's ("provider"), the PostgreSQL
    backends serving the run's own database ("pg"), the seeder, and this script with its
    waited-for children ("wrk"). Others: everything else busy on the machine (other
    people's tests, PostgreSQL's background writers). Ratios of one run compare scenarios
    fairly only while others stay low; the API's CPU per request does not depend on them.
    """

    def __init__(self, masters: dict[str, int], pg_database: str | None) -> None:
        self.masters = masters
        self.pg_database = pg_database
        self.hz = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ticks(pid: int, *, reaped: bool = False) -> int:
        """utime + stime of `pid`; with `reaped`, plus those of its children it has
        waited for (cutime + cstime): a gunicorn master's workers that exited."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0
        ticks = int(fields[11]) + int(fields[12])
        return ticks + int(fields[13]) + int(fields[14]) if reaped else ticks

    def _our_pids(self) -> dict[int, str]:
        pids = {}
        for group, master in self.masters.items():
            pids[master] = group
            pids.update(dict.fromkeys(worker_pids(master), group))
        if self.pg_database:
            needle = f" {self.pg_database} ".encode()
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    text = cmdline.read_bytes().replace(b"\0", b" ")
                    if text.startswith(b"postgres: ") and needle in text:
                        pids[int(cmdline.parent.name)] = "pg"
        return pids

    def snapshot(self) -> CpuSnapshot:
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in cpu[:8])
        busy = user + nice + system + irq + softirq + steal
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        masters = set(self.masters.values())
        ticks = {
            pid: (group, self._ticks(pid, reaped=pid in masters))
            for pid, group in self._our_pids().items()
        }
        return CpuSnapshot(busy, busy + idle + iowait, ticks, mine)

    def use(self, before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
        seconds: Counter = Counter()
        for pid, (group, ticks) in after.ticks.items():
            seconds[group] += (ticks - before.ticks.get(pid, (group, 0))[1]) / self.hz
        for pid, (group, ticks) in before.ticks.items():
            if pid not in after.ticks and group != "pg":
                # A worker that exited meanwhile (gunicorn's max_requests): its whole
                # life is now in its master's reaped ticks, counted above; what the
                # first snapshot had already seen of it was before this run.
                seconds[group] -= ticks / self.hz
        seconds["wrk"] += after.mine - before.mine
        busy = after.busy - before.busy
        total = max(1, after.total - before.total)
        ours = sum(seconds.values()) * self.hz
        return CpuUse(max(0.0, 100 * (busy - ours) / total), dict(seconds))


class Seeder:
    """bench/seed.py serve: one Django process answering JSON commands."""

    def __init__(self, env: dict, log: Path) -> None:
        self.log = open(log, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [PYTHON, str(BENCH / "seed.py"), "serve"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,
        )

    def __call__(self, cmd: str, **args) -> dict:
        self.process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"seed.py exited during {cmd!r}\n{tail(Path(self.log.name))}")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise RuntimeError(f"seed.py {cmd}: {answer['error']}\n{tail(Path(self.log.name))}")
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# --- Pays in flight --------------------------------------------------------------------


class PayLoad:
    """Storefronts paying while something else is measured: each thread pays one fresh cart
    after another (`pm_card_visa`, an Idempotency-Key per cart). On `503
    payment_provider_busy` it waits the `Retry-After` seconds and pays the same cart
    again (a busy answer opened nothing), as a client that honours the header does."""

    def __init__(self, api_url: str, ids: list[str], threads: int) -> None:
        self.api_url = api_url
        self.ids = iter(ids)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.active = threading.Event()  # cleared: no new pay is sent
        self.sending = 0  # pays sent and not answered yet
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        self.statuses: Counter = Counter()
        self.pay_seconds: list[float] = []  # answers that were not "busy"
        self.busy_seconds: list[float] = []
        self.exhausted = 0

    def resume(self, settle: float) -> None:
        """Pay again, and give the pays `settle` seconds to fill every provider slot."""
        self.active.set()
        time.sleep(settle)

    def pause(self, timeout: float) -> None:
        """Send no new pay, and wait until every pay sent was answered."""
        self.active.clear()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.sending:
                    return
            time.sleep(0.05)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def next_id(self) -> str | None:
        with self.lock:
            return next(self.ids, None)

    def run(self) -> None:
        session = http()
        cart = self.next_id()
        while cart is not None and not self.stopping.is_set():
            if not self.active.wait(0.2):
                continue
            with self.lock:
                self.sending += 1
            started = time.monotonic()
            try:
                response = session.post(
                    f"{self.api_url}/api/cart/{cart}/pay/",
                    json={"payment_method": "pm_card_visa"},
                    headers={"Idempotency-Key": f"slow-{cart}"},
                    timeout=PAY_BOUND_SECONDS + 30,
                )
                status, code = response.status_code, ""
                if status >= 400:
                    code = (response.json().get("error") or {}).get("code", "")
            except requests.ConnectionError:
                # A keep-alive connection the server closed while idle (the Retry-After
                # wait outlasts gunicorn's keep-alive): a client with an Idempotency-Key
                # sends the same request again, which cannot pay twice.
                with self.lock:
                    self.sending -= 1
                    self.statuses["connection closed, sent again"] += 1
                continue
            except (requests.RequestException, ValueError) as exc:
                status, code = 0, type(exc).__name__
            took = time.monotonic() - started
            with self.lock:
                self.sending -= 1
                self.statuses[f"{status} {code}".strip()] += 1
                if code == "payment_provider_busy":
                    self.busy_seconds.append(took)
                else:
                    self.pay_seconds.append(took)
            if code == "payment_provider_busy":
                self.stopping.wait(float(response.headers.get("Retry-After", "1")))
                continue
            cart = self.next_id()
        if cart is None:
            with self.lock:
                self.exhausted += 1

    def stop(self) -> dict:
        self.stopping.set()
        self.active.set()
        for thread in self.threads:
            thread.join(PAY_BOUND_SECONDS + 40)
        pays = sorted(self.pay_seconds)
        busy = sorted(self.busy_seconds)
        fine = ("200", "503 payment_provider_busy", "connection closed")
        bad = sum(n for answer, n in self.statuses.items() if not answer.startswith(fine))
        return {
            "passed": bad == 0 and not self.exhausted,
            "statuses": dict(self.statuses),
            "paid": self.statuses.get("200", 0),
            "p50_pay_s": pays[len(pays) // 2] if pays else 0.0,
            "max_pay_s": pays[-1] if pays else 0.0,
            "max_busy_s": busy[-1] if busy else 0.0,
            "exhausted": self.exhausted,
        }


# --- wrk -------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk", flush=True)
    apt = ["apt-get", "-qq", "-y"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run([*apt, "install", "wrk"], env=env, check=False).returncode != 0:
        subprocess.run([*apt, "update"], env=env, check=True)
        subprocess.run([*apt, "install", "wrk"], env=env, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed (apt-get install -y wrk, as root)")
    return found


class Wrk:
    def __init__(self, binary: str, connections: int) -> None:
        self.binary = binary
        self.connections = connections
        self.threads = max(1, min(2, connections))
        self.current: subprocess.Popen | None = None

    def run(
        self,
        script: str,
        base_url: str,
        seconds: float,
        *,
        ids: Path | None = None,
        tag: str = "run",
        ok_file: Path | None = None,
        prefix: str = "",
    ) -> dict:
        args = [
            self.binary,
            f"--threads={self.threads}",
            f"--connections={self.connections}",
            f"--duration={max(1, round(seconds))}s",
            f"--timeout={WRK_TIMEOUT}",
            f"--script={LUA / script}",
            base_url + "/",
            "--",
            str(self.threads),
            str(ids) if ids else "-",
            tag,
            prefix or "-",
        ]
        env = {k: v for k, v in os.environ.items() if k != "BENCH_OK_FILE"}
        if ok_file is not None:
            env["BENCH_OK_FILE"] = str(ok_file)
        self.current = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = self.current.communicate(timeout=seconds + 60)
        finally:
            if self.current.poll() is None:
                self.current.kill()
                self.current.wait()
            self.current = None
        # wrk stops with up to one request per connection queued or in flight at the
        # server: let them finish before anything else is measured or checked.
        time.sleep(SETTLE)
        for line in out.splitlines():
            if line.startswith("BENCH_RESULT "):
                return json.loads(line.removeprefix("BENCH_RESULT "))
        raise RuntimeError(f"wrk gave no result for {script}:\n{out}\n{err}")


def cpu_ms(raw: dict, group: str) -> float:
    """CPU milliseconds a group of processes spent per request of a run."""
    return 1000 * raw.get("cpu_seconds", {}).get(group, 0.0) / max(1, raw["requests"])


def total_cpu_ms(raw: dict) -> float:
    """CPU milliseconds all our processes (API, PostgreSQL, provider, wrk) spent per
    request: on a machine whose CPUs are the bottleneck, rates go as its inverse, whatever
    else runs beside."""
    return sum(cpu_ms(raw, group) for group in raw.get("cpu_seconds", {}))


# --- Profiling -------------------------------------------------------------------------


class Profiler:
    """py-spy record on every API worker for the length of one measured run."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.binary = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        if names and not Path(self.binary).exists():
            raise RuntimeError("--profile needs py-spy: pip install py-spy (into the venv)")

    def start(self, run: str, name: str, master: int, seconds: float) -> list:
        if name not in self.names:
            return []
        PROFILES.mkdir(exist_ok=True)
        runs = []
        for pid in worker_pids(master):
            out = PROFILES / f"{run}-{name}-{pid}.txt"
            args = [
                self.binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                "200",
                "--format",
                "raw",
                "--idle",  # a sync worker blocked on I/O serves nobody: count it
                "--nonblocking",
                "--output",
                str(out),
            ]
            process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            runs.append((process, out))
        time.sleep(0.5)  # let py-spy attach before the load starts
        return runs

    @staticmethod
    def finish(runs: list, label: str) -> str:
        stacks: Counter = Counter()
        for process, out in runs:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            with contextlib.suppress(OSError):
                for line in out.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if stack and count.isdigit():
                        stacks[stack] += int(count)
        return summarize_profile(stacks, label, [str(out) for _, out in runs]) if runs else ""


def _frame_key(frame: str) -> tuple[str, str]:
    """("function (file.py)", "path/of/file.py") from "function (path/of/file.py:123)"."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame.strip())
    if not match:
        return frame.strip(), ""
    name, path = match.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})", path


# Where a sample's time goes, by the innermost frame whose (package-relative) path starts
# with one of these; the first category that matches wins.
CATEGORIES = [
    ("database driver, SQL, row conversion", ("sqlite3/", "psycopg", "django/db/backends/")),
    ("HTTP client to the provider", ("requests/", "urllib3/", "http/client.py", "utils.py")),
    ("Django ORM: query building, compiling, model instances", ("django/db/",)),
    ("DRF serializers and fields", ("rest_framework/serializers", "rest_framework/fields")),
    ("copy/deepcopy (DRF field copies per serializer, query clones)", ("copy.py",)),
    ("JSON parse/render", ("simplejson/", "json/", "common/api.py")),
    ("app code (cart, discount, common)", ("cart/", "discount/", "common/")),
    ("DRF views, negotiation, auth, filters", ("rest_framework/", "django_filters/")),
    ("Django handler, middleware, URLs, HTTP", ("django/",)),
    ("gunicorn: socket accept/read/write/close", ("gunicorn/", "socket.py", "selectors.py")),
]


# Frames worth a line of their own in a summary: (label, function-name prefixes).
MARKERS = [
    ("waiting for PostgreSQL's answer (psycopg Connection.wait)", ("Connection.wait ",)),
    ("the health check's SELECT 1 before a request's first query", ("DatabaseWrapper.is_usable",)),
    ("COMMIT of an explicit transaction", ("BaseDatabaseWrapper._commit",)),
    ("SQLite executing a statement", ("SQLiteCursorWrapper.execute",)),
    ("the call to the payment provider", ("PaymentAPI.request_payment",)),
    ("the view's own fetch of the object (get_object)", ("GenericAPIView.get_object",)),
    ("prefetching payments", ("prefetch_related_objects",)),
    ("serializing the response", ("BaseSerializer.data", "ReturnDict", "Serializer.data ")),
    ("gunicorn writing the response and closing the socket", ("write ", "close_graceful")),
]


def _has(frames: tuple, prefixes: tuple[str, ...]) -> bool:
    return any(name.startswith(prefixes) for name, _ in frames)


def _category(frames: list[tuple[str, str]]) -> str:
    for _, path in reversed(frames):
        for label, needles in CATEGORIES:
            if path.startswith(needles):
                return label
    return "other"


# A worker's frames while it serves a request (sync workers, gthread workers' threads).
SERVING = ("SyncWorker.handle ", "ThreadWorker.handle ")


def summarize_profile(stacks: Counter, label: str, files: list[str], top: int = 20) -> str:
    """Text summary of py-spy raw stacks of sync workers recorded with --idle: time waiting
    for a connection, then where the time serving requests goes."""
    serving: Counter = Counter()
    waiting = 0
    for stack, count in stacks.items():
        frames = [_frame_key(f) for f in stack.split(";") if f]
        names = [name for name, _ in frames]
        if not any(name.startswith(SERVING) for name in names):
            waiting += count
            continue
        serving[tuple(frames)] += count
    total = sum(serving.values()) or 1
    own: Counter = Counter()
    inclusive: Counter = Counter()
    categories: Counter = Counter()
    for frames, count in serving.items():
        own[frames[-1][0]] += count
        categories[_category(list(frames))] += count
        for name in {name for name, _ in frames}:
            inclusive[name] += count
    all_samples = total + waiting
    lines = [
        f"Profile of {label}: {all_samples} samples of the 2 workers, "
        f"{100 * total / max(all_samples, 1):.0f}% serving a request, "
        f"{100 * waiting / max(all_samples, 1):.0f}% waiting for a connection "
        f"(raw stacks: {', '.join(files)})",
        "  time serving requests, by where it is spent:",
    ]
    lines += [f"    {100 * n / total:5.1f}%  {c}" for c, n in categories.most_common()]
    lines.append("  share of that time inside (a request may be in several):")
    for marker, needles in MARKERS:
        n = sum(c for frames, c in serving.items() if _has(frames, needles))
        if n:
            lines.append(f"    {100 * n / total:5.1f}%  {marker}")
    lines.append("  own time (innermost function):")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive (function and what it calls), wrappers present in >95% left out:")
    shown = [(f, n) for f, n in inclusive.most_common() if n < 0.95 * total][: top + 10]
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in shown]
    return "\n".join(lines)


# --- One database ----------------------------------------------------------------------


@dataclass
class Section:
    db: str
    results: dict[str, dict[str, Result]]  # server configuration -> scenario -> result
    checks: dict[str, dict[str, dict]]  # server configuration -> check -> report
    info: dict
    notes: list[str]
    profiles: list[str]

    @property
    def valid(self) -> bool:
        results = [r for by_name in self.results.values() for r in by_name.values()]
        checks = [c for by_name in self.checks.values() for c in by_name.values()]
        measurements_ok = all(not r.errors and not r.exhausted for r in results)
        return measurements_ok and all(check["passed"] for check in checks)


# The API's gunicorn, two ways; every ratio is to the bare endpoint of the same one.
CONFIGS = {
    "sync": "2 sync workers (`--workers 2 --worker-class sync`)",
    "prod": "production: `--config python:CoreRoot.gunicorn`, 2 workers × 4 threads (gthread)",
}


SCENARIOS = {
    "bare": "bare endpoint `GET /bench/bare/`",
    "get_cart": "get cart `GET /api/cart/{id}/`",
    "list_100": "list carts, 100 rows `GET /api/cart/`",
    "list_1000": "list carts, 1,000 rows",
    "list_10000": "list carts, 10,000 rows",
    "create_cart": "create cart `POST /api/cart/`",
    "create_discount": "create discount `POST /api/discount/`",
    "apply_discount": "apply discount `POST /api/cart/{id}/apply_discount/`",
    "provider": "fake provider alone `POST /request_payment`",
    "pay": "pay `POST /api/cart/{id}/pay/`",
    "limit_get_cart": "limit: get cart, one SELECT `GET /bench/limit/api/cart/{id}/`",
    "limit_list": "limit: list carts, 10,000 rows, one SELECT `GET /bench/limit/api/cart/`",
    "limit_create_cart": "limit: create cart, one INSERT `POST /bench/limit/api/cart/`",
    "limit_create_discount": "limit: create discount, one INSERT "
    "`POST /bench/limit/api/discount/`",
    "limit_apply_discount": "limit: apply discount, lock + 2 UPDATEs "
    "`POST /bench/limit/api/cart/{id}/apply_discount/`",
    "limit_pay": "limit: pay, claim + provider + INSERT, UPDATE "
    "`POST /bench/limit/api/cart/{id}/pay/`",
    "get_cart_prod": "get cart, production gunicorn, no pay running",
    "get_cart_slow_pays": "get cart, production gunicorn, pays waiting on a slow provider",
    "get_cart_prod_nolimit": "get cart, production gunicorn, no pay running, no in-flight limit",
    "get_cart_slow_pays_nolimit": "get cart, pays waiting on a slow provider, no in-flight limit",
}
# Each endpoint's limit row: the same request by hand in a plain Django view (bench/limits.py).
LIMITS = {
    "get_cart": "limit_get_cart",
    "list_10000": "limit_list",
    "create_cart": "limit_create_cart",
    "create_discount": "limit_create_discount",
    "apply_discount": "limit_apply_discount",
    "pay": "limit_pay",
}
LIMIT_FACTOR = 1.5  # Done when: the target met, or the limit at most this much faster
LIMIT_PREFIX = "/bench/limit"
# Scenarios that run only with --provider-latency: reads while pays wait on the provider.
SLOW_PROVIDER = ("get_cart_prod", "get_cart_slow_pays")
SLOW_PROVIDER_NOLIMIT = ("get_cart_prod_nolimit", "get_cart_slow_pays_nolimit")
# What the pay client in the API waits at most (CoreRoot/settings.py defaults): every
# attempt's read timeout plus the backoff between them. A pay must never take longer.
READ_TIMEOUT, MAX_RETRIES, BACKOFF = 5.0, 2, 0.2
PAY_BOUND_SECONDS = READ_TIMEOUT * (MAX_RETRIES + 1) + sum(
    BACKOFF * 2**n for n in range(MAX_RETRIES)
)


class _SplitSampler(threading.Thread):
    def __init__(self, workers: list[int], port: int, delay: float) -> None:
        super().__init__(daemon=True)
        self.workers, self.port, self.delay = workers, port, delay
        self.counts: list[int] | None = None

    def run(self) -> None:
        time.sleep(self.delay)
        self.counts = connections_per_worker(self.workers, self.port)


class DatabaseRun:
    def __init__(
        self, db: str, opts: argparse.Namespace, wrk: Wrk, profiler: Profiler, budget: float
    ) -> None:
        self.db = db
        self.deadline = time.monotonic() + budget
        self.opts = opts
        self.wrk = wrk
        self.profiler = profiler
        self.work = Path(tempfile.mkdtemp(prefix=f"bench-{db}-"))
        self.processes = Processes()
        self.configs: list[str] = list(opts.configs)
        self.results: dict[str, dict[str, Result]] = {c: {} for c in self.configs}
        self.checks: dict[str, dict[str, dict]] = {c: {} for c in self.configs}
        self.notes: list[str] = []
        self.profiles: list[str] = []
        self.pg_url: str | None = None
        self.seed: Seeder | None = None
        self.apis: dict[str, tuple[str, subprocess.Popen, Path]] = {}
        self.runs_left = 0  # measured runs still planned (for --budget)

    # Set-up and tear-down.

    def database_url(self) -> str:
        if self.db == "sqlite":
            return f"sqlite:///{self.work / 'bench.sqlite3'}"
        base = self.opts.postgres_url.rstrip("/")
        self.pg_url = f"{base}/bench_{os.getpid()}"
        subprocess.run(
            [PYTHON, str(BENCH / "seed.py"), "create-db", self.pg_url],
            cwd=ROOT,
            check=True,
            timeout=60,
        )
        return self.pg_url

    def env(self, database_url: str, provider_port: int) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PAYMENT_API_", "GUNICORN_", "REAL_PAYMENT", "RATELIMIT_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="bench.settings",
            ENV="DEV",
            DEBUG="false",
            DATABASE_URL=database_url,
            FAKE_PAYMENT_API=f"127.0.0.1:{provider_port}",
            PYTHONDONTWRITEBYTECODE="1",
            LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"),
        )
        # Every request is still counted by the rate limiter (its cost is part of the
        # endpoint's), at a rate wrk from one address never reaches.
        env.update({f"RATELIMIT_{name}": BENCH_RATE for name in RATE_LIMIT_NAMES})
        return env

    def start(self) -> None:
        url = self.database_url_value = self.database_url()
        self.provider_port = free_port()
        env = self.env(url, self.provider_port)
        migrate = subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        gunicorn = [PYTHON, "-m", "gunicorn", "--no-control-socket", "--log-level=warning"]
        self.provider_log = self.work / "provider.log"
        provider = self.processes.start(
            "provider",
            [
                *gunicorn,
                "--workers=1",
                "--threads=8",
                f"--bind=127.0.0.1:{self.provider_port}",
                "fake_payment_server:app",
            ],
            env,
            self.provider_log,
        )
        self.provider_url = f"http://127.0.0.1:{self.provider_port}"
        wait_until_answers(f"{self.provider_url}/inspect", provider, self.provider_log)
        for config in self.configs:
            self.apis[config] = self.start_api(config, env)
        self.seed = Seeder(env, self.work / "seed.log")
        pg_database = self.pg_url.rsplit("/", 1)[1] if self.pg_url else None
        masters = {f"api-{c}": process.pid for c, (_, process, _) in self.apis.items()}
        masters.update(provider=provider.pid, seed=self.seed.process.pid)
        self.cpu = CpuMeter(masters, pg_database)

    def start_api(self, config: str, env: dict) -> tuple[str, subprocess.Popen, Path]:
        """The API under one server configuration, on a free port, both at once: each
        scenario is measured on one right after the other, under the same load."""
        port = free_port()
        log = self.work / f"api-{config}.log"
        env = dict(env)
        if config == "sync":
            args = [
                "--no-control-socket",
                "--log-level=warning",
                "--workers=2",
                "--worker-class=sync",
                "--timeout=30",
                "--graceful-timeout=5",
                f"--bind=127.0.0.1:{port}",
            ]
        else:
            # As the image runs it: CoreRoot/gunicorn.py with its defaults (metrics of
            # every worker in one directory, max_requests, no access log), bound here.
            metrics = self.work / "prometheus"
            metrics.mkdir(exist_ok=True)
            env.update(
                GUNICORN_WORKERS="2",
                GUNICORN_THREADS="4",
                GUNICORN_BIND=f"127.0.0.1:{port}",
                PROMETHEUS_MULTIPROC_DIR=str(metrics),
                # The in-flight limit (default: half the threads) answers pays beyond it
                # 503 payment_provider_busy by design; at the thread count it still runs
                # on every pay but never sheds one of wrk's 8 connections.
                PAYMENT_MAX_IN_FLIGHT="4",
            )
            args = ["--config", "python:CoreRoot.gunicorn", "--no-control-socket"]
        process = self.processes.start(
            f"api-{config}",
            [PYTHON, "-m", "gunicorn", *args, "CoreRoot.wsgi:application"],
            env,
            log,
        )
        api_url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{api_url}/health/ready/", process, log)
        wait_until_answers(f"{api_url}/bench/bare/", process, log)
        return api_url, process, log

    def stop(self) -> None:
        if self.seed is not None:
            self.seed.close()
        self.processes.stop_all()
        if self.pg_url:
            subprocess.run(
                [PYTHON, str(BENCH / "seed.py"), "drop-db", self.pg_url],
                cwd=ROOT,
                check=False,
                timeout=60,
            )
        if self.opts.keep:
            print(f"kept {self.work}", flush=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # Measuring.

    def measure(
        self,
        name: str,
        script: str,
        config: str,
        *,
        base_url: str | None = None,
        warm: Attempt | None = None,
        attempt: Callable[[int], Attempt] | None = None,
        warm_up: bool = True,
        retries: int | None = None,
    ) -> Result:
        """Warm up once, then measure; measure again (up to --retries times) while other
        processes took more than --max-others % of the CPU, and keep the quietest run.
        `attempt(i)` prepares run i (a fresh pool, a code) and says what it uses."""
        api_url, api, _ = self.apis[config]
        prefix = LIMIT_PREFIX if name.startswith("limit_") else ""
        base_url = base_url or api_url
        tag = f"M{os.getpid()}{config}{name.replace('_', '')}"
        attempt = attempt or (lambda i: Attempt(tag=f"{tag}R{i}"))
        warm = warm or Attempt()
        self.runs_left = max(0, self.runs_left - 1)
        if warm_up and self.opts.warmup > 0:
            raw = self.wrk.run(
                script,
                base_url,
                self.opts.warmup,
                ids=warm.ids or attempt(0).ids,
                tag=warm.tag or f"W{tag}",
                ok_file=warm.ok_file,
                prefix=prefix,
            )
            if raw["errors"] or raw["exhausted"]:
                self.notes.append(
                    f"{config} {name}: warm-up had {raw['errors']} errors, statuses "
                    f"{raw['statuses']}, {raw['exhausted']} pool misses"
                )
        profiled = name in self.profiler.names
        if retries is None:
            retries = 0 if profiled else self.opts.retries
        runs: list[tuple[float, dict, Attempt]] = []
        for index in range(1 + retries):
            if index and not self.may_repeat():
                break
            plan = attempt(index)
            profiling = self.profiler.start(
                f"{self.db}-{config}", name, api.pid, self.opts.duration
            )
            workers = set(worker_pids(api.pid))
            sampler = self.split_sampler(config, base_url, api_url, sorted(workers))
            before = self.cpu.snapshot()
            raw = self.wrk.run(
                script,
                base_url,
                self.opts.duration,
                ids=plan.ids,
                tag=plan.tag or f"{tag}R{index}",
                ok_file=plan.ok_file,
                prefix=prefix,
            )
            use = self.cpu.use(before, self.cpu.snapshot())
            raw["restarts"] = len(set(worker_pids(api.pid)) - workers)
            if sampler is not None:
                sampler.join()
                raw["split"] = sampler.counts
            others = use.others_percent
            # "api": the configuration measured; the other one idles beside it.
            seconds = {k: v for k, v in use.seconds.items() if not k.startswith("api-")}
            seconds["api"] = use.seconds.get(f"api-{config}", 0.0)
            seconds["api-idle"] = sum(
                v for k, v in use.seconds.items() if k.startswith("api-") and k != f"api-{config}"
            )
            raw["cpu_seconds"] = seconds
            runs.append((others, raw, plan))
            print(
                f"  {config:<4} {name:<21} {raw['rps']:9.1f} req/s  "
                f"p50 {raw['p50_us'] / 1000:7.2f} ms  p99 {raw['p99_us'] / 1000:7.2f} ms  "
                f"errors {raw['errors']}  statuses {raw['statuses']}  "
                f"others' CPU {others:.0f}%  API CPU {cpu_ms(raw, 'api'):.2f} ms/req"
                + (f"  restarts {raw['restarts']}" if raw["restarts"] else "")
                + (f"  connections {split_text(raw['split'])}" if raw.get("split") else "")
                + (f"  POOL EXHAUSTED {raw['exhausted']}" if raw["exhausted"] else ""),
                flush=True,
            )
            if profiling:
                label = f"{DB_LABELS[self.db]} {config} {name}"
                summary = self.profiler.finish(profiling, label)
                (PROFILES / f"{self.db}-{config}-{name}-summary.txt").write_text(summary + "\n")
                self.profiles.append(summary)
                print(summary, flush=True)
            if others <= self.opts.max_others and split_is_even(raw.get("split") or []):
                break
        others, raw, plan = kept_run(runs)
        result = Result(
            name=name,
            label=SCENARIOS[name],
            rps=raw["rps"],
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            # A failed run is not hidden by a retry: every run's errors count.
            errors=sum(r["errors"] for _, r, _ in runs),
            requests=raw["requests"],
            statuses=raw["statuses"],
            exhausted=sum(r["exhausted"] for _, r, _ in runs),
            raw=raw,
            others_cpu=others,
            attempts=[(o, r["rps"], r.get("split")) for o, r, _ in runs],
            kept=plan,
            plans=[p for _, _, p in runs],
            restarts=raw["restarts"],
            split=raw.get("split"),
        )
        if profiled:
            result.note = "profiled: slower"
        self.results[config][name] = result
        return result

    def split_sampler(
        self, config: str, base_url: str, api_url: str, workers: list[int]
    ) -> _SplitSampler | None:
        """For the production configuration's own requests (kept-alive connections), count
        the connections each worker holds halfway through the measured run."""
        if config != "prod" or base_url != api_url or not workers:
            return None
        port = int(api_url.rsplit(":", 1)[1].split("/", 1)[0])
        sampler = _SplitSampler(workers, port, self.opts.duration / 2)
        sampler.start()
        return sampler

    def each_config(self, name: str, script: str, **kwargs) -> None:
        """Measure one scenario on every server configuration, one right after the other."""
        for config in self.configs:
            self.measure(name, script, config, **kwargs)

    def each_config_paired(self, names: Sequence[str], script: str, **kwargs) -> None:
        """Measure the wanted scenarios of `names` (an endpoint and its limit row) one right
        after the other on one server configuration, then on the next. A ratio to the limit
        divides two rates: measured seconds apart, both see the machine at the same speed
        (on these VMs the CPU time of one request moved by half within a minute)."""
        for config in self.configs:
            for name in names:
                if self.wanted(name):
                    self.measure(name, script, config, **kwargs)

    def reset_provider(self, session: requests.Session) -> None:
        """Empty the provider's ledger; with --provider-latency, slow every charge down."""
        session.post(f"{self.provider_url}/control/reset", timeout=5).raise_for_status()
        if self.opts.provider_latency:
            session.post(
                f"{self.provider_url}/control/faults",
                json={"kind": "latency", "count": None, "delay_ms": self.opts.provider_latency},
                timeout=5,
            ).raise_for_status()

    def may_repeat(self) -> bool:
        """Whether a disturbed run can be repeated within --budget: the runs still to come
        must fit in what is left of this database's share of it."""
        cost = self.opts.warmup + self.opts.duration + 2 * SETTLE + 1.5
        return time.monotonic() + (self.runs_left + 1) * cost < self.deadline

    def pool(self, name: str, seconds: float, config: str) -> Path:
        """A file of fresh carts enough for `seconds` of any scenario (bounded by bare)."""
        count = math.ceil(self.results[config]["bare"].rps * seconds * POOL_MARGIN) + 200
        path = self.work / f"{name}.ids"
        self.seed("carts", count=count, file=str(path))
        return path

    def planned_runs(self) -> int:
        names = [n for n in SCENARIOS if n not in (*SLOW_PROVIDER, *SLOW_PROVIDER_NOLIMIT)]
        per_config = sum(1 for n in names if n != "provider" and self.wanted(n))
        return per_config * len(self.configs) + int(self.wanted("provider") or self.wanted("pay"))

    def run(self) -> Section:
        seed, work = self.seed, self.work
        info = seed("info")
        print(f"[{DB_LABELS[self.db]}] {info['version']}", flush=True)
        self.runs_left = self.planned_runs()

        self.each_config("bare", "bare.lua")

        listed = work / "listed.ids"
        seed("carts", count=100, file=str(listed))
        self.each_config_paired(
            ("get_cart", "limit_get_cart"), "get_cart.lua", attempt=lambda i: Attempt(ids=listed)
        )
        for rows in (100, 1000, 10000):
            names = [f"list_{rows}"] + (["limit_list"] if rows == 10000 else [])
            if not any(self.wanted(name) for name in names):
                continue
            missing = rows - seed("count")["rows"]
            if missing > 0:
                seed("carts", count=missing)
            actual = seed("count")["rows"]
            if actual != rows:
                raise RuntimeError(f"the cart table has {actual} rows, not {rows}")
            self.each_config_paired(names, "list_carts.lua")

        self.each_config_paired(("create_cart", "limit_create_cart"), "create_cart.lua")
        self.each_config_paired(
            ("create_discount", "limit_create_discount"), "create_discount.lua"
        )
        for config in self.configs:
            for name in ("apply_discount", "limit_apply_discount"):
                if self.wanted(name):
                    self.run_apply(name, config)
        if any(self.wanted(name) for name in ("provider", "pay", "limit_pay")):
            self.run_provider_and_pay(listed)
        if self.opts.provider_latency and self.wanted("get_cart_slow_pays"):
            self.run_slow_provider(listed, SLOW_PROVIDER, limit=None)
            if not self.opts.no_unlimited:
                self.run_slow_provider(listed, SLOW_PROVIDER_NOLIMIT, limit=0)
        for config in self.configs:
            self.remeasure_bare(config)
        if "prod" in self.results:
            self.notes.append(split_note(self.results["prod"]))

        for config in self.configs:
            logged = self.server_errors(config)
            if logged:
                self.notes.append(f"API log ({config}): {logged}")
        return Section(self.db, self.results, self.checks, info, self.notes, self.profiles)

    def remeasure_bare(self, config: str) -> None:
        """The bare rate divides every ratio, so it is measured once more at the end (the
        workers are warm) if time allows. A note says how far it moved: a shared VM's
        speed may drift within minutes, which "others' CPU" does not see, and the ratios
        of the rows measured in between may be off by as much. When other processes
        disturbed the first run, the quieter of the two is kept."""
        first = self.results[config]["bare"]
        cost = self.opts.duration + 2 * SETTLE + 1
        if "bare" in self.profiler.names or time.monotonic() + cost > self.deadline:
            return
        again = self.measure("bare", "bare.lua", config, warm_up=False, retries=0)
        self.notes.append(bare_drift_note(config, first.rps, again.rps, again.restarts))
        if first.others_cpu <= self.opts.max_others:
            self.results[config]["bare"] = first
            return
        keep = first if first.others_cpu <= again.others_cpu else again
        keep.attempts = first.attempts + again.attempts
        self.results[config]["bare"] = keep

    def wanted(self, name: str) -> bool:
        """--only names the scenarios; an endpoint named brings its limit row along."""
        if not self.opts.only or name in self.opts.only:
            return True
        return any(LIMITS.get(other) == name for other in self.opts.only)

    def run_apply(self, name: str, config: str) -> None:
        seed, work, stamp = self.seed, self.work, os.getpid()
        short = f"{config[0].upper()}{'L' if name.startswith('limit_') else 'A'}"

        # Apply: every run (warm-up, each measured run) has its own code and its own pool
        # of fresh carts, and each is checked for lost updates.
        def apply_run(label: str, seconds: float) -> Attempt:
            code = f"BENCH{stamp}{short}{label}"
            seed("discount", code=code, value="5")
            pool = self.pool(f"apply-{short}-{label}", seconds, config)
            return Attempt(ids=pool, tag=code, ok_file=work / f"apply-{short}-{label}.ok")

        apply_warm = apply_run("W", self.opts.warmup)
        apply = self.measure(
            name,
            "apply_discount.lua",
            config,
            warm=apply_warm,
            attempt=lambda i: apply_run(f"R{i}", self.opts.duration),
        )
        max_unseen = self.opts.connections
        checks = {
            plan.tag: seed(
                "verify_apply",
                code=plan.tag,
                pool_file=str(plan.ids),
                ok_file=str(plan.ok_file),
                max_unseen=max_unseen,
            )
            for plan in [apply_warm, *apply.plans]
        }
        self.checks[config][name] = {
            "passed": all(c["passed"] for c in checks.values()),
            "runs": len(checks),
            "measured": checks[apply.kept.tag],
            "all": checks,
        }
        print(f"  {config} {name} check: {json.dumps(checks[apply.kept.tag])}", flush=True)

    def run_provider_and_pay(self, listed: Path) -> None:
        seed, work, stamp = self.seed, self.work, os.getpid()
        max_unseen = self.opts.connections
        first = self.configs[0]

        # The provider's own rate, on cart ids that are never paid. Its ledger lives in
        # memory and slows it down as it grows: every run starts from an empty one, and
        # after the last reset it holds only the pay scenarios' charges.
        provider = http()

        def provider_run(index: int) -> Attempt:
            self.reset_provider(provider)
            return Attempt(ids=listed)

        self.measure(
            "provider",
            "provider_pay.lua",
            first,
            base_url=self.provider_url,
            attempt=provider_run,
        )
        for config in self.configs[1:]:  # one provider for both: measured once
            self.results[config]["provider"] = self.results[first]["provider"]
        self.reset_provider(provider)

        plans: list[Attempt] = []
        for config, name in itertools.product(self.configs, ("pay", "limit_pay")):
            if self.wanted(name):
                short = f"{config[0].upper()}{'L' if name.startswith('limit_') else 'P'}"

                def pay_run(label: str, seconds: float, config=config, short=short) -> Attempt:
                    pool = self.pool(f"pay-{short}-{label}", seconds, config)
                    return Attempt(
                        ids=pool,
                        tag=f"{short}{stamp}{label}",
                        ok_file=work / f"pay-{short}-{label}.ok",
                    )

                pay_warm = pay_run("W", self.opts.warmup)
                pay = self.measure(
                    name,
                    "pay.lua",
                    config,
                    warm=pay_warm,
                    attempt=lambda i, pay_run=pay_run: pay_run(f"R{i}", self.opts.duration),
                )
                plans += [pay_warm, *pay.plans]
        # One check over every pay run of both configurations and the limit rows: the
        # provider's ledger holds all their charges.
        pay_check = seed(
            "verify_pay",
            runs=[[str(plan.ids), str(plan.ok_file)] for plan in plans],
            provider_url=self.provider_url,
            max_unseen=max_unseen,
        )
        for config in self.configs:
            self.checks[config]["pay"] = pay_check
        print(f"  pay check: {json.dumps(pay_check)}", flush=True)

    def start_production_api(self, limit: int | None) -> tuple[str, subprocess.Popen, Path]:
        """The API as deployed: `CoreRoot/gunicorn.py` (2 workers x 4 threads), its request
        log included; `limit` sets PAYMENT_MAX_IN_FLIGHT (None: the default)."""
        port = free_port()
        env = self.env(self.database_url_value, self.provider_port)
        env.update(
            GUNICORN_WORKERS="2",
            GUNICORN_THREADS="4",
            GUNICORN_BIND=f"127.0.0.1:{port}",
            DJANGO_SETTINGS_MODULE="CoreRoot.settings",
        )
        if limit is not None:
            env["PAYMENT_MAX_IN_FLIGHT"] = str(limit)
        log = self.work / f"api-production-{'default' if limit is None else limit}.log"
        process = self.processes.start(
            "api-production",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "--config",
                "python:CoreRoot.gunicorn",
                "--no-control-socket",
                "CoreRoot.wsgi:application",
            ],
            env,
            log,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{url}/health/ready/", process, log)
        return url, process, log

    def run_slow_provider(self, listed: Path, names: tuple[str, str], limit: int | None) -> None:
        """GET cart on the production gunicorn config, alone and while --slow-pays clients
        pay carts at a provider that takes --provider-latency ms, in --slow-pairs pairs of
        back-to-back windows. The machine is shared: a pair's two windows meet about the
        same load from others, so the ratio of each pair, and their median, say what the
        pays cost the reads; the rows show the pair whose ratio is the median."""
        quiet_name, busy_name = names
        url, process, log = self.start_production_api(limit)
        masters = dict(self.cpu.masters)
        self.cpu.masters["api"] = process.pid  # its CPU is ours, not "others'"
        session = http()
        latency = self.opts.provider_latency / 1000
        window, pairs = self.opts.slow_window, self.opts.slow_pairs
        try:
            self.reset_provider(session)
            # Warm every thread (URL conf, a database connection each) and wrk's path.
            with contextlib.suppress(requests.RequestException):
                for _ in range(16):
                    session.get(f"{url}/health/ready/", timeout=10)
            self.wrk.run("get_cart.lua", url, max(1, self.opts.warmup), ids=listed, tag="Wslow")
            per_thread = math.ceil(pairs * (window + latency + 3) / max(latency, 0.05)) + 4
            pool = self.work / f"{busy_name}.ids"
            self.seed("carts", count=per_thread * self.opts.slow_pays, file=str(pool))
            load = PayLoad(url, pool.read_text().split(), self.opts.slow_pays)
            load.start()
            runs = []
            for _ in range(pairs):
                load.pause(timeout=PAY_BOUND_SECONDS + 5)
                quiet = self.window(listed, url, window)
                load.resume(settle=latency + 1)  # every slot now waits on the provider
                busy = self.window(listed, url, window)
                runs.append((busy[0]["rps"] / max(quiet[0]["rps"], 1e-9), quiet, busy))
            summary = load.stop()
            runs.sort(key=lambda run: run[0])
            ratio, quiet, busy = runs[len(runs) // 2]
            summary["pair_ratios"] = [round(run[0], 2) for run in runs]
            summary["median_ratio"] = ratio
            summary["median_ratio_by_cpu"] = total_cpu_ms(quiet[0]) / max(
                total_cpu_ms(busy[0]), 1e-9
            )
            for name, (raw, others) in ((quiet_name, quiet), (busy_name, busy)):
                self.results[self.configs[0]][name] = Result(
                    name=name,
                    label=SCENARIOS[name],
                    rps=raw["rps"],
                    p50_ms=raw["p50_us"] / 1000,
                    p99_ms=raw["p99_us"] / 1000,
                    errors=raw["errors"],
                    requests=raw["requests"],
                    statuses=raw["statuses"],
                    raw=raw,
                    others_cpu=others,
                )
            check = f"slow_pays{'_nolimit' if limit == 0 else ''}"
            self.checks[self.configs[0]][check] = summary
            print(f"  slow pays: {json.dumps(summary)}", flush=True)
        finally:
            self.cpu.masters = masters
            self.processes.stop(process)
            logged = log.read_text(errors="replace")
            problems = logged.count("Traceback (most recent call last)")
            if problems or "WORKER TIMEOUT" in logged:
                self.notes.append(f"{busy_name}: the production API logged {problems} tracebacks")

    def window(self, listed: Path, url: str, seconds: float) -> tuple[dict, float]:
        """One measured wrk run of GET cart: its numbers and the others' CPU share."""
        before = self.cpu.snapshot()
        raw = self.wrk.run("get_cart.lua", url, seconds, ids=listed, tag="slow")
        use = self.cpu.use(before, self.cpu.snapshot())
        raw["cpu_seconds"] = use.seconds
        print(
            f"  window {raw['rps']:9.1f} req/s  p50 {raw['p50_us'] / 1000:7.2f} ms  "
            f"others' CPU {use.others_percent:.0f}%",
            flush=True,
        )
        return raw, use.others_percent

    def server_errors(self, config: str) -> str:
        log = self.apis[config][2]
        text = log.read_text(errors="replace") if log.exists() else ""
        counts = {
            "tracebacks": text.count("Traceback (most recent call last)"),
            "ERROR lines": len(re.findall(r"\bERROR\b", text)),
            "worker timeouts": text.count("WORKER TIMEOUT"),
        }
        return ", ".join(f"{n} {what}" for what, n in counts.items() if n)


# --- Report ----------------------------------------------------------------------------


def git_commit() -> str:
    """`abc1234`, plus how many tracked files differ from it (other work in progress)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = f"`{git('rev-parse', '--short', 'HEAD') or 'unknown'}`"
    changed = len(git("status", "--porcelain", "--untracked-files=no").splitlines())
    notes = []
    if changed:
        notes.append(f"working tree dirty: {changed} tracked file{'s' * (changed != 1)} changed")
    if git("status", "--porcelain", "--", "bench"):
        notes.append("bench/ differs from the commit")
    return commit + (f" ({'; '.join(notes)})" if notes else "")


def machine() -> dict:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return {
        "cpus": cpus,
        "cpu": model,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
        "wrk": " ".join(wrk_version.split()[:2]),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def markdown(section: Section, opts: argparse.Namespace, meta: dict) -> str:
    label = DB_LABELS[section.db]
    m = meta["machine"]
    configs = [c for c in CONFIGS if c in section.results]
    lines = [
        f"<!-- bench:{section_id(section.db, opts)}:start -->",
        f"### {label}"
        + (f", provider answering in {opts.provider_latency} ms" if opts.provider_latency else ""),
        "",
        f"Run {meta['date']} · commit {meta['commit']} · {section.info['version']} · "
        f"wrk {opts.connections} connections, "
        f"{min(2, opts.connections)} threads, {opts.warmup:g} s warm-up + "
        f"{opts.duration:g} s measured per scenario"
        + (
            f"; what-if: every charge at the fake provider takes {opts.provider_latency} ms. "
            f"The slow-provider rows: production gunicorn (2 workers x 4 threads), "
            f"{opts.slow_pairs} pairs of {opts.slow_window:g} s windows."
            if opts.provider_latency
            else "."
        ),
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['os']}, Python {m['python']}, "
        f"{m['wrk']}, load average at start {m['load']}.",
    ]
    for config in configs:
        results = section.results[config]
        lines += [
            "",
            f"#### {label}, {CONFIGS[config]}",
            "",
            "| scenario | req/s | p50 ms | p99 ms | errors | ratio to bare | ratio to limit "
            "| target | met? | done? | API CPU ms/req | all CPU ms/req | ratio by CPU "
            "| others' CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|",
        ]
        for name in SCENARIOS:
            r = results.get(name)
            if r is None:
                continue
            met = "—" if r.met is None else ("yes" if r.met else "**no**")
            if r.parts:
                met += f" ({'; '.join(r.parts)})"
            done = "—" if r.done is None else ("**yes**" if r.done else "**no**")
            if r.done_text:
                done += f" ({r.done_text})"
            errors = str(r.errors)
            if r.errors:
                errors += " " + json.dumps(r.statuses)
            if r.exhausted:
                errors += f", pool exhausted ×{r.exhausted}"
            to_limit = "—" if r.limit_ratio is None else f"{r.limit_ratio:.2f}"
            lines.append(
                f"| {r.label} | {fmt(r.rps)} | {fmt(r.p50_ms, 2)} | {fmt(r.p99_ms, 2)} | "
                f"{errors} | {r.ratio:.2f} | {to_limit} | {r.target or '—'} | {met} | {done} | "
                f"{cpu_cell(r)} | {total_cpu_ms(r.raw):.2f} | {r.cpu_ratio or 0:.2f} | "
                f"{r.others_cpu:.0f}% |"
            )
        lines.append("")
        repeated = repeated_note(results, opts.max_others)
        if repeated:
            lines.append(repeated)
        restarted = [
            f"{results[n].label.split(' `')[0]} {results[n].restarts}"
            for n in SCENARIOS
            if n in results and results[n].restarts and n != "provider"
        ]
        if restarted:
            lines.append(
                "Workers restarted by `max_requests` during the measured run: "
                + "; ".join(restarted)
                + "."
            )
        profiled = [r.label.split(" `")[0] for r in results.values() if r.note]
        if profiled:
            lines.append(f"Profiled with py-spy, so slower: {', '.join(profiled)}.")
        for name in ("apply_discount", "limit_apply_discount"):
            apply = section.checks[config].get(name)
            if not apply:
                continue
            c = apply["measured"]
            verdict = "no lost update" if apply["passed"] else "**LOST UPDATES / CHECK FAILED**"
            lines.append(
                f"{'Limit apply' if name.startswith('limit_') else 'Apply'}-discount check: "
                f"{c['answered_200']} carts answered 200, "
                f"{c['carts_holding']} carts hold the code, uses counted {c['uses_counted']}, "
                f"{c['wrong_total']} wrong totals, {c['ok_without_discount']} answered 200 "
                f"without the discount, {c['unseen_in_flight']} applied while wrk was "
                f"stopping (in flight, not counted) → {verdict} ({apply['runs']} runs checked: "
                "the warm-up and every measured run, each with its own code and carts)."
            )
    pay = next((c["pay"] for c in section.checks.values() if "pay" in c), None)
    if pay:
        verdict = "exactly once" if pay["passed"] else "**CHECK FAILED**"
        lines.append(
            "Pay check (warm-up and measured runs of both configurations and the limit "
            f"rows): {pay['answered_200']} answered 200, "
            f"{pay['db_successful_payments']} successful payments in the database, "
            f"{pay['provider_charges']} charges in the provider's ledger, "
            f"{pay['not_paid']} answered 200 but not paid, {pay['charged_twice']} charged "
            f"twice, {pay['open_attempts']} attempts left open → {verdict}."
        )
    slow = section.checks.get(configs[0], {}) if configs else {}
    for suffix, what in (("", "the default in-flight limit"), ("_nolimit", "no in-flight limit")):
        load = slow.get(f"slow_pays{suffix}")
        if load:
            lines.append(
                f"Slow provider, {what}: {opts.slow_pays} clients paying at a provider that "
                f"takes {opts.provider_latency} ms per charge (production gunicorn, "
                f"2 workers x 4 threads): answers {json.dumps(load['statuses'])}; pay p50 "
                f"{load['p50_pay_s']:.2f} s, slowest {load['max_pay_s']:.2f} s (bound: the "
                f"client's read timeout x attempts + backoff = {PAY_BOUND_SECONDS:.1f} s); "
                f"slowest busy answer {load['max_busy_s'] * 1000:.0f} ms. GET cart rate with "
                f"pays / without, in {len(load.get('pair_ratios', []))} pairs of "
                f"{opts.slow_window:g} s windows: {load.get('pair_ratios')}."
            )
    for note in section.notes:
        lines.append(f"Note: {note}")
    lines.append(f"<!-- bench:{section_id(section.db, opts)}:end -->")
    return "\n".join(lines) + "\n"


def cpu_cell(result: Result) -> str:
    """API workers' CPU per request (PostgreSQL backends' added, or the provider's)."""
    group = "provider" if result.name == "provider" else "api"
    cell = f"{cpu_ms(result.raw, group):.2f}"
    if result.name == "provider":
        return cell + " (provider)"
    pg = cpu_ms(result.raw, "pg")
    return cell + (f" + {pg:.2f} PG" if pg >= 0.005 else "")


def section_id(db: str, opts: argparse.Namespace) -> str:
    """The markers of a database's section in --output; a run with --provider-latency
    (a what-if) has its own section, so it never replaces the plain results."""
    return db + (f"-provider-{opts.provider_latency}ms" if opts.provider_latency else "")


def write_output(path: Path, sections: dict[str, str]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    for db, block in sections.items():
        pattern = re.compile(
            rf"<!-- bench:{db}:start -->.*?<!-- bench:{db}:end -->\n?", flags=re.DOTALL
        )
        match = pattern.search(text)
        if match:
            text = text[: match.start()] + block + text[match.end() :]
        else:
            text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


# --- Main ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load benchmark of the API (see the module docstring)."
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--duration", type=float, default=6, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--max-others",
        type=float,
        default=15,
        help="%% of the CPU other processes may use during a run before it is repeated",
    )
    parser.add_argument("--retries", type=int, default=3, help="repeats of a disturbed run")
    parser.add_argument(
        "--budget",
        type=float,
        default=1200,
        help="seconds the whole run should take: repeats stop when they would not fit",
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help="API server configurations: sync (2 sync workers), prod (CoreRoot/gunicorn.py)",
    )
    parser.add_argument("--output", type=Path, help="markdown file to update")
    parser.add_argument("--json", type=Path, help="write the raw results as JSON too")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/"),
        help="server for --db postgres; a database bench_<pid> is created and dropped",
    )
    parser.add_argument(
        "--provider-latency",
        type=int,
        default=0,
        metavar="MS",
        help="what if: the fake provider answers every charge after MS milliseconds",
    )
    parser.add_argument(
        "--slow-pays",
        type=int,
        default=16,
        metavar="N",
        help="with --provider-latency: clients paying while GET cart is measured",
    )
    parser.add_argument(
        "--slow-pairs",
        type=int,
        default=5,
        metavar="N",
        help="with --provider-latency: pairs of windows (no pays, pays) GET cart is measured in",
    )
    parser.add_argument(
        "--slow-window",
        type=float,
        default=5,
        metavar="S",
        help="with --provider-latency: seconds of each measured window",
    )
    parser.add_argument(
        "--no-unlimited",
        action="store_true",
        help="with --provider-latency: skip the comparison without an in-flight limit",
    )
    parser.add_argument(
        "--only", default="", help="scenarios to run (bare always runs), e.g. provider,pay"
    )
    parser.add_argument("--profile", default="", help="scenarios to py-spy, e.g. list_10000,pay")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    opts = parser.parse_args(argv)
    opts.profile = {name for name in opts.profile.split(",") if name}
    opts.only = {name for name in opts.only.split(",") if name}
    opts.configs = [name for name in opts.configs.split(",") if name]
    if not opts.configs or set(opts.configs) - set(CONFIGS):
        parser.error(f"--configs: one or more of {', '.join(CONFIGS)}")
    if opts.only:
        opts.only.add("bare")
    unknown = (opts.profile | opts.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if opts.duration < 1 or opts.connections < 1 or opts.warmup < 0:
        parser.error("--duration >= 1, --connections >= 1, --warmup >= 0")
    return opts


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.monotonic()
    wrk = Wrk(ensure_wrk(), opts.connections)
    profiler = Profiler(opts.profile)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine(),
    }
    databases = ["sqlite", "postgres"] if opts.db == "both" else [opts.db]
    sections: dict[str, Section] = {}
    try:
        for index, db in enumerate(databases):
            share = (opts.budget - (time.monotonic() - started)) / (len(databases) - index)
            run = DatabaseRun(db, opts, wrk, profiler, share)
            try:
                run.start()
                section = run.run()
                sections[db] = section
            finally:
                if wrk.current is not None:
                    wrk.current.kill()
                run.stop()
            for config, results in section.results.items():
                apply_targets(results, section.checks[config])
    except KeyboardInterrupt:
        print("\ninterrupted: every process started here was stopped", file=sys.stderr)
        return 130
    blocks = {
        section_id(db, opts): markdown(section, opts, meta) for db, section in sections.items()
    }
    print()
    for block in blocks.values():
        print(block)
    if opts.output:
        write_output(opts.output, blocks)
        print(f"updated {opts.output}")
    if opts.json:
        opts.json.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "sections": {
                        db: {
                            "results": {
                                config: {n: r.__dict__ for n, r in results.items()}
                                for config, results in s.results.items()
                            },
                            "checks": s.checks,
                            "info": s.info,
                            "notes": s.notes,
                        }
                        for db, s in sections.items()
                    },
                },
                indent=2,
                default=str,
            )
        )
    elapsed = time.monotonic() - started
    not_done = [
        f"{DB_LABELS[db]} {config} {r.name}"
        for db, s in sections.items()
        for config, results in s.results.items()
        for r in results.values()
        if r.done is False
    ]
    print(
        f"total time {elapsed:.0f} s; neither target met nor within {LIMIT_FACTOR:g}× of the "
        f"limit: {', '.join(not_done) or 'none'}"
    )
    invalid = [db for db, s in sections.items() if not s.valid]
    if invalid:
        print(f"INVALID run on {', '.join(invalid)}: errors, lost updates or a short pool")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
