"""The request examples of the API docs work as offered: each documented operation, called
with its example on a fresh database (in DEV, with the real fake provider), answers the
documented success status. `tests/browser/` does the same through Swagger UI's Execute."""

import json

import pytest
from django.contrib.auth import get_user_model

from tests.docs_examples import token_user, walk

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def test_every_request_example_succeeds_as_offered(api_client, fake_provider):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    get_user_model().objects.create_user(**token_user(schema), is_staff=True)

    def post(path: str, body: dict) -> dict:
        response = api_client.post(path, body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    outcomes = {}
    for step in walk(schema):
        url = step.url(step.prepare(post))
        body = json.dumps(step.example) if step.example is not None else None
        response = api_client.generic(step.method, url, body, content_type="application/json")
        outcomes[step.operation_id] = (response.status_code, response.content[:300])

    expected = {step.operation_id: step.status for step in walk(schema)}
    assert {op: status for op, (status, _) in outcomes.items()} == expected, outcomes
