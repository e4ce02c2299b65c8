"""The browser suite's fixtures: the real app under gunicorn with the real fake provider,
on a fresh test database, and Chromium driven by playwright.

Chromium is Debian's (`apt-get install chromium`; `.ci/run` installs it), never a
browser playwright downloads. Each test's page records what a developer would notice
(console errors, requests to another host, 5xx answers) and `watch.check()` fails on any.
A failed test leaves a screenshot in the pytest temp directory (the path is printed).
"""

from __future__ import annotations

import dataclasses
import os
from urllib.parse import urlsplit

import pytest
import requests

from conftest import find_chromium, stop_process, wait_until_answers
from tests.test_e2e import LOG_PROBLEMS, start_api, subprocess_database_url

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1366, "height": 768}  # a common laptop screen


@dataclasses.dataclass
class Server:
    url: str

    def post(self, path: str, body: dict) -> dict:
        response = requests.post(f"{self.url}{path}", json=body, timeout=10)
        assert response.status_code in (200, 201), response.text
        return response.json()


@pytest.fixture(scope="module")
def server(django_db_setup, fake_provider_url, tmp_path_factory):
    """The API under gunicorn on the test database, paying through the fake provider."""
    env = {
        "DATABASE_URL": subprocess_database_url(),
        "FAKE_PAYMENT_API": fake_provider_url.split("://", 1)[1],
        "ENV": "DEV",
    }
    log = tmp_path_factory.mktemp("browser-server") / "gunicorn.log"
    api = start_api(env, log)
    try:
        wait_until_answers(f"{api.url}/health/ready/", api.process)
        yield Server(api.url)
    finally:
        stop_process(api.process)
    written = log.read_text(errors="replace")
    assert not any(problem in written for problem in LOG_PROBLEMS), written


@pytest.fixture(scope="module")
def chromium():
    """One Chromium per test module. Playwright's sync API keeps an event loop running in
    this thread meanwhile, which Django takes for an async context: the tests' ORM calls
    are plain synchronous code, so Django is told so until the browser is closed."""
    executable = find_chromium()
    if executable is None:
        pytest.fail(
            "No Chromium found for the browser tests: apt-get install -y chromium "
            "(.ci/run does), or deselect them: pytest -m 'not browser'."
        )
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Watch:
    """What a developer would notice in the browser's console and network panel."""

    def __init__(self, page, server_url: str):
        self.host = urlsplit(server_url).netloc
        self.console_errors: list[str] = []
        self.foreign_requests: list[str] = []
        self.server_errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(str(error)))
        page.on("request", self._request)
        page.on("response", self._response)

    def _console(self, message):
        if message.type == "error":
            self.console_errors.append(message.text)

    def _request(self, request):
        url = urlsplit(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.netloc != self.host:
            self.foreign_requests.append(request.url)

    def _response(self, response):
        if response.status >= 500:
            self.server_errors.append(f"{response.status} {response.url}")

    def check(self):
        assert not self.server_errors, self.server_errors
        assert not self.foreign_requests, self.foreign_requests
        assert not self.console_errors, self.console_errors


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(chromium, server, fake_provider, request, tmp_path_factory):
    """A fresh browser page at 1366 x 768 (no cookies), watched."""
    context = chromium.new_context(viewport=VIEWPORT, base_url=server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.watch = Watch(page, server.url)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shots = tmp_path_factory.getbasetemp() / "browser-screenshots"
        shots.mkdir(exist_ok=True)
        path = shots / f"{request.node.name}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"\nscreenshot of the failed page: {path}")
    context.close()
