"""The reverse proxy of deploy/nginx in front of the API, as Compose runs them: Debian's
nginx with the same template, rendered the way the official image renders it, in front
of gunicorn started with CoreRoot/gunicorn.py (one worker of 4 threads, so a handful of
stuck threads would show). Inside the Compose stack (EDGE_PROXY_URL is set there) the
same tests run against the stack's own nginx and the api container's gunicorn.

Each attack on the edge, and what the pair answers: slow clients, chunked bodies, bodies,
URLs and headers over the limits, forged X-Forwarded-For, the API being down.
"""

import fcntl
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from common.ratelimit import Rate, window
from conftest import (
    ROOT,
    free_port,
    gunicorn_setting,
    pay_worst_case_seconds,
    require_local_service,
    start_process,
    stop_process,
    wait_until_answers,
)
from tests.test_e2e import subprocess_database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# How often one client may apply a code through the edge (RATELIMIT_APPLY_DISCOUNT_PER_IP).
EDGE_APPLY_RATE = "20/m"

TEMPLATE = ROOT / "deploy/nginx/templates/default.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render(template: Path, values: dict[str, str]) -> str:
    """envsubst as the official image runs it: only the variables it is given."""
    text = template.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


def start_nginx(workdir: Path, upstream: str) -> tuple[str, subprocess.Popen]:
    require_local_service("nginx", os.path.exists(NGINX))
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "default.conf").write_text(
        render(
            TEMPLATE,
            {
                "API_UPSTREAM": upstream,
                "NGINX_LISTEN": f"127.0.0.1:{port}",
                "REQUEST_BODY_MAX_BYTES": str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
            },
        )
    )
    user = "user root;" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"{kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} info;
events {{ worker_connections 512; }}
http {{
    access_log {workdir / "access.log"};
    {temp}
    include {workdir / "default.conf"};
}}
"""
    )
    process = start_process(
        [
            NGINX,
            "-p",
            str(workdir),
            "-c",
            str(workdir / "nginx.conf"),
            "-e",
            str(workdir / "error.log"),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/nginx-health", process)
    return url, process


@pytest.fixture(autouse=True)
def one_edge_test_at_a_time(tmp_path_factory):
    """In Compose every worker of a parallel run (`pytest -n 2`) meets the stack's one
    nginx and gunicorn, whose threads the slow-client tests hold on purpose and whose rate
    limits count by the container's address: one worker's edge test waits for the
    other's, as in a serial run. (Outside Compose each worker starts its own pair.)"""
    if not os.environ.get("EDGE_PROXY_URL"):
        yield
        return
    # The folder above each worker's temporary folder is the run's, shared by its workers.
    lock_path = tmp_path_factory.getbasetemp().parent / "edge-tests.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def edge(django_db_setup, tmp_path_factory):
    """(proxy URL, gunicorn URL): the proxy is the API's only trusted one."""
    if os.environ.get("EDGE_PROXY_URL"):  # inside Compose: the stack's own pair
        yield os.environ["EDGE_PROXY_URL"], "http://127.0.0.1:8000"
        return
    require_local_service("nginx", os.path.exists(NGINX))
    api_port = free_port()
    env = {
        "DATABASE_URL": subprocess_database_url(),
        "ENV": "DEV",
        "GUNICORN_BIND": f"127.0.0.1:{api_port}",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "4",
        "TRUSTED_PROXIES": "127.0.0.1",
        "RATELIMIT_APPLY_DISCOUNT_PER_IP": EDGE_APPLY_RATE,
        "REDIS_URL": "",
    }
    api = start_process(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:CoreRoot.gunicorn",
            "CoreRoot.wsgi",
        ],
        env=env,
    )
    api_url = f"http://127.0.0.1:{api_port}"
    nginx = None
    try:
        wait_until_answers(f"{api_url}/health/", api)
        proxy_url, nginx = start_nginx(tmp_path_factory.mktemp("nginx"), f"127.0.0.1:{api_port}")
        yield proxy_url, api_url
    finally:
        if nginx is not None:
            stop_process(nginx)
        stop_process(api)


def address(url: str) -> tuple[str, int]:
    host, _, port = url.rsplit("//", 1)[1].partition(":")
    return host, int(port or 80)


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["details"][0]["code"] == code
    return error


