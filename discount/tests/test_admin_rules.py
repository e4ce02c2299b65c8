"""Every discount rule holds whichever door is used: the admin's form and the API refuse
the same input with the same message, because both save through `discount_create` /
`discount_update`, which run `Discount.clean()`. Deleting goes through `discount_delete`.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cart.tests.factories import CartFactory
from common.testing import response_json
from discount.errors import DiscountInUseError
from discount.models import Discount
from discount.services import discount_create, discount_delete
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/discount/discount/add/"
API = "/api/discount/"
LATER = timezone.now() + timedelta(days=30)


def change_url(discount) -> str:
    return f"/admin/discount/discount/{discount.pk}/change/"


def admin_form(**fields) -> dict:
    """The admin form's POST data: a valid code unless `fields` say otherwise."""
    data = {
        "code": "NEW5",
        "kind": "amount",
        "value": "5",
        "currency": "",
        "description": "",
        "started_0": "",
        "started_1": "",
        "ended_0": LATER.date().isoformat(),
        "ended_1": "00:00:00",
        "active": "on",
        "min_cart_total": "",
        "usage_limit": "",
    }
    data.update({name: value for name, value in fields.items() if value is not None})
    return {name: value for name, value in data.items() if value is not False}


def of_discount(discount) -> dict:
    return admin_form(
        code=discount.code,
        kind=discount.kind,
        value=str(discount.value),
        currency=discount.currency,
        usage_limit="" if discount.usage_limit is None else str(discount.usage_limit),
    )


def admin_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response  # the form again, nothing saved
    return dict(response.context["adminform"].form.errors)


def api_problems(response) -> dict[str, list[str]]:
    assert response.status_code == 400, response.content
    problems = {}
    for problem in response_json(response)["error"]["details"]:
        problems.setdefault(problem["field"], []).append((problem["code"], problem["message"]))
    return problems


# rule code: (what exists first, admin form fields, API body, field at fault)
NEW_CODE_RULES = {
    "code_taken": ("SPRING", {"code": "spring"}, {"code": "spring"}, "code"),
    "invalid_code": (None, {"code": "has space"}, {"code": "has space"}, "code"),
    "value_not_positive": (None, {"value": "0"}, {"value": 0}, "value"),
    "percent_above_100": (
        None,
        {"kind": "percent", "value": "150"},
        {"kind": "percent", "value": 150},
        "value",
    ),
    "amount_too_large": (None, {"value": "20000000000"}, {"value": "20000000000"}, "value"),
    "too_many_decimals": (
        None,
        {"value": "0.5", "currency": "JPY"},
        {"value": "0.5", "currency": "JPY"},
        "value",
    ),
    "unknown_currency": (None, {"currency": "ZZZ"}, {"currency": "ZZZ"}, "currency"),
    "currency_required": (
        None,
        {"min_cart_total": "10"},
        {"min_cart_total": 10},
        "min_cart_total",
    ),
    "out_of_range": (
        None,
        {"min_cart_total": "-1", "currency": "USD"},
        {"min_cart_total": -1, "currency": "USD"},
        "min_cart_total",
    ),
    "ends_before_start": (
        None,
        {"started_0": "2100-01-02", "started_1": "00:00:00", "ended_0": "2100-01-01"},
        {"started": "2100-01-02T00:00:00Z", "ended": "2100-01-01T00:00:00Z"},
        "ended",
    ),
    "already_expired": (
        None,
        {"ended_0": "2001-01-01"},
        {"ended": "2001-01-01T00:00:00Z"},
        "ended",
    ),
}


@pytest.mark.parametrize("rule", NEW_CODE_RULES)
def test_a_new_code_is_refused_alike_by_the_admin_and_the_api(admin_client, api_client, rule):
    existing, form_fields, api_fields, field = NEW_CODE_RULES[rule]
    if existing:
        DiscountFactory(code=existing)
    before = Discount.objects.count()

    in_admin = admin_errors(admin_client.post(ADD, admin_form(**form_fields)))
    body = {"code": "NEW5", "value": 5, "ended": LATER.isoformat(), **api_fields}
    in_api = api_problems(api_client.post(API, body, format="json"))

    messages = [message for code, message in in_api[field] if code == rule]
    assert messages, in_api
    assert messages[0] in in_admin[field]
    assert Discount.objects.count() == before


