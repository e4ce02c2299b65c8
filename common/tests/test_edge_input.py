"""Hostile bodies never reach a 500: strict JSON, size limits, no parser internals."""

import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from cart.models import Cart
from cart.tests.factories import CartFactory
from common.middleware import RequestBodyGuardMiddleware
from common.testing import error_of
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def endpoints() -> list[str]:
    return ["/api/cart/", "/api/discount/", "/api/auth/token/"]


def post_raw(client, url, body, content_type="application/json"):
    return client.generic("POST", url, body, content_type=content_type)


@pytest.mark.parametrize("url", endpoints())
def test_json_nested_a_thousand_deep_is_a_400_on_every_endpoint(api_client, url):
    response = post_raw(api_client, url, "[" * 1000 + "]" * 1000)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "malformed_json"
    assert "nested deeper than 32 levels" in error["message"]


def test_deep_nesting_on_apply_discount_and_pay_is_a_400(api_client):
    cart = CartFactory()
    for action in ("apply_discount", "pay"):
        response = post_raw(api_client, f"/api/cart/{cart.pk}/{action}/", '{"a":' * 500 + "1")
        assert (response.status_code, error_of(response)["code"]) == (400, "malformed_json")


def test_nesting_within_the_limit_is_parsed(api_client):
    body = '{"total": 10, "currency": "USD", "items_number": 1, "x": ' + "[" * 30 + "]" * 30 + "}"
    assert post_raw(api_client, "/api/cart/", body).status_code == 201


def test_brackets_inside_strings_do_not_count_as_nesting(api_client):
    body = '{"total": 10, "currency": "USD", "items_number": 1, "note": "' + "[{" * 100 + '"}'
    assert post_raw(api_client, "/api/cart/", body).status_code == 201


def test_a_duplicate_key_is_a_400_naming_the_key(api_client):
    response = post_raw(
        api_client, "/api/cart/", '{"total": 1, "currency": "USD", "items_number": 1, "total": 2}'
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "malformed_json"
    assert '"total" appears twice' in error["message"]
    assert Cart.objects.count() == 0


def test_a_duplicate_key_in_a_nested_object_is_refused_too(api_client):
    response = post_raw(api_client, "/api/cart/", '{"a": {"b": 1, "b": 1}}')
    assert '"b" appears twice' in error_of(response)["message"]


def test_a_huge_integer_is_refused_without_the_parsers_words(api_client):
    response = post_raw(api_client, "/api/cart/", '{"total": ' + "1" * 5000 + "}")

    assert response.status_code == 400
    message = error_of(response)["message"]
    assert message == "Malformed JSON: a number is longer than 100 characters."
    assert "set_int_max_str_digits" not in response.content.decode()


def test_a_huge_fraction_is_refused_too(api_client):
    response = post_raw(api_client, "/api/cart/", '{"total": 0.' + "1" * 500 + "}")
    assert error_of(response)["message"].endswith("longer than 100 characters.")


def test_syntax_errors_say_where_not_how_the_parser_works(api_client):
    response = post_raw(api_client, "/api/cart/", '{"total": 1,\n "currency": }')

    error = error_of(response)
    assert error["code"] == "malformed_json"
    assert error["message"] == "Malformed JSON: Expecting value at line 2, column 14."


def test_bytes_that_are_not_utf8_are_malformed_json(api_client):
    response = post_raw(api_client, "/api/cart/", b'{"currency": "\xff\xfe"}')

    assert error_of(response)["message"] == "Malformed JSON: the body is not valid utf-8."


def test_infinity_is_not_a_number(api_client):
    response = post_raw(api_client, "/api/cart/", '{"total": Infinity}')
    assert error_of(response)["message"] == "Malformed JSON: Infinity is not a JSON number."


@pytest.mark.parametrize("url", [*endpoints(), "/admin/login/"])
def test_a_body_over_the_limit_is_a_413_without_an_error_log(api_client, url, settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    caplog.set_level(logging.INFO)

    response = post_raw(api_client, url, '{"username": "' + "a" * 2000 + '"}')

    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_default_limit_refuses_three_megabytes(api_client, caplog):
    response = post_raw(api_client, "/api/auth/token/", '{"username": "' + "a" * 3_000_000 + '"}')

    assert response.status_code == 413
    assert error_of(response)["message"] == "The request body is larger than 262144 bytes."
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_body_at_the_limit_is_read(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = '{"total": 1, "currency": "USD", "items_number": 1}'
    body += " " * (100 - len(body))

    assert post_raw(api_client, "/api/cart/", body).status_code == 201


def test_a_chunked_body_without_length_is_a_411_not_an_empty_body():
    request = RequestFactory().post("/api/cart/", b"", content_type="application/json")
    request.META.pop("CONTENT_LENGTH", None)
    request.META["HTTP_TRANSFER_ENCODING"] = "chunked"
    reached = []

    response = RequestBodyGuardMiddleware(reached.append)(request)

    assert response.status_code == 411
    assert b'"code": "length_required"' in response.content
    assert reached == []


def test_a_request_without_body_passes_the_guard():
    request = RequestFactory().get("/health/")
    request.META.pop("CONTENT_LENGTH", None)
    assert RequestBodyGuardMiddleware(lambda r: "served")(request) == "served"


def test_a_code_that_exists_is_still_applied_after_the_guards(api_client):
    DiscountFactory(code="GUARDED")
    cart = CartFactory()
    response = post_raw(api_client, f"/api/cart/{cart.pk}/apply_discount/", '{"code": "GUARDED"}')
    assert response.status_code == 200


def test_a_non_drf_view_with_a_large_body_is_a_413(db):
    get_user_model().objects.create_user(username="x", password="y")
    response = Client().post(
        "/admin/login/", {"username": "x", "password": "y" * 300_000}, follow=False
    )
    assert response.status_code == 413
