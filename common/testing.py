"""Helpers for tests (imported by test modules, never by the service)."""

import json
from decimal import Decimal


def response_json(response) -> dict:
    """The response's JSON with numbers read as Decimal, as a careful client reads them."""
    return json.loads(response.content, parse_float=Decimal)


def error_of(response) -> dict:
    """The `error` member of an error response."""
    return response_json(response)["error"]
