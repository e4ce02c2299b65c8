"""End to end: real HTTP to the API served by gunicorn, as a storefront talks to it.

The API runs in separate gunicorn processes (2 sync workers each) on the test database
pytest-django created, so tests use `django_db(transaction=True)`: what a test writes is
committed and the servers see it, and the servers' writes are visible here. They charge
through the real fake provider process (`fake_provider`), whose ledger each test checks.

Two API instances are started once for the module. Each test checks afterwards that
neither wrote an error or a traceback to its log. The last test runs `scripts/dev.py`
(`make run`) and stops it with SIGINT.
"""

import functools
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.db import connection
from django.utils import timezone

from common.testing import FakeProvider, error_of, response_json
from conftest import (
    ROOT,
    free_port,
    process_env,
    start_process,
    stop_process,
    wait_until_answers,
)
from payments.models import Payment

pytestmark = pytest.mark.e2e

RACERS = 16
# Lines of a server log that mean something went wrong.
LOG_PROBLEMS = ("Traceback", "ERROR", "CRITICAL", "database is locked")


@dataclass
class Api:
    """One gunicorn instance of the API."""

    url: str
    process: subprocess.Popen
    log: Path


def subprocess_database_url() -> str:
    """DATABASE_URL of the database pytest-django created, for another process."""
    db = connection.settings_dict
    if db["ENGINE"] == "common.sqlite":
        return f"sqlite:///{db['NAME']}"  # NAME is an absolute path: a file test database
    assert db["ENGINE"] == "django.db.backends.postgresql", db["ENGINE"]
    user = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        user += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db["HOST"] or "", safe="")  # a socket directory is %-encoded
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{user}@{host}{port}/{quote(db['NAME'], safe='')}"


def start_api(env: dict, log: Path) -> Api:
    port = free_port()
    process = start_process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            f"--error-logfile={log}",
            "--capture-output",  # Django's log (stderr) goes to the same file
            # Each instance on its own: by default every gunicorn 27 master takes the
            # same control socket, ~/.gunicorn/gunicorn.ctl.
            "--no-control-socket",
            "CoreRoot.wsgi",
        ],
        env=env,
    )
    return Api(f"http://127.0.0.1:{port}", process, log)


def warm_up(servers: list[Api]) -> None:
    """Load the URL conf and open a database connection in every worker: a race's
    first requests must not be the slow first requests of a worker."""
    urls = [f"{api.url}/health/ready/" for api in servers for _ in range(8)]
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        statuses = {r.status_code for r in pool.map(lambda u: requests.get(u, timeout=10), urls)}
    assert statuses == {200}


@pytest.fixture(scope="module")
def api_servers(django_db_setup, fake_provider_url, tmp_path_factory):
    """Two API instances under gunicorn, on the test database, charging the fake provider.

    Depends on `django_db_setup` so they stop before the test database is destroyed.
    """
    env = {
        "DATABASE_URL": subprocess_database_url(),
        "FAKE_PAYMENT_API": fake_provider_url.split("://", 1)[1],
        "ENV": "DEV",
        "PAYMENT_API_READ_TIMEOUT": "2",
        # The races send 16 pay requests for one cart at once: above the default limit.
        "RATELIMIT_PAY_PER_CART": "100/m",
    }
    logs = tmp_path_factory.mktemp("gunicorn")
    servers: list[Api] = []
    try:
        for n in range(2):
            servers.append(start_api(env, logs / f"api-{n}.log"))
        for api in servers:
            try:
                wait_until_answers(f"{api.url}/health/ready/", api.process)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; its log:\n{api.log.read_text()}") from exc
        warm_up(servers)
        yield servers
    finally:
        for api in servers:
            stop_process(api.process)


@pytest.fixture
def apis(api_servers, fake_provider):
    """The API instances, with the provider reset; fails if a server logged an error."""
    starts = [api.log.stat().st_size for api in api_servers]
    yield api_servers
    for api, start in zip(api_servers, starts, strict=True):
        with api.log.open(errors="replace") as log:
            log.seek(start)
            written = log.read()
        assert not any(problem in written for problem in LOG_PROBLEMS), (
            f"{api.url} logged:\n{written}"
        )


def post(url: str, body: dict | None = None, **headers) -> requests.Response:
    return requests.post(url, json=body or {}, headers=headers, timeout=30)


def create_cart(api: Api, total: str) -> str:
    response = post(f"{api.url}/api/cart/", {"total": total, "currency": "USD", "items_number": 3})
    assert response.status_code == 201, response.text
    return response_json(response)["id"]


def pay(api: Api, cart_id: str, key: str | None = None, **body) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return post(f"{api.url}/api/cart/{cart_id}/pay/", body, **headers)


