"""Campaign rules of a code: scope by SKU, per customer, first order only, budget."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cart.models import Cart, PaymentStatus
from cart.services import LineInput, cart_create, cart_line_add
from cart.tests.factories import CartFactory, itemized_cart
from common.testing import error_of, response_json
from discount.models import DiscountReservation
from discount.services import (
    discount_consume_reservation,
    discount_create,
    discount_hold_for_payment,
    discount_update,
)
from discount.tests.factories import DiscountFactory, PercentDiscountFactory

pytestmark = pytest.mark.django_db


def apply(client, cart, code):
    return client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})


def change_quantity(client, cart, quantity):
    line = cart.lines.get()
    return client.patch(
        f"/api/cart/{cart.pk}/lines/{line.pk}/", {"quantity": quantity}, format="json"
    )


def paid(cart):
    Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.SUCCESS)


class TestScope:
    def test_a_percentage_applies_to_the_listed_skus_and_prefixes_only(self, api_client):
        cart = itemized_cart(("TEA-GREEN", 2, "4.50"), ("TEA-BLACK", 1, "5"), ("MUG", 1, "11"))
        PercentDiscountFactory(code="TEA10", value=Decimal("10"), sku_prefixes=["TEA-"])

        data = response_json(apply(api_client, cart, "TEA10"))

        assert data["amount_discounted"] == Decimal("1.40")  # 10 % of 14.00 of tea
        assert [line["amount_discounted"] for line in data["lines"]] == [
            Decimal("0.90"),
            Decimal("0.50"),
            Decimal("0.00"),
        ]

    def test_a_flat_amount_is_capped_at_the_lines_it_applies_to(self, api_client):
        cart = itemized_cart(("TEA", 1, "3"), ("MUG", 1, "11"))
        DiscountFactory(code="TEN", value=Decimal("10"), skus=["TEA"])

        data = response_json(apply(api_client, cart, "TEN"))

        assert (data["amount_discounted"], data["total"]) == (Decimal("3.00"), Decimal("11.00"))

    def test_a_sku_must_match_exactly(self, api_client):
        cart = itemized_cart(("TEA-GREEN", 1, "3"))
        DiscountFactory(code="TEA", skus=["TEA", "tea-green"])

        response = apply(api_client, cart, "TEA")

        assert response.status_code == 400
        assert error_of(response)["code"] == "discount_no_matching_lines"

    def test_a_scoped_code_does_not_fit_a_cart_without_lines(self, api_client):
        DiscountFactory(code="TEA", skus=["TEA"])

        response = apply(api_client, CartFactory(), "TEA")

        assert error_of(response)["code"] == "discount_no_matching_lines"

    def test_the_minimum_is_compared_with_the_whole_cart(self, api_client):
        cart = itemized_cart(("TEA", 1, "3"), ("MUG", 1, "11"))
        DiscountFactory(code="TEA", skus=["TEA"], currency="USD", min_cart_total=Decimal("14"))

        assert apply(api_client, cart, "TEA").status_code == 200

    def test_removing_the_last_matching_line_takes_the_code_off(self, api_client):
        cart = itemized_cart(("TEA", 1, "3"), ("MUG", 1, "11"))
        DiscountFactory(code="TEA", skus=["TEA"])
        apply(api_client, cart, "TEA")

        response = api_client.delete(f"/api/cart/{cart.pk}/lines/{cart.lines.get(sku='TEA').pk}/")

        removed = response_json(response)["discount_removed"]
        assert removed["error"]["code"] == "discount_no_matching_lines"

    def test_adding_a_matching_line_grows_the_discount_on_it(self):
        cart = itemized_cart(("TEA", 1, "3"), ("MUG", 1, "11"))
        cart.apply_discount(DiscountFactory(code="TEA", value=Decimal("5"), skus=["TEA"]))

        change = cart_line_add(cart=cart, line=LineInput("TEA", "Tea", 1, Decimal("3")))

        assert change.cart.amount_discounted == Decimal("5")
        assert sorted(change.cart.lines.values_list("sku", "amount_discounted")) == [
            ("MUG", Decimal("0")),
            ("TEA", Decimal("2.5")),
            ("TEA", Decimal("2.5")),
        ]

    @pytest.mark.parametrize(
        ("skus", "code"),
        [("TEA", "not_a_list"), (["bad sku"], "invalid_sku"), ([1], "not_a_list")],
    )
    def test_a_scope_must_be_a_list_of_skus(self, skus, code):
        with pytest.raises(ValidationError) as caught:
            discount_create(code="SCOPE", value=Decimal("1"), skus=skus)
        assert caught.value.error_dict["skus"][0].code == code

    def test_a_scope_may_list_200_skus_and_no_more(self):
        skus = [f"SKU-{n}" for n in range(200)]

        created = discount_create(code="MANY", value=Decimal("1"), skus=skus)

        assert created.skus == skus
        with pytest.raises(ValidationError) as caught:
            discount_create(code="TOOMANY", value=Decimal("1"), skus=[*skus, "SKU-200"])
        assert caught.value.error_dict["skus"][0].code == "too_many_entries"

    def test_a_scope_sku_may_be_as_long_as_a_lines_sku_and_no_longer(self):
        longest = "S" * 64

        created = discount_create(code="LONG", value=Decimal("1"), sku_prefixes=[longest])

        assert created.sku_prefixes == [longest]
        with pytest.raises(ValidationError) as caught:
            discount_create(code="TOOLONG", value=Decimal("1"), sku_prefixes=[longest + "S"])
        assert caught.value.error_dict["sku_prefixes"][0].code == "invalid_sku"

    @pytest.mark.parametrize("nothing", [None, "", []])
    def test_a_scope_cleared_with_nothing_makes_the_code_apply_to_the_whole_cart(self, nothing):
        discount = discount_create(code="SCOPED", value=Decimal("1"), skus=["MUG"])

        edited = discount_update(discount=discount, data={"skus": nothing})

        assert edited.skus == []
        assert edited.applies_to("TEA")

    def test_the_api_takes_and_shows_the_scope(self, staff_client):
        response = staff_client.post(
            "/api/discount/",
            {"code": "TEA", "value": 1, "skus": ["MUG"], "sku_prefixes": ["TEA-"]},
            format="json",
        )

        data = response_json(response)
        assert response.status_code == 201, data
        assert (data["skus"], data["sku_prefixes"]) == (["MUG"], ["TEA-"])


class TestPerCustomer:
    def test_a_per_customer_code_needs_a_customer_ref(self, api_client):
        DiscountFactory(code="ONCE", limit_per_customer=1)

        response = apply(api_client, CartFactory(), "ONCE")

        assert error_of(response)["code"] == "discount_customer_required"

    def test_a_customer_uses_it_as_often_as_it_allows(self, api_client):
        DiscountFactory(code="TWICE", limit_per_customer=2)
        carts = [CartFactory(customer_ref="cus_1") for _ in range(3)]

        statuses = [apply(api_client, cart, "TWICE").status_code for cart in carts]

        assert statuses == [200, 200, 400]
        assert error_of(apply(api_client, carts[2], "TWICE"))["code"] == (
            "discount_customer_limit_reached"
        )
        assert apply(api_client, CartFactory(customer_ref="cus_2"), "TWICE").status_code == 200

    def test_consumed_uses_count_and_released_ones_do_not(self, api_client):
        discount = DiscountFactory(code="ONCE", limit_per_customer=1)
        first = CartFactory(customer_ref="cus_1")
        first.apply_discount(discount)
        DiscountReservation.objects.update(expires=timezone.now() - timedelta(seconds=1))

        assert apply(api_client, CartFactory(customer_ref="cus_1"), "ONCE").status_code == 200
        DiscountReservation.objects.update(status="consumed")
        assert apply(api_client, CartFactory(customer_ref="cus_1"), "ONCE").status_code == 400

    def test_a_first_order_code_is_refused_to_a_customer_with_a_paid_cart(self, api_client):
        DiscountFactory(code="WELCOME", first_order_only=True)
        paid(CartFactory(customer_ref="cus_1"))

        response = apply(api_client, CartFactory(customer_ref="cus_1"), "WELCOME")

        assert error_of(response)["code"] == "discount_first_order_only"
        assert apply(api_client, CartFactory(customer_ref="cus_2"), "WELCOME").status_code == 200

    def test_a_first_order_code_is_once_per_customer(self, api_client):
        DiscountFactory(code="WELCOME", first_order_only=True)
        apply(api_client, CartFactory(customer_ref="cus_1"), "WELCOME")

        response = apply(api_client, CartFactory(customer_ref="cus_1"), "WELCOME")

        assert error_of(response)["code"] == "discount_customer_limit_reached"

    def test_a_first_order_code_is_once_per_customer_whatever_its_per_customer_limit(
        self, api_client
    ):
        DiscountFactory(code="WELCOME", first_order_only=True, limit_per_customer=3)
        first, second = (CartFactory(customer_ref="cus_1") for _ in range(2))

        assert apply(api_client, first, "WELCOME").status_code == 200
        response = apply(api_client, second, "WELCOME")

        assert error_of(response)["code"] == "discount_customer_limit_reached"

    def test_a_first_order_code_with_a_per_customer_limit_of_zero_is_refused_to_everyone(
        self, api_client
    ):
        DiscountFactory(code="WELCOME", first_order_only=True, limit_per_customer=0)

        response = apply(api_client, CartFactory(customer_ref="cus_1"), "WELCOME")

        assert error_of(response)["code"] == "discount_customer_limit_reached"

    def test_paying_after_another_first_order_leaves_the_code_off(self):
        discount = DiscountFactory(code="WELCOME", first_order_only=True)
        cart = CartFactory(customer_ref="cus_1")
        cart.apply_discount(discount)
        paid(CartFactory(customer_ref="cus_1"))

        assert discount_hold_for_payment(cart=cart) is False

        cart.refresh_from_db()
        assert (cart.discount, cart.total) == (None, cart.subtotal)

    def test_the_customer_ref_is_taken_on_create_and_shown(self, api_client):
        response = api_client.post(
            "/api/cart/",
            {"total": 20, "currency": "USD", "items_number": 1, "customer_ref": "cus_42"},
        )

        assert response_json(response)["customer_ref"] == "cus_42"
        bad = api_client.post(
            "/api/cart/",
            {"total": 20, "currency": "USD", "items_number": 1, "customer_ref": "a b"},
        )
        assert error_of(bad)["field"] == "customer_ref"


class TestBudget:
    def test_reserved_and_consumed_amounts_count_against_the_budget(self, api_client):
        discount = DiscountFactory(
            code="BUDGET", value=Decimal("5"), currency="USD", budget_amount=Decimal("12")
        )
        one, two, three = (CartFactory() for _ in range(3))
        assert apply(api_client, one, "BUDGET").status_code == 200
        one.refresh_from_db()
        discount_consume_reservation(cart=one)
        assert apply(api_client, two, "BUDGET").status_code == 200

        response = apply(api_client, three, "BUDGET")

        assert error_of(response)["code"] == "discount_budget_exhausted"
        discount.refresh_from_db()
        assert discount.amount_consumed == Decimal("5")
        assert discount.amount_held(at=timezone.now()) == Decimal("10")

    def test_a_line_change_that_would_pass_the_budget_takes_the_code_off(self, api_client):
        PercentDiscountFactory(
            code="HALF", value=Decimal("50"), currency="USD", budget_amount=Decimal("6")
        )
        cart = itemized_cart(("TEA", 2, "5"))
        apply(api_client, cart, "HALF")

        response = api_client.patch(
            f"/api/cart/{cart.pk}/lines/{cart.lines.get().pk}/", {"quantity": 3}, format="json"
        )

        removed = response_json(response)["discount_removed"]
        assert removed["error"]["code"] == "discount_budget_exhausted"

    def test_a_line_change_within_the_budget_resizes_the_reservation(self, api_client):
        PercentDiscountFactory(
            code="HALF", value=Decimal("50"), currency="USD", budget_amount=Decimal("10")
        )
        cart = itemized_cart(("TEA", 3, "5"))
        apply(api_client, cart, "HALF")

        api_client.patch(
            f"/api/cart/{cart.pk}/lines/{cart.lines.get().pk}/", {"quantity": 4}, format="json"
        )

        assert DiscountReservation.objects.get().amount == Decimal("10")

    def test_a_code_applied_before_uses_were_reserved_is_resized_within_the_budget(
        self, api_client
    ):
        # A cart that took its code before uses were reserved holds none: a line change
        # asks the budget for the whole new amount.
        discount = PercentDiscountFactory(
            code="HALF", value=Decimal("50"), currency="USD", budget_amount=Decimal("10")
        )
        cart = itemized_cart(("TEA", 3, "5"))
        cart.set_discount(discount, Decimal("7.50"))
        cart.save_discount()

        response = change_quantity(api_client, cart, 4)

        assert response_json(response)["discount_removed"] is None
        cart.refresh_from_db()
        assert (cart.discount_id, cart.amount_discounted, cart.total) == (
            discount.pk,
            Decimal("10.00"),
            Decimal("10.00"),
        )

    def test_a_code_applied_before_uses_were_reserved_leaves_a_cart_past_the_budget(
        self, api_client
    ):
        discount = PercentDiscountFactory(
            code="HALF", value=Decimal("50"), currency="USD", budget_amount=Decimal("8")
        )
        cart = itemized_cart(("TEA", 3, "5"))
        cart.set_discount(discount, Decimal("7.50"))
        cart.save_discount()

        response = change_quantity(api_client, cart, 4)

        removed = response_json(response)["discount_removed"]
        assert removed["error"]["code"] == "discount_budget_exhausted"
        cart.refresh_from_db()
        assert (cart.discount, cart.total) == (None, Decimal("20.00"))

    def test_a_line_change_keeps_a_first_order_code_held_by_the_cart_until_payment(
        self, api_client
    ):
        # The cart holds the code's use: a line change that asks no more of the budget
        # does not ask the customer rules again; paying does (see below).
        discount = DiscountFactory(
            code="WELCOME",
            value=Decimal("5"),
            currency="USD",
            budget_amount=Decimal("100"),
            first_order_only=True,
        )
        cart = cart_create(
            currency="USD",
            customer_ref="cus_1",
            lines=[LineInput("TEA", "Tea", 3, Decimal("4"))],
        )
        assert apply(api_client, cart, "WELCOME").status_code == 200
        paid(CartFactory(customer_ref="cus_1"))

        response = change_quantity(api_client, cart, 2)

        assert response_json(response)["discount_removed"] is None
        cart.refresh_from_db()
        assert (cart.discount_id, cart.total) == (discount.pk, Decimal("3.00"))
        assert discount_hold_for_payment(cart=cart) is False

    def test_a_budget_needs_a_currency_and_cannot_drop_below_what_is_held(self):
        with pytest.raises(ValidationError) as caught:
            discount_create(code="B", value=Decimal("1"), budget_amount=Decimal("10"))
        assert caught.value.error_dict["budget_amount"][0].code == "currency_required"

        discount = discount_create(
            code="B", value=Decimal("5"), currency="USD", budget_amount=Decimal("10")
        )
        CartFactory().apply_discount(discount)
        with pytest.raises(ValidationError) as caught:
            discount_update(discount=discount, data={"budget_amount": Decimal("4")})
        assert caught.value.error_dict["budget_amount"][0].code == "below_amount_held"

    def test_a_budget_may_be_lowered_to_exactly_what_the_code_has_given(self):
        discount = discount_create(
            code="B", value=Decimal("5"), currency="USD", budget_amount=Decimal("10")
        )
        cart = CartFactory()
        cart.apply_discount(discount)
        discount_consume_reservation(cart=cart)

        lowered = discount_update(discount=discount, data={"budget_amount": Decimal("5")})

        assert lowered.budget_amount == Decimal("5")
        assert lowered.amount_held(at=timezone.now()) == Decimal("5")


def test_a_cart_created_with_a_customer_keeps_it():
    cart = cart_create(currency="USD", total=Decimal(1), items_number=1, customer_ref="c1")
    assert Cart.objects.get(pk=cart.pk).customer_ref == "c1"
