"""/api/docs/ in headless Chromium, as a shop developer opens it: it renders from this
server alone with a clean console, and "Try it out" -> Execute with each operation's
offered example answers the documented status."""

import pytest
import requests
from django.contrib.auth import get_user_model

from tests.docs_examples import token_user, walk

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def schema(server) -> dict:
    response = requests.get(
        f"{server.url}/api/schema/",
        headers={"Accept": "application/vnd.oai.openapi+json"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def open_docs(page):
    page.goto("/api/docs/")
    page.wait_for_selector(".opblock")


def test_docs_render_offline_with_every_operation_and_no_console_error(page, schema):
    open_docs(page)

    shown = page.locator(".opblock").count()
    summaries = page.locator(".opblock-summary-description").all_inner_texts()

    documented = [op for methods in schema["paths"].values() for op in methods.values()]
    assert shown == len(documented)
    assert sorted(summaries) == sorted(op["summary"] for op in documented)
    assert page.locator(".info .title").inner_text().startswith(schema["info"]["title"])
    page.watch.check()


def test_the_token_operation_shows_no_lock_and_a_json_body(page):
    open_docs(page)
    operation = page.locator("#operations-auth-auth_token_create")

    operation.locator(".opblock-summary").click()

    assert operation.locator(".authorization__btn").count() == 0
    assert operation.locator(".body-param-content-type select").input_value() == (
        "application/json"
    )
    assert '"username"' in operation.locator(".body-param__example").inner_text()
    page.watch.check()


def test_every_offered_example_executes_with_its_documented_status(page, server, schema):
    get_user_model().objects.create_user(**token_user(schema), is_staff=True)
    open_docs(page)

    seen = {}
    for step in walk(schema):
        params = step.prepare(server.post)
        tag = page.locator(f'[id^="operations-"][id$="-{step.operation_id}"]')
        tag.locator(".opblock-summary").click()
        tag.locator("button.try-out__btn").click()
        for name, value in params.items():
            tag.locator(f'tr[data-param-name="{name}"] input').fill(str(value))
        tag.locator("button.execute").click()
        status = tag.locator(".live-responses-table .response .response-col_status")
        status.wait_for()
        seen[step.operation_id] = int(status.inner_text().split()[0])
        tag.locator(".opblock-summary").click()  # fold it again: the page stays short

    assert seen == {step.operation_id: step.status for step in walk(schema)}
    page.watch.check()
