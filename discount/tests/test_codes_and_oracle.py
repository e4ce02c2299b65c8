"""Codes are ASCII and compared exactly (no look-alikes), and an anonymous caller in
production cannot tell which codes exist from the refusals."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.models import Cart
from cart.services import cart_apply_discount
from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from discount.errors import DiscountInactiveError, DiscountInvalidError
from discount.models import Discount, normalize_code
from discount.services import discount_refusal_reasons
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def apply(client, cart, code):
    return client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})


@pytest.mark.parametrize(
    "look_alike",
    [
        "\u212a20",  # KELVIN SIGN, which lower() turns into "k"
        "ＫＫ２０",  # full-width
        "K20\u0301",  # a combining accent
        "К20",  # Cyrillic KA
        "K 20",
    ],
)
def test_a_look_alike_never_matches_a_code(api_client, look_alike):
    DiscountFactory(code="K20")
    cart = CartFactory()

    response = apply(api_client, cart, look_alike)

    assert response.status_code == 400
    error = error_of(response)
    assert (error["field"], error["code"]) == ("code", "invalid_code")
    assert "letters A-Z" in error["message"]
    cart.refresh_from_db()
    assert cart.discount is None


def test_the_code_itself_in_any_case_still_matches(api_client):
    DiscountFactory(code="K20")
    assert apply(api_client, CartFactory(), " k20 ").status_code == 200


@pytest.mark.parametrize("raw", ["DIS20", "dis-20_x", "9LIVES"])
def test_codes_of_the_alphabet_normalize_to_lower_case(raw):
    assert normalize_code(raw) == raw.lower()


def test_a_look_alike_filter_finds_nothing(api_client):
    DiscountFactory(code="K20")
    results = response_json(api_client.get("/api/discount/", {"code": "\u212a20"}))["results"]
    assert results == []
    assert len(response_json(api_client.get("/api/discount/", {"code": "k20"}))["results"]) == 1


@pytest.mark.parametrize("code", ["AB\nC", "Ké20", "-START", "A" * 65])
def test_a_code_outside_the_alphabet_cannot_be_created(api_client, code):
    response = api_client.post("/api/discount/", {"code": code, "value": 5})

    assert response.status_code == 400
    assert error_of(response)["field"] == "code"
    assert not Discount.objects.exists()


def test_the_model_refuses_a_trailing_newline_too():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="letters, digits"):
        Discount(code="ABC\n", value=5).full_clean()


# --- No oracle ------------------------------------------------------------------------

NOW = timezone.now()
UNAVAILABLE = [
    pytest.param(None, id="not_found"),
    pytest.param({"active": False}, id="inactive"),
    pytest.param({"started": NOW + timedelta(days=1)}, id="not_started"),
    pytest.param({"usage_limit": 1, "times_used": 1}, id="used_up"),
]


@pytest.fixture
def hidden_reasons(settings):
    settings.DISCOUNT_HIDE_REFUSAL_REASONS = True  # the ENV=PROD default


@pytest.mark.usefixtures("hidden_reasons")
class TestProductionRefusals:
    @pytest.mark.parametrize("discount", UNAVAILABLE)
    def test_every_unusable_code_gets_one_answer(self, api_client, discount):
        if discount is not None:
            DiscountFactory(code="SECRET", **discount)
        nothing_there = apply(api_client, CartFactory(), "NO-SUCH-CODE")

        response = apply(api_client, CartFactory(), "SECRET")

        assert response.status_code == 400
        assert response.content == nothing_there.content
        error = error_of(response)
        assert (error["code"], error["field"]) == ("discount_invalid", "code")
        assert error["message"] == "This discount code is not valid."

    def test_an_expired_code_gets_the_same_answer(self, api_client):
        expired = DiscountFactory(code="OLD")
        Discount.objects.filter(pk=expired.pk).update(ended=NOW)

        assert error_of(apply(api_client, CartFactory(), "OLD"))["code"] == "discount_invalid"

    def test_a_code_used_up_by_reservations_gets_the_same_answer(self, api_client):
        DiscountFactory(code="POPULAR", usage_limit=1)
        apply(api_client, CartFactory(), "POPULAR")
        assert error_of(apply(api_client, CartFactory(), "POPULAR"))["code"] == "discount_invalid"

    @pytest.mark.parametrize(
        "discount",
        [
            {"currency": "EUR"},  # a cart in another currency
            {"currency": "USD", "min_cart_total": 100},  # a cart below the minimum
            {},
        ],
        ids=["currency", "minimum", "fits"],
    )
    def test_a_code_used_up_by_reservations_answers_as_one_that_does_not_exist(
        self, api_client, discount, django_assert_num_queries
    ):
        used_up = DiscountFactory(code="TAKEN", usage_limit=1, **discount)
        holder = CartFactory(currency=used_up.currency or "USD", total=Decimal("500.00"))
        cart_apply_discount(cart=holder, discount=used_up)
        cart = CartFactory()
        nothing_there = apply(api_client, cart, "NO-SUCH-CODE")

        with django_assert_num_queries(len(_queries(api_client, cart, "NO-SUCH-CODE"))):
            response = apply(api_client, cart, "TAKEN")  # the same path, query for query

        assert (response.status_code, response.content) == (400, nothing_there.content)
        assert Cart.objects.get(pk=cart.pk).discount_id is None

    @pytest.mark.parametrize(
        ("discount", "code"),
        [
            ({"currency": "EUR"}, "discount_currency_mismatch"),
            ({"currency": "USD", "min_cart_total": 100}, "discount_minimum_not_met"),
        ],
    )
    def test_refusals_about_the_cart_stay_specific(self, api_client, discount, code):
        DiscountFactory(code="LIVE", **discount)
        assert error_of(apply(api_client, CartFactory(), "LIVE"))["code"] == code

    @pytest.mark.parametrize("discount", UNAVAILABLE)
    def test_staff_see_the_specific_reason(self, staff_client, discount):
        if discount is not None:
            DiscountFactory(code="SECRET", **discount)
        code = error_of(apply(staff_client, CartFactory(), "SECRET"))["code"]
        assert code != "discount_invalid"
        assert code.startswith("discount_")

    def test_a_discounted_cart_refuses_any_code_the_same_way(self, api_client):
        DiscountFactory(code="FIRST")
        DiscountFactory(code="SECOND")
        cart = CartFactory()
        apply(api_client, cart, "FIRST")

        answers = {
            error_of(apply(api_client, cart, code))["code"]
            for code in ("SECOND", "NO-SUCH-CODE", "FIRST")
        }

        assert answers == {"discount_already_applied"}

    def test_a_code_switched_off_during_the_request_is_hidden_too(self):
        discount = DiscountFactory(code="LATE")
        Discount.objects.filter(pk=discount.pk).update(active=False)

        with pytest.raises(DiscountInvalidError), discount_refusal_reasons(reveal=False):
            cart_apply_discount(cart=CartFactory(), discount=discount)  # the stale copy
        with pytest.raises(DiscountInactiveError), discount_refusal_reasons(reveal=True):
            cart_apply_discount(cart=CartFactory(), discount=discount)


def test_dev_keeps_the_specific_reasons_of_the_tutorial(api_client):
    DiscountFactory(code="OFF", active=False)
    assert error_of(apply(api_client, CartFactory(), "OFF"))["code"] == "discount_inactive"
    assert error_of(apply(api_client, CartFactory(), "NOPE"))["code"] == "discount_not_found"


def _queries(client, cart, code) -> list:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        apply(client, cart, code)
    return captured.captured_queries
