"""The URL map (CoreRoot/urls.py): what is a route and what is not. A URL that is not one
is a JSON 404, never a 500; a POST endpoint answers with or without its trailing slash,
never with a redirect that a client would follow as a GET."""

import pytest

from cart.tests.factories import CartFactory
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def suffixed_urls(cart, discount) -> list[tuple[str, str]]:
    """A `.json` spelling of every route, each with a method it answers without one."""
    line = 1
    return [
        ("GET", "/api/cart.json"),
        ("POST", "/api/cart.json"),
        ("GET", f"/api/cart/{cart.pk}.json"),
        ("HEAD", f"/api/cart/{cart.pk}.json"),
        ("GET", f"/api/cart/{cart.pk}/.json"),
        ("GET", f"/api/cart/{cart.pk}.json/"),
        ("POST", f"/api/cart/{cart.pk}/pay.json"),
        ("POST", f"/api/cart/{cart.pk}/apply_discount.json"),
        ("POST", f"/api/cart/{cart.pk}/lines.json"),
        ("PATCH", f"/api/cart/{cart.pk}/lines/{line}.json"),
        ("DELETE", f"/api/cart/{cart.pk}/lines/{line}.json"),
        ("POST", f"/api/cart/{cart.pk}/refund.json"),
        ("GET", "/api/discount.json"),
        ("GET", f"/api/discount/{discount.pk}.json"),
        ("PATCH", f"/api/discount/{discount.pk}.json"),
        ("POST", f"/api/discount/{discount.pk}/codes.json"),
        ("GET", "/api/events.json"),
    ]


@pytest.mark.parametrize("caller", ["api_client", "staff_client"])
def test_a_format_suffix_is_not_a_route(request, caller):
    # The API speaks JSON only: `.json` (or `.api`) would choose nothing, and the actions'
    # handlers take no `format` argument (it was a 500).
    client = request.getfixturevalue(caller)
    client.raise_request_exception = False  # a 500 is an answer to report, as a caller sees it
    cart, discount = CartFactory(), DiscountFactory()

    answers = {
        (method, url): answer(client.generic(method, url, "{}", content_type="application/json"))
        for method, url in suffixed_urls(cart, discount)
    }

    expected = {key: (404, None if key[0] == "HEAD" else "not_found") for key in answers}
    assert answers == expected


def answer(response) -> tuple[int, str | None]:
    """The status and the error code of an answer (None: no body, or not an error)."""
    if not response.content:
        return response.status_code, None
    body = response.json()
    return response.status_code, body["error"]["code"] if "error" in body else None


@pytest.mark.parametrize(
    ("url", "body", "expected"),
    [
        (
            "/api/auth/token/",
            {"username": "nobody", "password": "guess"},
            (400, "invalid_credentials"),
        ),
        (
            "/api/webhooks/payment-provider/",
            {"type": "payment.succeeded"},
            (400, "webhook_headers_missing"),  # unsigned
        ),
    ],
)
def test_a_post_endpoint_answers_without_its_trailing_slash(api_client, url, body, expected):
    # As the router's routes do (cart/tests/test_api.py): a redirect would be followed as a
    # GET, the body lost, and the caller would get a 405.
    assert answer(api_client.post(url, body)) == expected
    assert answer(api_client.post(url.removesuffix("/"), body)) == expected
