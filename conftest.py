"""Fixtures shared by every test: API clients for each kind of caller, and the real fake
payment provider process for integration tests. Browser tests (`tests/browser/`) need
Chromium: without one they are deselected on a developer's machine, and fail in CI."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from common.testing import FakeProvider

ROOT = Path(__file__).resolve().parent


def require_local_service(name: str, available: bool) -> None:
    """A test that needs a service of this machine (Redis, nginx) fails without it in CI
    (CI=true) and is skipped, saying why, on a developer machine that lacks it."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI but is not available")
    pytest.skip(f"{name} is not available on this machine")


REDIS_TEST_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def pytest_configure(config):
    """The workers of one parallel run (`pytest -n 2`) share one Redis: each counts its
    rate limits under its own key prefix, so a worker never sees, or clears, the counters
    of another worker's test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        from django.conf import settings

        ratelimit = settings.CACHES["ratelimit"]
        ratelimit["KEY_PREFIX"] = f"{ratelimit.get('KEY_PREFIX') or 'ratelimit'}-{worker}"


# pytest-xdist's scope schedulers queue each scope's tests by node id, and Schemathesis
# gives every API operation's item of `test_operation` the same one: under them all but
# one operation would be left out without a word (the run still passes).
SCOPE_SCHEDULERS = ("loadscope", "loadfile", "loadgroup")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Refuse a parallel run that would silently skip tests: a scope scheduler
    (`--dist loadgroup`, …) with tests sharing a node id. `-n 2` (`--dist load`) queues
    tests by their place in the collection and runs every one."""
    dist = node.config.getoption("dist")
    shared = sorted(nodeid for nodeid, count in Counter(ids).items() if count > 1)
    if dist in SCOPE_SCHEDULERS and shared:
        pytest.exit(
            f"--dist {dist} would run only one of the tests sharing each of these node ids: "
            f"{', '.join(shared)}. Use -n 2 alone (--dist load).",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """One SQLite test database file per test process, named when its session starts:
    two runs, the workers of `pytest -n 2` and processes forked from a running session
    (mutmut's) each get their own file. PostgreSQL test databases keep pytest-django's
    per-worker suffix (test_<name>_gw0)."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "common.sqlite":
        folder = Path(database["TEST"]["NAME"]).parent
        database["TEST"]["NAME"] = str(folder / f"test_db_{os.getpid()}.sqlite3")


@pytest.fixture
def redis_url() -> str:
    """A real Redis (REDIS_URL, else 127.0.0.1:6379/0), flushed of nothing: tests use
    keys of their own."""
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1).ping()
        up = True
    except redis.RedisError:
        up = False
    require_local_service(f"Redis at {REDIS_TEST_URL}", up)
    return REDIS_TEST_URL


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Every test starts with empty rate-limit counters (local memory, or Redis when
    REDIS_URL is set, as in Compose: then only the counters' keys are deleted)."""
    from django.core.cache import caches

    cache = caches["ratelimit"]
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()


@pytest.fixture
def frozen_limiter_clock(monkeypatch):
    """The rate limiter's clock (only its own) stopped: a test's requests all fall into one
    window, wherever the real time is. Each key's windows start at a fixed second of the
    minute, so a few requests against a real clock split between two windows in some
    runs and the 429 a test expects never comes."""
    from common import ratelimit

    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: 1_000_000.0))


@pytest.fixture
def no_rate_limits(settings):
    """Every limit of settings.RATE_LIMITS off, for tests that send many requests."""
    settings.RATE_LIMITS = dict.fromkeys(settings.RATE_LIMITS, "off")


def find_chromium() -> str | None:
    """Debian's Chromium, or another Chrome the machine has (GitHub's runners ship one)."""
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def pytest_collection_modifyitems(config, items):
    """No Chromium on a developer's machine: leave the browser tests out and say so. In
    CI (CI=true) they stay, and fail loudly: a browser suite that never runs is no test."""
    if find_chromium() or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return
    browser = [item for item in items if item.get_closest_marker("browser")]
    if browser:
        items[:] = [item for item in items if not item.get_closest_marker("browser")]
        config.hook.pytest_deselected(items=browser)
        config.browser_deselected = len(browser)


