from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from common.testing import error_of, response_json
from discount.models import Discount
from discount.services import discount_update
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db

URL = "/api/discount/"


def tomorrow() -> str:
    return (timezone.now() + timedelta(days=1)).isoformat()


def create(client, **fields):
    return client.post(URL, {"code": "SPRING", "value": 5, "ended": tomorrow(), **fields})


class TestCreate:
    def test_full_discount_round_trips_with_exact_numbers(self, api_client):
        response = create(
            api_client,
            kind="percent",
            value="12.5",
            currency="eur",
            started=timezone.now().isoformat(),
            min_cart_total="30.00",
            usage_limit=100,
            active=True,
        )

        assert response.status_code == 201, response.content
        data = response_json(response)
        assert data["value"] == Decimal("12.50")
        assert data["currency"] == "EUR"
        assert data["min_cart_total"] == Decimal("30.00")
        assert (data["usage_limit"], data["times_used"]) == (100, 0)
        assert b'"value":12.50' in response.content

    def test_value_without_currency_is_shown_without_padding(self, api_client):
        response = create(api_client, value="100")
        assert b'"value":100,' in response.content

    @pytest.mark.parametrize(
        ("fields", "field", "code"),
        [
            ({"ended": "2001-01-01T00:00:00Z"}, "ended", "already_expired"),
            (
                {"started": "2100-01-02T00:00:00Z", "ended": "2100-01-01T00:00:00Z"},
                "ended",
                "ends_before_start",
            ),
            ({"value": 0}, "value", "value_not_positive"),
            ({"value": -5}, "value", "value_not_positive"),
            ({"kind": "percent", "value": 101}, "value", "percent_above_100"),
            ({"value": "1e12"}, "value", "max_whole_digits"),
            ({"value": "20000000000"}, "value", "amount_too_large"),
            ({"value": "1.00001"}, "value", "max_decimal_places"),
            ({"value": "abc"}, "value", "invalid"),
            ({"value": 1.5, "currency": "JPY"}, "value", "too_many_decimals"),
            ({"currency": "ABC"}, "currency", "unknown_currency"),
            ({"kind": "bogus"}, "kind", "invalid_choice"),
            ({"code": "has space"}, "code", "invalid_code"),
            ({"code": ""}, "code", "blank"),
            ({"usage_limit": -1}, "usage_limit", "min_value"),
            ({"min_cart_total": -1, "currency": "USD"}, "min_cart_total", "out_of_range"),
            ({"min_cart_total": 10}, "min_cart_total", "currency_required"),
            ({"description": "x" * 501}, "description", "max_length"),
            ({"value": "1_000"}, "value", "invalid"),
            ({"value": "１０"}, "value", "invalid"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, api_client, fields, field, code):
        response = create(api_client, **fields)

        assert response.status_code == 400
        error = error_of(response)
        assert (error["field"], error["code"]) == (field, code)
        assert Discount.objects.count() == 0

    def test_missing_value_is_required(self, api_client):
        response = api_client.post(URL, {"code": "X"})
        assert (error_of(response)["field"], error_of(response)["code"]) == ("value", "required")

    def test_codes_are_unique_ignoring_case(self, api_client):
        DiscountFactory(code="SPRING")

        response = create(api_client, code="spring")

        assert response.status_code == 400
        assert (error_of(response)["field"], error_of(response)["code"]) == ("code", "code_taken")

    def test_a_race_for_the_same_code_is_still_a_400(self, api_client, monkeypatch):
        monkeypatch.setattr(Discount, "code_taken", lambda self: False)
        DiscountFactory(code="SPRING")

        response = create(api_client, code="Spring")

        assert response.status_code == 400
        assert error_of(response)["code"] == "code_taken"
        assert Discount.objects.count() == 1


class TestReadAndEdit:
    def test_list_is_paged_newest_first_with_a_cursor(self, api_client):
        for n in range(25):
            DiscountFactory(code=f"C{n:02}")

        first = response_json(api_client.get(URL))
        second = response_json(api_client.get(first["next"]))

        codes = [d["code"] for d in first["results"] + second["results"]]
        assert codes == [f"C{n:02}" for n in reversed(range(25))]
        assert len(first["results"]) == 20
        assert second["next"] is None

    def test_page_size_is_capped(self, api_client):
        for n in range(3):
            DiscountFactory(code=f"C{n}")
        assert len(response_json(api_client.get(URL, {"page_size": 2}))["results"]) == 2

    def test_filters_by_active_and_by_code_ignoring_case(self, api_client):
        DiscountFactory(code="ON")
        DiscountFactory(code="OFF", active=False)

        active = response_json(api_client.get(URL, {"active": "true"}))["results"]
        by_code = response_json(api_client.get(URL, {"code": "off"}))["results"]

        assert [d["code"] for d in active] == ["ON"]
        assert [d["code"] for d in by_code] == ["OFF"]

    @pytest.mark.parametrize(("name", "value"), [("kind", "nope"), ("active", "maybe")])
    def test_bad_filter_value_is_a_400(self, api_client, name, value):
        response = api_client.get(URL, {name: value})
        assert response.status_code == 400
        assert error_of(response)["field"] == name

    def test_an_edit_from_a_stale_copy_keeps_uses_counted_meanwhile(self):
        discount = DiscountFactory(code="STALE", usage_limit=1)
        stale_copy = Discount.objects.get(pk=discount.pk)
        Discount.objects.filter(pk=discount.pk).update(times_used=1)  # a cart used it

        discount_update(discount=stale_copy, data={"description": "edited"})

        discount.refresh_from_db()
        assert (discount.times_used, discount.description) == (1, "edited")

    def test_renaming_to_a_code_taken_in_another_case_is_refused_as_taken(self):
        DiscountFactory(code="SUMMER")
        winter = DiscountFactory(code="WINTER")

        with pytest.raises(ValidationError) as info:
            discount_update(discount=winter, data={"code": "summer"})

        assert info.value.error_dict["code"][0].code == "code_taken"

        winter.refresh_from_db()
        assert winter.code == "WINTER"

    def test_lowering_the_limit_below_uses_counted_meanwhile_is_a_400(self, api_client):
        discount = DiscountFactory(code="RACE", usage_limit=5)
        stale_copy = Discount.objects.get(pk=discount.pk)
        Discount.objects.filter(pk=discount.pk).update(times_used=3)

        with pytest.raises(ValidationError) as info:
            discount_update(discount=stale_copy, data={"usage_limit": 2})

        assert info.value.error_dict["usage_limit"][0].code == "below_times_used"
        discount.refresh_from_db()
        assert discount.usage_limit == 5

    def test_patch_switches_a_code_off(self, api_client):
        discount = DiscountFactory(code="SPRING")

        response = api_client.patch(f"{URL}{discount.pk}/", {"active": False})

        assert response.status_code == 200
        discount.refresh_from_db()
        assert discount.active is False

    def test_patch_cannot_take_a_code_already_used_by_another(self, api_client):
        DiscountFactory(code="TAKEN")
        discount = DiscountFactory(code="MINE")

        response = api_client.patch(f"{URL}{discount.pk}/", {"code": "taken"})

        assert error_of(response)["code"] == "code_taken"

    def test_patch_keeping_its_own_code_is_fine(self, api_client):
        discount = DiscountFactory(code="MINE")
        response = api_client.patch(f"{URL}{discount.pk}/", {"code": "mine", "value": 7})
        assert response.status_code == 200
        assert response_json(response)["value"] == 7

    def test_usage_limit_cannot_go_below_uses(self, api_client):
        discount = DiscountFactory(usage_limit=5, times_used=3)
        response = api_client.patch(f"{URL}{discount.pk}/", {"usage_limit": 2})
        assert error_of(response)["code"] == "below_times_used"

    def test_a_used_code_cannot_change_kind(self, api_client):
        discount = DiscountFactory(times_used=1)

        response = api_client.patch(f"{URL}{discount.pk}/", {"kind": "percent", "value": 10})

        assert response.status_code == 400
        assert (error_of(response)["field"], error_of(response)["code"]) == ("kind", "kind_in_use")
        discount.refresh_from_db()
        assert discount.kind == "amount"

    def test_an_unused_code_can_change_kind(self, api_client):
        discount = DiscountFactory()
        response = api_client.patch(f"{URL}{discount.pk}/", {"kind": "percent", "value": 10})
        assert response.status_code == 200

    def test_times_used_is_read_only(self, api_client):
        discount = DiscountFactory()
        api_client.patch(f"{URL}{discount.pk}/", {"times_used": 99})
        discount.refresh_from_db()
        assert discount.times_used == 0

    def test_discounts_are_not_deleted(self, api_client):
        discount = DiscountFactory()
        assert api_client.delete(f"{URL}{discount.pk}/").status_code == 405


@pytest.mark.usefixtures("prod_access")
class TestProductionAccess:
    def test_anonymous_callers_are_refused(self, api_client):
        discount = DiscountFactory()

        assert api_client.get(URL).status_code == 401
        assert create(api_client).status_code == 401
        assert api_client.get(f"{URL}{discount.pk}/").status_code == 401
        assert error_of(api_client.get(URL))["code"] == "not_authenticated"

    def test_non_staff_users_are_refused(self, api_client, django_user_model):
        user = django_user_model.objects.create_user("shopper", password="pw-123456789")
        api_client.force_authenticate(user)

        response = api_client.get(URL)

        assert response.status_code == 403
        assert error_of(response)["code"] == "permission_denied"

    def test_staff_with_a_token_manage_discounts(self, api_client, staff_user):
        token = api_client.post(
            "/api/auth/token/", {"username": "staff", "password": "a-long-staff-password"}
        ).json()["token"]
        api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

        assert create(api_client).status_code == 201
        assert api_client.get(URL).status_code == 200

    def test_a_wrong_token_is_a_401(self, api_client):
        api_client.credentials(HTTP_AUTHORIZATION="Token nope")
        response = api_client.get(URL)
        assert response.status_code == 401
        assert error_of(response)["code"] == "authentication_failed"
