"""Every error is JSON in one shape: {"error": {code, message, field, details}}."""

import pytest

from common.testing import error_of

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status, code, field=None):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = error_of(response)
    assert set(error) == {"code", "message", "field", "details"}
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]
    assert error["details"][0]["code"] == code
    return error


def test_unknown_api_resource_is_json_404(api_client):
    response = api_client.get("/api/cart/00000000-0000-0000-0000-000000000000/")
    assert_error_shape(response, 404, "not_found")


def test_url_outside_every_route_is_json_404(api_client):
    assert_error_shape(api_client.get("/no/such/page/"), 404, "not_found")


def test_malformed_uuid_is_json_404(api_client):
    assert_error_shape(api_client.get("/api/cart/not-a-uuid/"), 404, "not_found")


def test_wrong_method_is_json_405(api_client):
    response = api_client.delete("/api/discount/")
    assert_error_shape(response, 405, "method_not_allowed")


def test_unsupported_media_type_is_json_415(api_client):
    response = api_client.post(
        "/api/cart/", "total=10", content_type="application/x-www-form-urlencoded"
    )
    assert_error_shape(response, 415, "unsupported_media_type")


def test_malformed_json_is_json_400(api_client):
    response = api_client.post("/api/cart/", "{bad json", content_type="application/json")
    error = assert_error_shape(response, 400, "malformed_json")
    assert "Malformed JSON" in error["message"]


def test_nan_is_not_json(api_client):
    response = api_client.post(
        "/api/cart/",
        '{"total": NaN, "currency": "USD", "items_number": 1}',
        content_type="application/json",
    )
    assert_error_shape(response, 400, "malformed_json")


def test_unacceptable_accept_header_is_json_406(api_client):
    response = api_client.get("/api/cart/", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406
    assert error_of(response)["code"] == "not_acceptable"


def test_validation_errors_list_every_field(api_client):
    response = api_client.post(
        "/api/cart/", {"total": -1, "currency": "ZZZ", "items_number": "many"}, format="json"
    )

    assert response.status_code == 400
    error = error_of(response)
    fields = {detail["field"]: detail["code"] for detail in error["details"]}
    assert fields == {
        "total": "min_value",
        "currency": "unknown_currency",
        "items_number": "invalid",
    }
    assert (error["field"], error["code"]) == ("total", "min_value")


def test_non_object_body_is_a_400_without_field(api_client):
    response = api_client.post("/api/cart/", [1, 2], format="json")

    error = assert_error_shape(response, 400, "invalid")
    assert error["field"] is None


def test_unhandled_exception_is_a_json_500(api_client, settings, monkeypatch):
    from cart import viewsets

    def explode(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(viewsets, "cart_create", explode)
    api_client.raise_request_exception = False

    response = api_client.post(
        "/api/cart/", {"total": 1, "currency": "USD", "items_number": 1}, format="json"
    )

    assert_error_shape(response, 500, "server_error")