def pytest_terminal_summary(terminalreporter, config):
    deselected = getattr(config, "browser_deselected", 0)
    if deselected:
        terminalreporter.write_line(
            f"{deselected} browser tests deselected: no Chromium here "
            "(apt-get install -y chromium, then make test-browser).",
            yellow=True,
        )


@pytest.fixture
def api_client() -> APIClient:
    """An anonymous caller, as the tutorial's tests and a storefront are."""
    return APIClient()


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(
        username="staff", password="a-long-staff-password", is_staff=True
    )


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def prod_access(settings):
    """Turn on the ENV=PROD access rules for one test."""
    settings.REQUIRE_STAFF_FOR_MANAGEMENT = True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answers(url: str, process: subprocess.Popen | None = None, timeout=20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


# A pay waits on the provider for three calls at most, each within the payment client's
# worst case, (connect + read timeout) x (retries + 1) plus the backoffs: with an open
# attempt of another payment method, the ledger lookup that settles it first; the
# charge; after a failed charge, the ledger lookup by its key (payments/services.py).
PAY_PROVIDER_CALLS = 3


def pay_worst_case_seconds(**env: str) -> float:
    """Seconds a pay may take with the settings' defaults (and `env` over them): what
    waits for its answer (the proxies, a stopping gunicorn) must wait longer."""
    code = (
        "from django.conf import settings as s; print((s.PAYMENT_API_CONNECT_TIMEOUT"
        " + s.PAYMENT_API_READ_TIMEOUT) * (s.PAYMENT_API_MAX_RETRIES + 1)"
        " + s.PAYMENT_API_RETRY_BACKOFF * (2**s.PAYMENT_API_MAX_RETRIES - 1))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PAYMENT_API_", "ENV"))}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env={**clean, "ENV": "DEV", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return PAY_PROVIDER_CALLS * float(result.stdout)


def gunicorn_setting(name: str, **env: str):
    """A setting of CoreRoot/gunicorn.py as gunicorn reads it with `env` (and no
    GUNICORN_* variable of this process)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    code = f"import json, CoreRoot.gunicorn as g; print(json.dumps(g.{name}))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def process_env(env: dict | None = None) -> dict:
    """This process's environment with `env` over it, for a process a test starts: an
    API server among them counts its rate limits under a key prefix of its own. With
    REDIS_URL set (CI's PostgreSQL pass) every server of the run shares one Redis, the
    workers of `pytest -n 2` included: under one prefix, the requests of one server's
    tests counted against the limits of every other's."""
    own = {"RATELIMIT_KEY_PREFIX": f"ratelimit-test-{uuid.uuid4().hex}"}
    return {**os.environ, **own, **(env or {})}


def start_process(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=process_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def fake_provider_url():
    """Base URL of a real fake provider process.

    Uses the one FAKE_PAYMENT_API names in the environment when it answers (Compose
    starts one); otherwise starts `fake_payment_server` under gunicorn on a free port
    for the session, exactly as Compose runs it. The workers of a parallel run
    (`pytest -n 2`) each start their own: the provider keeps one ledger and one fault
    queue, which every test resets, so two workers sharing it would undo each other.
    """
    configured = os.environ.get("FAKE_PAYMENT_API")
    if configured and not os.environ.get("PYTEST_XDIST_WORKER"):
        url = configured if "://" in configured else f"http://{configured}"
        try:
            wait_until_answers(f"{url}/inspect", timeout=3)
        except RuntimeError:
            pass
        else:
            yield url
            return
    port = free_port()
    process = start_process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers=1",
            "--threads=16",
            "--no-control-socket",
            f"--bind=127.0.0.1:{port}",
            "fake_payment_server:app",
        ],
        env={"FAKE_PAYMENT_CARD_LIMIT": "20.00", "FAKE_PAYMENT_BALANCE": "20.00"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/inspect", process)
        yield url
    finally:
        stop_process(process)


@pytest.fixture
def fake_provider(fake_provider_url, settings) -> FakeProvider:
    """The fake provider, reset, with the service pointed at it and short timeouts."""
    settings.FAKE_PAYMENT_API = fake_provider_url.split("://", 1)[1]
    settings.PAYMENT_API_BASE_URL = fake_provider_url
    settings.PAYMENT_API_READ_TIMEOUT = 1.0
    settings.PAYMENT_API_RETRY_BACKOFF = 0.01
    provider = FakeProvider(fake_provider_url)
    provider.reset()
    yield provider
    provider.reset()
