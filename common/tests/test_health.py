import pytest
from django.db import DatabaseError


def test_liveness_answers_without_the_database(client):
    # No django_db mark: any query here would fail the test.
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_touches_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(1):
        response = client.get("/health/ready/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_readiness_is_503_when_the_database_fails(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(self, sql, params=None):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", broken)

    response = client.get("/health/ready/")

    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"


def test_health_refuses_post_with_json_even_without_csrf_token():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/health/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_health_answers_head(client):
    assert client.head("/health/").status_code == 200