def race(calls: list) -> list[requests.Response]:
    """Run every call at once, each in its own thread and TCP connection."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def summary(responses: list[requests.Response]) -> list[tuple[int, str]]:
    return [(r.status_code, r.text[:300]) for r in responses]


def provider_requests_for(provider: FakeProvider, cart_id: str) -> list[dict]:
    """Every charge request the provider received for the cart, answered or not."""
    return [
        entry
        for entry in provider.journal()
        if isinstance(entry["body"], dict) and entry["body"].get("cart_id") == cart_id
    ]


@pytest.mark.django_db(transaction=True)
def test_storefront_flow_discount_then_pay_once(apis, fake_provider):
    api = apis[0]
    ended = (timezone.now() + timedelta(days=30)).isoformat()
    created = post(
        f"{api.url}/api/discount/",
        {"code": "E2EFIVE", "value": 5, "description": "Five off", "ended": ended},
    )
    assert created.status_code == 201, created.text
    discount = response_json(created)
    assert (discount["code"], discount["value"], discount["times_used"]) == ("E2EFIVE", 5, 0)

    cart_id = create_cart(api, "20")
    applied = post(f"{api.url}/api/cart/{cart_id}/apply_discount/", {"code": "e2efive"})
    assert applied.status_code == 200, applied.text
    cart = response_json(applied)
    assert cart["discount"]["id"] == discount["id"]
    amounts = ("subtotal", "amount_discounted", "total", "total_discounted")
    assert [str(cart[name]) for name in amounts] == ["20.00", "5.00", "15.00", "15.00"]

    paid = pay(api, cart_id, key="order-1")
    assert paid.status_code == 200, paid.text
    body = response_json(paid)
    payment = body["payment"]
    assert (payment["status"], str(payment["amount"]), payment["currency"]) == (
        "success",
        "15.00",
        "USD",
    )
    assert payment["idempotency_key"] == f"cart-{cart_id}-order-1"
    assert body["cart"]["payment_status"] == "success"

    read = requests.get(f"{api.url}/api/cart/{cart_id}/", timeout=10)
    assert read.status_code == 200
    cart = response_json(read)
    assert cart["payment_status"] == "success"
    assert [str(cart[name]) for name in amounts] == ["20.00", "5.00", "15.00", "15.00"]
    assert [(p["id"], p["status"], str(p["amount"])) for p in cart["payments"]] == [
        (payment["id"], "success", "15.00")
    ]
    used = requests.get(f"{api.url}/api/discount/{discount['id']}/", timeout=10)
    assert response_json(used)["times_used"] == 1

    [charge] = fake_provider.charges(cart_id)
    assert (charge["amount"], charge["currency"]) == (1500, "USD")
    assert charge["id"] == payment["provider_payment_id"]
    assert charge["idempotency_key"] == payment["idempotency_key"]

    # The same request again is answered from the ledger; a new one finds the cart paid.
    replayed = pay(apis[1], cart_id, key="order-1")
    assert replayed.status_code == 200, replayed.text
    assert response_json(replayed)["payment"]["id"] == payment["id"]
    again = pay(api, cart_id, key="order-2")
    assert again.status_code == 409, again.text
    assert error_of(again)["code"] == "cart_paid"
    assert len(fake_provider.charges(cart_id)) == 1
    assert len(provider_requests_for(fake_provider, cart_id)) == 1


@pytest.mark.django_db(transaction=True)
def test_declined_card_then_another_card_pays(apis, fake_provider):
    api = apis[1]
    cart_id = create_cart(api, "25")

    declined = pay(api, cart_id)
    assert declined.status_code == 402, declined.text
    body = response_json(declined)
    assert body["error"]["code"] == "card_declined"
    assert body["error"]["decline_code"] == "insufficient_funds"
    assert body["cart"]["payment_status"] == "failed"
    assert (body["payment"]["status"], str(body["payment"]["amount"])) == ("failed", "25.00")
    assert fake_provider.charges(cart_id) == []

    paid = pay(api, cart_id, payment_method="pm_card_visa")
    assert paid.status_code == 200, paid.text
    body = response_json(paid)
    assert body["cart"]["payment_status"] == "success"
    assert (body["payment"]["status"], body["payment"]["payment_method"]) == (
        "success",
        "pm_card_visa",
    )
    [charge] = fake_provider.charges(cart_id)
    assert (charge["amount"], charge["payment_method"]) == (2500, "pm_card_visa")
    assert [p["payment_status"] for p in fake_provider.payments(cart_id)] == ["failed", "success"]
    cart = response_json(requests.get(f"{api.url}/api/cart/{cart_id}/", timeout=10))
    assert sorted(p["status"] for p in cart["payments"]) == ["failed", "success"]


def race_to_pay(apis: list[Api], cart_id: str, key: str | None) -> list[requests.Response]:
    """RACERS pay requests for one cart at once, alternating between the instances."""
    return race([functools.partial(pay, apis[n % 2], cart_id, key) for n in range(RACERS)])


def assert_charged_once(apis: list[Api], provider: FakeProvider, cart_id: str) -> None:
    cart = response_json(requests.get(f"{apis[0].url}/api/cart/{cart_id}/", timeout=10))
    assert cart["payment_status"] == "success"
    rows = list(Payment.objects.filter(cart_id=cart_id).values_list("status", "amount"))
    assert rows == [("success", Decimal("10.00"))]
    assert [charge["amount"] for charge in provider.charges(cart_id)] == [1000]
    assert len(provider_requests_for(provider, cart_id)) == 1


@pytest.mark.django_db(transaction=True)
def test_simultaneous_payments_on_two_instances_charge_once(apis, fake_provider):
    cart_id = create_cart(apis[0], "10")
    fake_provider.fault("latency", count=None, delay_ms=1000)

    responses = race_to_pay(apis, cart_id, key=None)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (RACERS - 1), summary(responses)
    assert {error_of(r)["code"] for r in responses if r.status_code == 409} == {
        "cart_payment_in_progress"
    }, summary(responses)
    assert_charged_once(apis, fake_provider, cart_id)


@pytest.mark.django_db(transaction=True)
def test_simultaneous_payments_with_one_idempotency_key_charge_once(apis, fake_provider):
    cart_id = create_cart(apis[0], "10")
    fake_provider.fault("latency", count=None, delay_ms=1000)

    responses = race_to_pay(apis, cart_id, key="checkout-1")

    assert {r.status_code for r in responses} <= {200, 409}, summary(responses)
    ok = [response_json(r)["payment"]["id"] for r in responses if r.status_code == 200]
    assert ok, summary(responses)
    assert len(set(ok)) == 1, summary(responses)
    assert {error_of(r)["code"] for r in responses if r.status_code == 409} <= {
        "cart_payment_in_progress"
    }, summary(responses)
    assert_charged_once(apis, fake_provider, cart_id)


@pytest.mark.django_db(transaction=True)
def test_refunds_racing_on_two_instances_never_exceed_the_charge(apis, fake_provider):
    cart_id = create_cart(apis[0], "10")
    assert pay(apis[0], cart_id).status_code == 200
    fake_provider.fault("latency", count=None, delay_ms=100)

    responses = race(
        [
            functools.partial(post, f"{apis[n % 2].url}/api/cart/{cart_id}/refund/", {"amount": 1})
            for n in range(RACERS)
        ]
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [409] * (RACERS - 10), summary(responses)
    assert {error_of(r)["code"] for r in responses if r.status_code == 409} == {
        "refund_exceeds_captured"
    }, summary(responses)
    cart = response_json(requests.get(f"{apis[0].url}/api/cart/{cart_id}/", timeout=10))
    assert (cart["payment_status"], str(cart["amount_refunded"])) == ("refunded", "10.00")
    assert len(cart["refunds"]) == 10
    [charge] = fake_provider.charges(cart_id)
    assert sum(r["amount"] for r in fake_provider.refunds(charge["id"])) == 1000


def wait_until_printed(output: Path, text: str, process: subprocess.Popen, timeout=20.0):
    deadline = time.monotonic() + timeout
    while text not in output.read_text(errors="replace"):
        assert process.poll() is None, output.read_text(errors="replace")
        assert time.monotonic() < deadline, output.read_text(errors="replace")
        time.sleep(0.05)


def test_dev_runner_serves_both_and_stops_both_on_sigint(tmp_path):
    """`make run`: scripts/dev.py starts the provider, the API and the worker, wired
    together."""
    env = process_env({"ENV": "DEV", "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}"})
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    api_port = free_port()
    fake_port = free_port()
    while fake_port == api_port:
        fake_port = free_port()
    api_url, fake_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{fake_port}"
    output = tmp_path / "dev.log"
    with output.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "scripts/dev.py"],
            cwd=ROOT,
            env={**env, "HOST": "127.0.0.1", "PORT": str(api_port), "FAKE_PORT": str(fake_port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answers(f"{fake_url}/inspect", runner)
        wait_until_answers(f"{api_url}/health/ready/", runner)
        wait_until_printed(output, f"API: {api_url}/", runner)
        assert f"fake payment provider: {fake_url}" in output.read_text(errors="replace")
        wait_until_printed(output, "Starting worker", runner)  # the background worker too

        # The API charges through the provider the runner started.
        created = post(f"{api_url}/api/cart/", {"total": 10, "currency": "USD", "items_number": 1})
        cart_id = response_json(created)["id"]
        paid = post(f"{api_url}/api/cart/{cart_id}/pay/")
        assert paid.status_code == 200, paid.text
        assert [c["amount"] for c in FakeProvider(fake_url).charges(cart_id)] == [1000]

        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=10) == 0, output.read_text(errors="replace")
    finally:
        if runner.poll() is None:
            stop_process(runner)
    for url in (f"{api_url}/health/", f"{fake_url}/inspect"):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)
