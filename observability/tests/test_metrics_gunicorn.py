"""The service as deployed (gunicorn with CoreRoot/gunicorn.py, two worker processes, JSON
logs): /metrics adds up every worker's counters whichever worker answers the scrape, and
a pay request is followed by its id through the JSON log, the provider's journal and the
payment row."""

import json
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, start_process, stop_process, wait_until_answers
from payments.models import Payment
from tests.test_e2e import subprocess_database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAYS = 6
MAX_PAYS = 60
PAY_ROUTE = {"method": "POST", "route": "/api/cart/{pk}/pay/", "status": "200"}


@pytest.fixture
def deployed_api(fake_provider, tmp_path):
    port = free_port()
    log = tmp_path / "api.log"
    env = {
        "DATABASE_URL": subprocess_database_url(),
        "FAKE_PAYMENT_API": fake_provider.url.split("://", 1)[1],
        "ENV": "DEV",
        "LOG_FORMAT": "json",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "RATELIMIT_PAY_PER_CART": "off",
    }
    process = start_process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:CoreRoot.gunicorn",
            f"--error-logfile={log}",
            "--capture-output",  # Django's log (stderr) goes to the same file
            "CoreRoot.wsgi",
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health/ready/", process)
        yield url, log
    finally:
        stop_process(process)


def scrape(url: str) -> dict[tuple, float]:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def workers_that_paid(log) -> set[int]:
    """The worker processes that logged an answered pay request."""
    return {
        entry["process"]
        for entry in (json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{")
        if entry.get("route") == "/api/cart/{pk}/pay/" and entry.get("status") == 200
    }


def test_metrics_add_up_every_worker_and_a_pay_request_is_followed_by_its_id(
    deployed_api, fake_provider
):
    url, log = deployed_api
    session = requests.Session()
    carts, paid = [], []
    # Each pay on a new connection, which the kernel hands to either worker; on a busy
    # machine one of them may take several in a row: pay on until both have taken some.
    while len(paid) < PAYS or (len(workers_that_paid(log)) < 2 and len(paid) < MAX_PAYS):
        created = session.post(
            f"{url}/api/cart/", json={"total": "1.00", "currency": "USD", "items_number": 1}
        )
        assert created.status_code == 201, created.text
        carts.append(created.json()["id"])
        n = len(paid)
        paid.append(
            requests.post(
                f"{url}/api/cart/{carts[n]}/pay/", json={}, headers={"X-Request-ID": f"p-{n}"}
            )
        )
    pays = len(paid)
    assert [r.status_code for r in paid] == [200] * pays
    assert [r.headers["X-Request-ID"] for r in paid] == [f"p-{n}" for n in range(pays)]
    assert len(workers_that_paid(log)) == 2, "both workers answered pays"

    scrapes = [scrape(url) for _ in range(6)]

    for samples in scrapes:  # the sums of both workers' counts, whichever answers
        assert value(samples, "http_requests_total", **PAY_ROUTE) == pays
        assert value(samples, "payment_attempts_started_total") == pays
        success = {"status": "success", "decline_code": "", "error_code": ""}
        assert value(samples, "payment_outcomes_total", **success) == pays
        charge = {"operation": "POST /request_payment"}
        assert value(samples, "payment_provider_request_duration_seconds_count", **charge) == pays

    # One id through the API's JSON log, the provider's journal and the payment row.
    cart = carts[3]
    [line] = [
        json.loads(line)
        for line in log.read_text().splitlines()
        if line.startswith("{") and '"p-3"' in line
    ]
    assert (line["level"], line["route"], line["status"], line["cart_id"]) == (
        "INFO",
        "/api/cart/{pk}/pay/",
        200,
        cart,
    )
    [charge] = [e for e in fake_provider.journal() if e["request_id"] == "p-3"]
    assert charge["body"]["cart_id"] == cart
    assert Payment.objects.get(cart_id=cart).request_id == "p-3"


def test_metrics_still_answer_with_the_database_away(tmp_path):
    port = free_port()
    nothing_listens = free_port()
    env = {
        "DATABASE_URL": f"postgres://shop@127.0.0.1:{nothing_listens}/shop",
        "ENV": "DEV",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    process = start_process(
        [sys.executable, "-m", "gunicorn", "-c", "python:CoreRoot.gunicorn", "CoreRoot.wsgi"],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{url}/health/", process)  # liveness: no database
        requests.get(f"{url}/health/", timeout=10)
        samples = scrape(url)
    finally:
        stop_process(process)

    route = {"method": "GET", "route": "/health/", "status": "200"}
    assert value(samples, "http_requests_total", **route) >= 2
    assert not any(name.startswith("events_outbox") for name, _ in samples)
    assert not any(name == "payment_attempts_open" for name, _ in samples)
