"""API tokens go to active staff users only, and the refusal never says which accounts exist
(common.views.ObtainTokenView)."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from common.testing import error_of

pytestmark = pytest.mark.django_db

URL = "/api/auth/token/"
PASSWORD = "a-long-password-for-tests"


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def user(username, **flags):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **flags)


def ask(client, username, password=PASSWORD):
    return client.post(URL, {"username": username, "password": password})


def test_an_active_staff_user_gets_a_token(api_client):
    staff = user("boss", is_staff=True)

    response = ask(api_client, "boss")

    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=staff).key}


@pytest.mark.parametrize(
    ("flags", "password"),
    [
        ({}, PASSWORD),  # a customer account with the right password
        ({"is_staff": True, "is_active": False}, PASSWORD),
        ({"is_staff": True}, "wrong"),
    ],
)
def test_everyone_else_gets_the_answer_of_a_wrong_password(api_client, flags, password):
    user("someone", **flags)
    unknown = ask(api_client, "nobody-by-this-name")

    response = ask(api_client, "someone", password)

    assert response.status_code == 400
    assert response.content == unknown.content
    assert error_of(response)["code"] == "invalid_credentials"
    assert not Token.objects.exists()


def test_the_token_endpoint_reads_json_only(api_client):
    user("boss", is_staff=True)
    response = api_client.post(
        URL, "username=boss&password=" + PASSWORD, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    "username", [12345, 1.5, True, None, ["staff"], {"name": "staff"}], ids=repr
)
def test_a_username_that_is_not_a_string_is_a_400_naming_it(api_client, username):
    user("12345", is_staff=True)

    response = api_client.post(URL, {"username": username, "password": PASSWORD}, format="json")

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["field"] == "username"
    assert not Token.objects.exists()


@pytest.mark.parametrize("password", [12345, ["x"], {"a": 1}], ids=repr)
def test_a_password_that_is_not_a_string_is_a_400_naming_it(api_client, password):
    response = api_client.post(URL, {"username": "boss", "password": password}, format="json")

    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == "password"
