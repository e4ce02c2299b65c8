"""The cursor of every list (carts, discounts, events) is opaque: a list pages on from
the cursors it hands out and answers anything else with 400 `invalid_cursor`, never a
500 and never a page the client did not ask for."""

import base64
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from cart.models import Cart
from cart.tests.factories import CartFactory
from common.testing import error_of, response_json

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


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("!!!", id="no-base64-character"),
        pytest.param(cursor(o=0), id="offset-0"),
        pytest.param(cursor(x=1), id="unknown-key"),
        pytest.param(cursor(p="2026-01-01T00:00:00+00:00", x=1), id="position-and-unknown-key"),
    ],
)
def test_a_cursor_the_list_would_not_write_is_refused(staff_client, url, value):
    # DRF decodes leniently, skipping characters outside base64 and keys it does not
    # know: each of these was answered 200, most with the first page.
    assert_invalid_cursor(staff_client.get(url, {"cursor": value}))


def test_a_handed_out_cursor_with_anything_added_is_refused(staff_client):
    CartFactory()
    CartFactory()
    handed_out = response_json(staff_client.get("/api/cart/", {"page_size": 1}))["next"]

    assert staff_client.get(handed_out).status_code == 200
    assert_invalid_cursor(staff_client.get(handed_out.replace("cursor=", "cursor=!")))


def test_rows_of_one_instant_are_paged_by_offset_cursors_both_ways(staff_client):
    # With no position to tell the rows apart, DRF hands out cursors of an offset alone:
    # they are the list's own and stay accepted.
    carts = [CartFactory() for _ in range(3)]
    Cart.objects.update(created=timezone.now() - timedelta(hours=1))

    pages = [response_json(staff_client.get("/api/cart/", {"page_size": 1}))]
    while pages[-1]["next"]:
        pages.append(response_json(staff_client.get(pages[-1]["next"])))
    back = [pages[-1]]
    while back[-1]["previous"]:
        back.append(response_json(staff_client.get(back[-1]["previous"])))

    forward = [page["results"][0]["id"] for page in pages]
    assert sorted(forward) == sorted(str(cart.pk) for cart in carts)
    assert [page["results"][0]["id"] for page in back] == forward[::-1]
