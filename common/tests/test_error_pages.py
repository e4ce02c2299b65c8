"""Django's own error pages (outside DRF views) answer in the same JSON shape."""

from django.test import Client, RequestFactory

from common import views


def test_django_error_pages_are_json():
    request = RequestFactory().get("/")
    for view, status, code in [
        (views.bad_request, 400, "bad_request"),
        (views.permission_denied, 403, "permission_denied"),
        (views.not_found, 404, "not_found"),
    ]:
        response = view(request, Exception())
        assert response.status_code == status
        assert b'"code": "' + code.encode() in response.content
    assert views.server_error(request).status_code == 500


def test_a_csrf_failure_outside_the_api_is_json(db):
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "x"})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