def test_slow_clients_never_hold_an_api_thread(edge):
    proxy_url, _ = edge
    stalled = []
    try:
        for n in range(32):  # 8 times gunicorn's threads
            sock = socket.create_connection(address(proxy_url), timeout=5)
            # Half a request: a header, or the first byte of a promised body.
            if n % 2:
                sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: shop\r\n")
            else:
                sock.sendall(
                    b"POST /api/cart/ HTTP/1.1\r\nHost: shop\r\nContent-Length: 50\r\n\r\n{"
                )
            stalled.append(sock)
        # Blocked threads would leave this unanswered (a Timeout); nginx holds the rest.
        response = requests.get(f"{proxy_url}/health/ready/", timeout=5)
        assert response.status_code == 200
    finally:
        for sock in stalled:
            sock.close()


def test_the_same_slow_clients_stop_gunicorn_alone(edge):
    """Why the proxy is there: gunicorn's threads each wait for a whole request."""
    if os.environ.get("EDGE_PROXY_URL"):
        # Two workers there: one may take every slow connection while the other serves.
        pytest.skip("shown on the local single-worker gunicorn only")
    _, api_url = edge
    stalled = []
    try:
        for _ in range(12):  # more than gunicorn's threads (Compose: 2 workers x 4)
            sock = socket.create_connection(address(api_url), timeout=5)
            sock.sendall(b"GET /health/ HTTP/1.1\r\nHost: shop\r\n")
            stalled.append(sock)
        time.sleep(0.5)
        with pytest.raises(requests.Timeout):
            requests.get(f"{api_url}/health/", timeout=2)
    finally:
        for sock in stalled:
            sock.close()


def chunks():
    yield b'{"total": 12.5, '
    yield b'"currency": "USD", "items_number": 2}'


