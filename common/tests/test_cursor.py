"""The cursor of every list (carts, discounts, events) is opaque: a list pages on from
the cursors it hands out and answers anything else with 400 `invalid_cursor`, never a
500."""

import base64
from urllib.parse import urlencode

import pytest

from common.testing import error_of

pytestmark = pytest.mark.django_db

LISTS = ["/api/cart/", "/api/discount/", "/api/events/"]
# Valid ISO 8601, but a year 10000 and a year 0 in UTC, which no datetime can hold.
BEYOND_UTC = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"]


def cursor(**tokens) -> str:
    """A cursor written as DRF writes one: base64 of its tokens as a query string."""
    return base64.b64encode(urlencode(tokens).encode()).decode()


def assert_invalid_cursor(response) -> None:
    assert response.status_code == 400
    assert (error_of(response)["field"], error_of(response)["code"]) == (
        "cursor",
        "invalid_cursor",
    )


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("position", BEYOND_UTC)
def test_a_position_utc_cannot_express_is_an_invalid_cursor(staff_client, url, position):
    assert_invalid_cursor(staff_client.get(url, {"cursor": cursor(p=position)}))


@pytest.mark.parametrize("position", BEYOND_UTC)
def test_a_filtered_list_refuses_it_too(staff_client, position):
    response = staff_client.get(
        "/api/cart/", {"cursor": cursor(p=position), "payment_status": "success"}
    )
    assert_invalid_cursor(response)
