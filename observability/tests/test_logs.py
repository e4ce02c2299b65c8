"""One log line per request, with the level an operator needs, and every line of the
request carrying its id; JSON lines with ENV=PROD."""

import json
import logging
import os
import subprocess
import sys

import pytest

from cart.tests.factories import CartFactory
from conftest import ROOT
from observability.middleware import route_template

pytestmark = pytest.mark.django_db


def request_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.request"]


def test_a_request_is_one_line_with_route_template_status_duration_and_cart(api_client, caplog):
    cart = CartFactory(total="10.00")

    with caplog.at_level(logging.INFO):
        api_client.get(f"/api/cart/{cart.pk}/", HTTP_X_REQUEST_ID="read-1")

    [line] = request_lines(caplog)
    assert line.levelno == logging.INFO
    assert (line.method, line.route, line.path, line.status) == (
        "GET",
        "/api/cart/{pk}/",
        f"/api/cart/{cart.pk}/",
        200,
    )
    assert (line.request_id, line.cart_id, line.error_code) == ("read-1", str(cart.pk), None)
    assert 0 < line.duration_ms < 10_000


def test_a_created_cart_is_named_on_its_line(api_client, caplog):
    with caplog.at_level(logging.INFO):
        response = api_client.post(
            "/api/cart/", {"total": "5.00", "currency": "USD", "items_number": 1}
        )

    [line] = request_lines(caplog)
    assert (line.route, line.status, line.cart_id) == ("/api/cart/", 201, response.json()["id"])


def test_a_refused_request_is_info_with_its_error_code(api_client, caplog):
    with caplog.at_level(logging.INFO):
        api_client.post("/api/cart/", {"total": "-1", "currency": "USD", "items_number": 1})

    [line] = request_lines(caplog)
    assert (line.levelno, line.status, line.error_code) == (logging.INFO, 400, "min_value")


@pytest.mark.integration
def test_provider_trouble_answered_as_documented_is_a_warning_not_an_error(
    api_client, fake_provider, caplog
):
    cart = CartFactory(total="10.00")
    fake_provider.fault("http_503", count=None)

    with caplog.at_level(logging.INFO):
        response = api_client.post(f"/api/cart/{cart.pk}/pay/", {})

    # 503 (nothing charged) or 504 (outcome unknown): both are documented answers.
    assert response.status_code in (503, 504)
    [line] = request_lines(caplog)
    assert (line.levelno, line.error_code) == (logging.WARNING, response.json()["error"]["code"])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_bug_is_an_error_with_its_traceback(api_client, caplog, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("cart.viewsets.cart_create", broken)
    api_client.raise_request_exception = False

    with caplog.at_level(logging.INFO):
        response = api_client.post(
            "/api/cart/", {"total": "5.00", "currency": "USD", "items_number": 1}
        )

    assert response.status_code == 500
    [line] = request_lines(caplog)
    assert line.levelno == logging.ERROR
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno == logging.ERROR]
    assert tracebacks
    assert "a bug" in str(tracebacks[0].exc_info[1])


@pytest.mark.parametrize(
    ("route", "template"),
    [
        (r"api/^cart/(?P<pk>[^/.]+)/pay/?$", "/api/cart/{pk}/pay/"),
        (r"api/^cart/?$", "/api/cart/"),
        (r"api/^cart/(?P<pk>[^/.]+)\.(?P<format>[a-z0-9]+)/?$", "/api/cart/{pk}.{format}/"),
        ("health/ready/", "/health/ready/"),
    ],
)
def test_route_templates_name_the_route_not_the_object(route, template, rf):
    request = rf.get("/")
    request.resolver_match = type("Match", (), {"route": route})()

    assert route_template(request) == template


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"ENV", "LOG_FORMAT"}}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "CoreRoot.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


LOG_ONE_LINE = (
    "import django, logging\n"
    "django.setup()\n"
    "from observability.context import request_id_bound\n"
    "with request_id_bound('job-9'):\n"
    "    logging.getLogger('payments').warning('provider slow')\n"
)
PROD = {
    "ENV": "PROD",
    "SECRET_KEY": "x7#kq2!v9Lm$3pZr8Wt&cN5yB1fHj6Dg0sQa4Ue+Rk=Xo-Pi_wYe",
    "ALLOWED_HOSTS": "shop.example.com",
    "REAL_PAYMENT_API": "https://payments.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def test_prod_writes_every_line_as_json_with_the_request_id():
    result = run_python(LOG_ONE_LINE, **PROD)

    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "payments",
        "provider slow",
    )
    assert line["request_id"] == "job-9"
    assert "time" in line


def test_dev_writes_lines_for_a_person_with_the_request_id():
    result = run_python(LOG_ONE_LINE, ENV="DEV")

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("WARNING payments [job-9] provider slow")


def test_a_command_run_with_gunicorns_metrics_directory_unmade_still_starts(tmp_path):
    # migrate, reconcile_payments and the worker share the api's environment on
    # Kubernetes, PROMETHEUS_MULTIPROC_DIR included, before gunicorn has made it.
    directory = tmp_path / "not-made-yet"

    result = run_python(
        "import django; django.setup(); from observability import metrics; print('ok')",
        ENV="DEV",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )

    assert result.returncode == 0, result.stderr
    assert directory.is_dir()


def test_an_empty_metrics_directory_means_one_process_as_env_example_passes_it(tmp_path):
    # prometheus_client takes the variable's mere presence for multiprocess mode: set
    # empty (a copied .env.example, Compose's worker), it wrote counter_<pid>.db files
    # into the working directory of `make run` and of every command.
    code = (
        "import os, django; django.setup(); from observability import metrics;"
        "metrics.HTTP_REQUESTS.labels('GET', '/x', '200').inc();"
        "print(os.listdir('.'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "CoreRoot.settings",
            "ENV": "DEV",
            "PROMETHEUS_MULTIPROC_DIR": "",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_empty_log_settings_mean_the_defaults_as_compose_and_env_example_pass_them():
    # Compose passes `LOG_FORMAT: ${LOG_FORMAT:-}` and .env.example has `LOG_FORMAT=`:
    # empty is "not set", so PROD still logs JSON and DEV text, at INFO.
    prod = run_python(LOG_ONE_LINE, **PROD, LOG_FORMAT="", LOG_LEVEL="")
    dev = run_python(LOG_ONE_LINE, ENV="DEV", LOG_FORMAT="", LOG_LEVEL="")

    assert prod.returncode == 0, prod.stderr
    assert json.loads(prod.stderr.strip().splitlines()[-1])["message"] == "provider slow"
    assert dev.returncode == 0, dev.stderr
    assert dev.stderr.strip().endswith("WARNING payments [job-9] provider slow")