def test_a_chunked_body_reaches_the_api_whole_through_the_proxy(edge):
    proxy_url, _ = edge

    response = requests.post(
        f"{proxy_url}/api/cart/",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 201, response.text
    assert response.json()["total"] == 12.5


def test_a_chunked_body_straight_to_gunicorn_is_a_411_not_an_empty_body(edge):
    _, api_url = edge

    response = requests.post(
        f"{api_url}/api/cart/",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert_json_error(response, 411, "length_required")


def test_a_body_over_the_limit_is_the_proxys_json_413(edge):
    proxy_url, _ = edge
    body = json.dumps({"total": 1, "note": "x" * 300_000})

    response = requests.post(
        f"{proxy_url}/api/cart/",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert_json_error(response, 413, "payload_too_large")


def test_a_long_url_is_a_json_414(edge):
    proxy_url, _ = edge
    response = requests.get(f"{proxy_url}/api/cart/?x={'a' * 5000}", timeout=10)
    assert_json_error(response, 414, "uri_too_long")


def test_a_huge_header_is_a_json_431(edge):
    proxy_url, _ = edge
    response = requests.get(f"{proxy_url}/health/", headers={"X-Big": "a" * 6000}, timeout=10)
    assert_json_error(response, 431, "headers_too_large")


def test_headers_the_proxy_lets_through_never_meet_gunicorns_html_limits(edge):
    proxy_url, _ = edge
    many = {f"X-H{n}": "v" for n in range(400)}  # gunicorn's default limit is 100
    long_url = f"{proxy_url}/health/?x={'a' * 4000}"  # gunicorn's default line limit: 4094

    assert requests.get(f"{proxy_url}/health/", headers=many, timeout=10).json() == {
        "status": "ok"
    }
    assert requests.get(long_url, timeout=10).status_code == 200


def apply_from(proxy_url: str, source: str | None, forwarded: str) -> int:
    """apply_discount on an unknown cart: 404, unless the client's limit is reached."""
    bind = (source, 0) if source else None
    connection = http.client.HTTPConnection(*address(proxy_url), timeout=30, source_address=bind)
    headers = {"Content-Type": "application/json", "X-Forwarded-For": forwarded}
    path = f"/api/cart/{uuid.uuid4()}/apply_discount/"
    connection.request("POST", path, body='{"code": "GUESS"}', headers=headers)
    status = connection.getresponse().status
    connection.close()
    return status


def loopback_sources_with_time_left(rate: Rate, seconds: float):
    """Loopback addresses (not 127.0.0.1, the proxy's own) whose `apply_discount_per_ip`
    window has more than `seconds` left: a burst from one is counted in one window. Each
    address's windows start at its own fixed second of the minute; from a fixed address
    the burst split between two windows, and missed its 429, when it ran across that
    second."""
    for n in range(2, 255):
        source = f"127.0.0.{n}"
        _, end = window(name="apply_discount_per_ip", key=source, rate=rate, at=time.time())
        if end - time.time() > seconds:
            yield source


def test_the_api_limits_the_real_client_whatever_x_forwarded_for_says(edge):
    proxy_url, _ = edge
    local = not os.environ.get("EDGE_PROXY_URL")
    rate = Rate.parse(EDGE_APPLY_RATE)
    # Locally the proxy itself is 127.0.0.1: clients come from other loopback addresses.
    # (Behind Compose's proxy the address is the network's, not chosen here.)
    sources = loopback_sources_with_time_left(rate, seconds=30) if local else None
    source = next(sources) if local else None

    statuses = [apply_from(proxy_url, source, f"198.51.100.{n}") for n in range(rate.limit + 1)]

    assert statuses == [404] * rate.limit + [429]
    if local:  # another client, the same forwarded address: its own budget
        assert apply_from(proxy_url, next(sources), "198.51.100.1") == 404


def test_the_api_being_down_is_a_json_502(tmp_path):
    proxy_url, nginx = start_nginx(tmp_path / "nginx", f"127.0.0.1:{free_port()}")
    try:
        response = requests.get(f"{proxy_url}/health/", timeout=10)
    finally:
        stop_process(nginx)

    assert_json_error(response, 502, "api_unavailable")


def test_the_proxy_limits_sit_below_gunicorns_and_match_the_apis():
    from django.conf import settings

    from CoreRoot import gunicorn

    conf = TEMPLATE.read_text()
    buffers = re.search(r"large_client_header_buffers (\d+) (\d+)k;", conf)
    count, size = int(buffers.group(1)), int(buffers.group(2)) * 1024
    assert size < gunicorn.limit_request_line
    assert size < gunicorn.limit_request_field_size
    assert count * size // 4 < gunicorn.limit_request_fields  # 4 bytes: the shortest header
    # One home for the body limit: the variable Django reads, which Compose gives nginx.
    assert "client_max_body_size ${REQUEST_BODY_MAX_BYTES};" in conf
    assert not re.search(r"client_(max_)?body_(buffer_)?size \d", conf)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    given = {
        name: services[name]["environment"]["REQUEST_BODY_MAX_BYTES"]
        for name in services
        if "REQUEST_BODY_MAX_BYTES" in services[name].get("environment", {})
    }
    assert set(given) == {"api", "nginx"}
    assert set(given.values()) == {
        f"${{REQUEST_BODY_MAX_BYTES:-{settings.DATA_UPLOAD_MAX_MEMORY_SIZE}}}"
    }
    assert "proxy_request_buffering on;" in conf
    assert re.search(r"client_header_timeout \d+s;", conf)
    assert re.search(r"client_body_timeout \d+s;", conf)
    assert int(re.search(r"keepalive_timeout (\d+)s;", conf).group(1)) < gunicorn.keepalive
    error_pages = set(re.findall(r"error_page ([\d ]+) (?:=\d+ )?/_edge/", conf))
    statuses = {int(code) for line in error_pages for code in line.split()}
    assert statuses >= {400, 404, 405, 408, 413, 414, 429, 431, 494, 500, 502, 503, 504}


def test_the_proxy_waits_for_the_slowest_pay_and_compose_for_gunicorns_graceful_stop():
    """A pay may take three provider calls at their worst (conftest.pay_worst_case_seconds,
    64.8 s with the defaults): nginx waits longer for its answer, or the client gets a
    504 while the pay goes on; and `docker compose stop` gives gunicorn longer than its
    graceful timeout to finish the requests in progress before it is killed."""
    conf = TEMPLATE.read_text()
    api = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api"]
    graceful = gunicorn_setting(
        "graceful_timeout",
        GUNICORN_GRACEFUL_TIMEOUT=api["environment"]["GUNICORN_GRACEFUL_TIMEOUT"]
        .removeprefix("${GUNICORN_GRACEFUL_TIMEOUT:-")
        .removesuffix("}"),
    )

    assert int(re.search(r"proxy_read_timeout (\d+)s;", conf).group(1)) > pay_worst_case_seconds()
    assert int(api["stop_grace_period"].removesuffix("s")) > graceful
