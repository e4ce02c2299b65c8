"""With REQUIRE_STOREFRONT_KEY (the ENV=PROD default), creating a cart needs a valid
X-Storefront-Key or a staff user; keys are issued in the admin, their secret shown once."""

import io
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from cart.models import Cart
from common.testing import error_of
from storefront.models import StorefrontKey

pytestmark = pytest.mark.django_db

URL = "/api/cart/"
BODY = {"total": 10, "currency": "USD", "items_number": 1}


@pytest.fixture
def keys_required(settings):
    settings.REQUIRE_STOREFRONT_KEY = True


@pytest.mark.usefixtures("keys_required")
class TestRequired:
    def test_an_anonymous_cart_is_refused(self, api_client):
        response = api_client.post(URL, BODY)

        assert response.status_code == 401
        error = error_of(response)
        assert error["code"] == "storefront_key_required"
        assert "X-Storefront-Key" in error["message"]
        assert not Cart.objects.exists()

    def test_a_valid_key_creates_the_cart(self, api_client):
        _, secret = StorefrontKey.issue(name="web")

        response = api_client.post(URL, BODY, HTTP_X_STOREFRONT_KEY=secret)

        assert response.status_code == 201
        assert StorefrontKey.objects.get().last_used is not None

    @pytest.mark.parametrize("secret", ["sfk_wrong", "nonsense", "sfk_" + "x" * 200])
    def test_an_unknown_key_is_a_401(self, api_client, secret):
        response = api_client.post(URL, BODY, HTTP_X_STOREFRONT_KEY=secret)

        assert response.status_code == 401
        assert error_of(response)["code"] == "storefront_key_invalid"

    def test_a_revoked_key_is_a_401(self, api_client):
        key, secret = StorefrontKey.issue(name="old")
        StorefrontKey.objects.filter(pk=key.pk).update(active=False)

        response = api_client.post(URL, BODY, HTTP_X_STOREFRONT_KEY=secret)

        assert error_of(response)["code"] == "storefront_key_invalid"

    def test_staff_create_carts_without_a_key(self, staff_client):
        assert staff_client.post(URL, BODY).status_code == 201

    def test_other_cart_actions_stay_open(self, api_client):
        _, secret = StorefrontKey.issue(name="web")
        cart_id = api_client.post(URL, BODY, HTTP_X_STOREFRONT_KEY=secret).json()["id"]

        assert api_client.get(f"{URL}{cart_id}/").status_code == 200


def test_dev_creates_carts_without_a_key(api_client):
    assert api_client.post(URL, BODY).status_code == 201


def test_last_used_is_written_at_most_once_a_minute(api_client):
    key, secret = StorefrontKey.issue(name="web")
    earlier = timezone.now() - timedelta(seconds=30)
    StorefrontKey.objects.filter(pk=key.pk).update(last_used=earlier)

    api_client.post(URL, BODY, HTTP_X_STOREFRONT_KEY=secret)

    key.refresh_from_db()
    assert key.last_used == earlier


def test_only_a_hash_of_the_secret_is_stored():
    key, secret = StorefrontKey.issue(name="web")

    key.refresh_from_db()
    assert secret.startswith("sfk_")
    assert len(secret) > 40
    assert secret not in (key.key_hash, key.prefix)
    assert secret.startswith(key.prefix)
    assert StorefrontKey.objects.verify(secret) == key


@pytest.mark.parametrize("button", ["_save", "_continue", "_addanother"])
def test_the_admin_issues_a_key_and_shows_its_secret_once_on_the_page_only(
    admin_client, api_client, settings, caplog, button
):
    settings.REQUIRE_STOREFRONT_KEY = True
    settings.MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

    response = admin_client.post(
        "/admin/storefront/storefrontkey/add/", {"name": "web shop", "active": "on", button: "1"}
    )

    assert response.status_code == 200  # the page itself, not a redirect to a message
    assert "no-store" in response["Cache-Control"]
    text = response.content.decode()
    [secret] = set(re.findall(r"sfk_[A-Za-z0-9_-]{40,}", text))
    assert all(secret not in morsel.value for morsel in response.cookies.values())
    assert secret not in caplog.text
    key = StorefrontKey.objects.get()
    assert key.name == "web shop"
    assert api_client.post(URL, BODY, HTTP_X_STOREFRONT_KEY=secret).status_code == 201
    # Nowhere to be read again: not on the key's page, not in a message on the next one.
    for page in (f"/admin/storefront/storefrontkey/{key.pk}/change/", "/admin/"):
        assert secret not in admin_client.get(page).content.decode()
    assert all(secret not in morsel.value for morsel in admin_client.cookies.values())


def test_the_command_issues_a_key():
    out = io.StringIO()
    call_command("create_storefront_key", "ops", stdout=out)
    assert StorefrontKey.objects.verify(out.getvalue().strip()).name == "ops"


# The name's rule is the model's (StorefrontKey.clean_fields): a name, spaces around it
# dropped, of at most 100 characters. Every door refuses the same names.
BAD_NAMES = [
    ("", "This field cannot be blank."),
    ("   ", "This field cannot be blank."),
    ("x" * 101, "Ensure this value has at most 100 characters (it has 101)."),
]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_issue_refuses_a_name_the_admin_refuses(admin_client, name, message):
    with pytest.raises(ValidationError) as raised:
        StorefrontKey.issue(name=name)

    assert raised.value.message_dict == {"name": [message]}
    response = admin_client.post("/admin/storefront/storefrontkey/add/", {"name": name})
    # The same refusal (its form words a blank name "This field is required.").
    assert list(response.context["adminform"].form.errors) == ["name"]
    assert not StorefrontKey.objects.exists()


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_the_command_refuses_a_bad_name_saying_why(name, message):
    with pytest.raises(CommandError, match=re.escape(f"name: {message}")):
        call_command("create_storefront_key", name, stdout=io.StringIO())

    assert not StorefrontKey.objects.exists()


def test_a_name_loses_the_spaces_around_it_at_every_door(admin_client):
    StorefrontKey.issue(name="  web shop ")
    call_command("create_storefront_key", " ops  ", stdout=io.StringIO())
    admin_client.post("/admin/storefront/storefrontkey/add/", {"name": " pos ", "active": "on"})

    assert sorted(StorefrontKey.objects.values_list("name", flat=True)) == [
        "ops",
        "pos",
        "web shop",
    ]
    assert StorefrontKey.issue(name=" " + "x" * 100 + " ")[0].name == "x" * 100
