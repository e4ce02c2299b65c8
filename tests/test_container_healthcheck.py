"""The image's HEALTHCHECK (Dockerfile, scripts/healthcheck.py) passes for a healthy API
under ENV=PROD, whose ALLOWED_HOSTS names the public hosts only, and fails for one that
does not answer; a worker container, which serves no port, is judged by its database."""

import importlib.util
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.http.request import validate_host

from conftest import ROOT, free_port, start_process, stop_process

SCRIPT = ROOT / "scripts" / "healthcheck.py"
GUNICORN = f"{sys.executable} -m gunicorn --config python:CoreRoot.gunicorn CoreRoot.wsgi"
PROD = {
    "ENV": "PROD",
    "SECRET_KEY": "x7#kq2!v9Lm$3pZr8Wt&cN5yB1fHj6Dg0sQa4Ue+Rk=Xo-Pi_wYe",
    "ALLOWED_HOSTS": "shop.example.com,10.1.2.3",
    "REAL_PAYMENT_API": "https://payments.example.com",
    "REDIS_URL": "redis://127.0.0.1:9/0",  # never asked: /health/ counts no rate limit
}


def healthcheck(command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--command", command],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def load_script():
    spec = importlib.util.spec_from_file_location("healthcheck", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_image_runs_the_script_as_its_healthcheck():
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    [check] = re.findall(r"^HEALTHCHECK .* CMD (.*)$", dockerfile, re.M)

    assert check == '["python", "/app/scripts/healthcheck.py"]'


@pytest.mark.e2e
def test_a_prod_api_is_healthy_and_a_stopped_one_is_not(tmp_path):
    port = free_port()
    env = {
        **PROD,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    api = start_process(GUNICORN.split(), env=env)
    try:
        deadline = time.monotonic() + 20
        while (result := healthcheck(GUNICORN, **env)).returncode != 0:
            assert api.poll() is None, "gunicorn exited"
            assert time.monotonic() < deadline, result.stderr
            time.sleep(0.2)
        # What the image checked before: Host 127.0.0.1, which PROD refuses.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=2)
        assert refused.value.code == 400
    finally:
        stop_process(api)

    stopped = healthcheck(GUNICORN, **env)
    assert stopped.returncode == 1
    assert "/health/" in stopped.stderr


@pytest.mark.parametrize(
    "allowed",
    ["shop.example.com,10.1.2.3", ".example.com", " shop.example.com , x", "[::1]", "*", ""],
)
def test_the_host_it_sends_is_one_allowed_hosts_accepts(allowed):
    script = load_script()
    hosts = [h.strip() for h in allowed.split(",") if h.strip()] or ["localhost"]

    assert validate_host(script.health_host(allowed), hosts)


@pytest.mark.parametrize(
    ("command", "role"),
    [
        ("gunicorn --config python:CoreRoot.gunicorn CoreRoot.wsgi", "api"),
        ("/opt/venv/bin/python /opt/venv/bin/gunicorn CoreRoot.wsgi", "api"),
        ("/sbin/docker-init -- gunicorn CoreRoot.wsgi", "api"),  # docker run --init
        ("python manage.py run_worker", "worker"),
        ("python manage.py migrate --noinput", "other"),
        ("python manage.py reconcile_payments", "other"),
    ],
)
def test_a_container_is_judged_by_what_it_runs(command, role):
    assert load_script().role(command.split()) == role


def test_a_worker_is_healthy_when_its_database_answers(tmp_path):
    worker = "python manage.py run_worker"
    sqlite = {"ENV": "DEV", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    closed = {"ENV": "DEV", "DATABASE_URL": f"postgres://shop@127.0.0.1:{free_port()}/shop"}

    assert healthcheck(worker, **sqlite).returncode == 0
    unreachable = healthcheck(worker, **closed)
    assert unreachable.returncode == 1
    assert "the database" in unreachable.stderr


def test_a_one_off_command_has_nothing_to_check():
    assert healthcheck("python manage.py migrate --noinput").returncode == 0