EDIT_RULES = {
    # rule code: (the code's state, the change, field at fault)
    "kind_in_use": ({"times_used": 1}, {"kind": "percent", "value": "10"}, "kind"),
    "below_times_used": ({"times_used": 3, "usage_limit": 5}, {"usage_limit": "2"}, "usage_limit"),
    "code_taken": ({}, {"code": "taken"}, "code"),
}


@pytest.mark.parametrize("rule", EDIT_RULES)
def test_an_edit_is_refused_alike_by_the_admin_and_the_api(admin_client, api_client, rule):
    state, change, field = EDIT_RULES[rule]
    DiscountFactory(code="TAKEN")
    discount = DiscountFactory(code="MINE", **state)

    in_admin = admin_errors(
        admin_client.post(change_url(discount), {**of_discount(discount), **change})
    )
    in_api = api_problems(api_client.patch(f"{API}{discount.pk}/", change, format="json"))

    messages = [message for code, message in in_api[field] if code == rule]
    assert messages, in_api
    assert messages[0] in in_admin[field]
    fresh = Discount.objects.get(pk=discount.pk)
    assert (fresh.code, fresh.kind, fresh.usage_limit) == (
        discount.code,
        discount.kind,
        discount.usage_limit,
    )


def test_a_duplicate_code_reads_as_a_sentence_not_a_constraint_name(admin_client):
    DiscountFactory(code="SPRING")

    response = admin_client.post(ADD, admin_form(code="Spring"))

    html = response.content.decode()
    assert "A discount with this code already exists" in html
    assert "discount_code_unique_ignoring_case" not in html


def test_the_admin_saves_through_the_service_with_the_models_normalization(admin_client):
    response = admin_client.post(ADD, admin_form(code="EURO5", currency="eur", value="5.5"))

    assert response.status_code == 302, admin_errors(response)
    saved = Discount.objects.get(code="EURO5")
    assert (saved.currency, saved.value, saved.times_used) == ("EUR", Decimal("5.5"), 0)


def test_an_admin_edit_of_a_used_code_keeps_its_use_count(admin_client):
    discount = DiscountFactory(code="USED", times_used=2)

    response = admin_client.post(
        change_url(discount), {**of_discount(discount), "description": "Edited"}
    )

    assert response.status_code == 302, admin_errors(response)
    discount.refresh_from_db()
    assert (discount.description, discount.times_used) == ("Edited", 2)


def test_a_code_taken_between_the_form_and_the_save_saves_nothing_and_says_why(
    admin_client, monkeypatch
):
    DiscountFactory(code="SPRING")
    # Another request takes the code after the form's checks ran: only the database sees it.
    monkeypatch.setattr(Discount, "code_taken", lambda self: False)
    monkeypatch.setattr(Discount, "validate_constraints", lambda self, exclude=None: None)

    response = admin_client.post(ADD, admin_form(code="spring"), follow=True)

    assert Discount.objects.count() == 1
    assert "Nothing was saved: A discount with this code already exists" in (
        response.content.decode()
    )


class TestDeleting:
    def test_a_code_no_cart_used_is_deleted_through_the_service(self, admin_client):
        discount = DiscountFactory(code="TYPO")

        confirm = admin_client.get(f"/admin/discount/discount/{discount.pk}/delete/")
        response = admin_client.post(
            f"/admin/discount/discount/{discount.pk}/delete/", {"post": "yes"}
        )

        assert confirm.status_code == 200
        assert response.status_code == 302
        assert not Discount.objects.filter(pk=discount.pk).exists()

    def test_a_code_a_cart_used_is_refused_with_the_reason(self, admin_client):
        discount = DiscountFactory(code="USED", times_used=1)
        CartFactory(discount=discount, amount_discounted=Decimal("5"))

        response = admin_client.get(f"/admin/discount/discount/{discount.pk}/delete/", follow=True)

        html = response.content.decode()
        assert "1 cart used this code, so it stays: switch it off instead." in html
        assert "permission" not in html
        assert Discount.objects.filter(pk=discount.pk).exists()

    def test_the_bulk_delete_refuses_used_codes_and_deletes_nothing(self, admin_client):
        used = DiscountFactory(code="USED", times_used=1)
        CartFactory(discount=used, amount_discounted=Decimal("5"))
        unused = DiscountFactory(code="UNUSED")

        response = admin_client.post(
            "/admin/discount/discount/",
            {"action": "delete_selected", "_selected_action": [used.pk, unused.pk]},
            follow=True,
        )

        assert "“USED” cannot be deleted: 1 cart used this code" in response.content.decode()
        assert Discount.objects.count() == 2

    def test_the_service_refuses_whichever_door_calls_it(self):
        discount = DiscountFactory(code="USED", times_used=2)
        CartFactory.create_batch(2, discount=discount, amount_discounted=Decimal("5"))

        with pytest.raises(DiscountInUseError, match="2 carts used this code"):
            discount_delete(discount=discount)


# Text the API's JSON reader refuses (common.api.read_json), and the words it says so in.
UNREADABLE_SCOPES = {
    "nested 2,000 deep": ("[" * 2000 + "]" * 2000, "nested deeper than 32 levels"),
    "a 5,000-digit number": ("[1" + "0" * 5000 + "]", "a number is longer than 100 characters"),
}


@pytest.mark.parametrize("scope", ["skus", "sku_prefixes"])
@pytest.mark.parametrize("unreadable", UNREADABLE_SCOPES)
def test_a_scope_the_api_would_not_read_is_a_form_error_on_add_and_change(
    admin_client, scope, unreadable
):
    text, reason = UNREADABLE_SCOPES[unreadable]
    discount = DiscountFactory(code="MINE", skus=["TEA"])

    added = admin_errors(admin_client.post(ADD, admin_form(**{scope: text})))
    changed = admin_errors(
        admin_client.post(change_url(discount), {**of_discount(discount), scope: text})
    )

    for errors in (added, changed):
        assert reason in " ".join(errors[scope]), errors
    assert list(Discount.objects.values_list("code", "skus", "sku_prefixes")) == [
        ("MINE", ["TEA"], [])
    ]


def test_a_scope_typed_as_json_saves(admin_client):
    response = admin_client.post(
        ADD, admin_form(skus='["TEA", "MUG"]', sku_prefixes=' ["COFFEE-"] ')
    )

    assert response.status_code == 302, admin_errors(response)
    saved = Discount.objects.get(code="NEW5")
    assert (saved.skus, saved.sku_prefixes) == (["TEA", "MUG"], ["COFFEE-"])


@pytest.mark.parametrize("scope", ["skus", "sku_prefixes"])
@pytest.mark.parametrize("text", ['"TEA"', "{}", "[1]"])
def test_a_scope_that_is_not_a_list_of_skus_says_so_in_the_admin(admin_client, scope, text):
    errors = admin_errors(admin_client.post(ADD, admin_form(**{scope: text})))

    assert errors[scope] == ["Send a list of SKUs (strings)."]
    assert not Discount.objects.exists()


@pytest.mark.parametrize("scope", ["skus", "sku_prefixes"])
def test_a_scope_that_is_not_a_list_has_the_same_code_from_the_service_and_the_api(
    api_client, scope
):
    with pytest.raises(ValidationError) as caught:
        discount_create(code="SCOPE", value=Decimal("1"), **{scope: "TEA"})
    response = api_client.post(API, {"code": "SCOPE", "value": 1, scope: "TEA"}, format="json")

    assert caught.value.error_dict[scope][0].code == "not_a_list"
    assert "not_a_list" in [code for code, _ in api_problems(response)[scope]]
    assert not Discount.objects.exists()


# Amounts the API refuses (common.fields.is_plain_number): Decimal() reads them as 12,
# 1000 and 12, which nobody typing them means.
NOT_PLAIN_AMOUNTS = ["١٢", "1_000", "１２"]
AMOUNTS = ["value", "min_cart_total", "budget_amount"]


@pytest.mark.parametrize("field", AMOUNTS)
@pytest.mark.parametrize("amount", NOT_PLAIN_AMOUNTS)
def test_an_amount_the_api_refuses_is_a_form_error_on_add_and_change(
    admin_client, api_client, field, amount
):
    discount = DiscountFactory(code="MINE", currency="USD")
    # min_cart_total and budget_amount need a currency: only the amount can be at fault.
    added = admin_errors(admin_client.post(ADD, admin_form(currency="USD", **{field: amount})))
    changed = admin_errors(
        admin_client.post(change_url(discount), {**of_discount(discount), field: amount})
    )
    in_api = api_problems(
        api_client.post(API, {"code": "NEW5", "value": 5, field: amount}, format="json")
    )

    assert added[field] == changed[field] == ["Enter a number."]
    assert [code for code, _ in in_api[field]] == ["invalid"]
    assert list(Discount.objects.values_list("code", field)) == [
        ("MINE", getattr(discount, field))
    ]


def test_plain_amounts_still_save_on_add_and_change(admin_client):
    amounts = {"value": " 12.5 ", "min_cart_total": "20", "budget_amount": "1e3"}
    discount = DiscountFactory(code="MINE", currency="USD")

    added = admin_client.post(ADD, admin_form(currency="USD", **amounts))
    changed = admin_client.post(change_url(discount), {**of_discount(discount), **amounts})

    assert added.status_code == changed.status_code == 302, admin_errors(added)
    for code in ("NEW5", "MINE"):
        saved = Discount.objects.get(code=code)
        assert (saved.value, saved.min_cart_total, saved.budget_amount) == (
            Decimal("12.5"),
            Decimal("20"),
            Decimal("1000"),
        )


# Whole numbers the API refuses (common.fields.is_ascii_number): int() reads them as 12.
NOT_ASCII_NUMBERS = ["١٢", "１２", "1٢", "1_000"]
WHOLE_NUMBERS = ["usage_limit", "limit_per_customer"]


@pytest.mark.parametrize("field", WHOLE_NUMBERS)
@pytest.mark.parametrize("number", NOT_ASCII_NUMBERS)
def test_a_whole_number_the_api_refuses_is_a_form_error_on_add_and_change(
    admin_client, api_client, field, number
):
    discount = DiscountFactory(code="MINE")

    added = admin_errors(admin_client.post(ADD, admin_form(**{field: number})))
    changed = admin_errors(
        admin_client.post(change_url(discount), {**of_discount(discount), field: number})
    )
    in_api = api_problems(
        api_client.post(API, {"code": "NEW5", "value": 5, field: number}, format="json")
    )

    assert added[field] == changed[field] == ["Enter a whole number."]
    assert [code for code, _ in in_api[field]] == ["invalid"]
    assert list(Discount.objects.values_list("code", field)) == [("MINE", None)]


def test_whole_numbers_in_ascii_digits_still_save_on_add_and_change(admin_client):
    numbers = {"usage_limit": "12", "limit_per_customer": " 3 "}
    discount = DiscountFactory(code="MINE")

    added = admin_client.post(ADD, admin_form(**numbers))
    changed = admin_client.post(change_url(discount), {**of_discount(discount), **numbers})

    assert added.status_code == changed.status_code == 302, admin_errors(added)
    assert sorted(Discount.objects.values_list("code", "usage_limit", "limit_per_customer")) == [
        ("MINE", 12, 3),
        ("NEW5", 12, 3),
    ]
