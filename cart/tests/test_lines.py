"""Carts made of lines: created with them, changed while pending, the discount
re-evaluated with each change and allocated to the lines."""

from decimal import Decimal

import pytest

from cart.models import Cart, CartLine, PaymentStatus
from cart.tests.factories import CartFactory, itemized_cart
from common.testing import error_of, response_json
from discount.models import DiscountReservation
from discount.tests.factories import DiscountFactory, PercentDiscountFactory

pytestmark = pytest.mark.django_db

URL = "/api/cart/"
TEA = {"sku": "TEA-1", "name": "Tea", "quantity": 3, "unit_price": "0.10"}
MUG = {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "11.00"}


def create(client, body):
    return client.post(URL, body, format="json")


def lines_url(cart, line_id=None):
    return f"{URL}{cart.pk}/lines/" + (f"{line_id}/" if line_id is not None else "")


def apply(client, cart, code):
    return client.post(f"{URL}{cart.pk}/apply_discount/", {"code": code})


class TestCreateWithLines:
    def test_subtotal_and_items_number_are_derived_exactly_from_the_lines(self, api_client):
        response = create(api_client, {"currency": "usd", "lines": [TEA, MUG]})

        data = response_json(response)
        assert response.status_code == 201, data
        assert data["itemized"] is True
        assert data["subtotal"] == data["total"] == Decimal("11.30")  # 3 × 0.10 exactly
        assert data["items_number"] == 4
        assert [(line["sku"], line["quantity"], line["amount"]) for line in data["lines"]] == [
            ("TEA-1", 3, Decimal("0.30")),
            ("MUG", 1, Decimal("11.00")),
        ]
        assert all(line["amount_discounted"] == 0 for line in data["lines"])

    def test_a_total_and_items_number_beside_lines_are_accepted_when_they_match(self, api_client):
        body = {"currency": "USD", "lines": [TEA, MUG], "total": "11.3", "items_number": 4}
        assert create(api_client, body).status_code == 201

    def test_a_total_beside_lines_that_does_not_match_is_refused_and_nothing_made(
        self, api_client
    ):
        response = create(api_client, {"currency": "USD", "lines": [TEA, MUG], "total": 11})

        assert response.status_code == 400
        error = error_of(response)
        assert (error["code"], error["field"]) == ("total_mismatch", "total")
        assert "11.30 USD" in error["message"]
        assert not Cart.objects.exists()
        assert not CartLine.objects.exists()

    def test_an_items_number_beside_lines_that_does_not_match_is_refused(self, api_client):
        response = create(api_client, {"currency": "USD", "lines": [TEA], "items_number": 1})

        assert response.status_code == 400
        assert error_of(response)["code"] == "items_number_mismatch"
        assert not Cart.objects.exists()

    def test_a_unit_price_finer_than_the_currency_names_the_line(self, api_client):
        pricey = {**MUG, "unit_price": "1.5"}
        response = create(
            api_client, {"currency": "JPY", "lines": [{**MUG, "unit_price": 2}, pricey]}
        )

        assert response.status_code == 400
        error = error_of(response)
        assert (error["field"], error["code"]) == ("lines.1.unit_price", "too_many_decimals")

    @pytest.mark.parametrize(
        ("line", "field", "code"),
        [
            ({**MUG, "quantity": 0}, "lines.0.quantity", "min_value"),
            ({**MUG, "sku": "bad sku"}, "lines.0.sku", "invalid"),
            ({**MUG, "unit_price": "-1"}, "lines.0.unit_price", "min_value"),
            ({"sku": "MUG", "quantity": 1, "unit_price": 1}, "lines.0.name", "required"),
        ],
    )
    def test_bad_lines_are_named(self, api_client, line, field, code):
        response = create(api_client, {"currency": "USD", "lines": [line]})

        assert response.status_code == 400
        assert (error_of(response)["field"], error_of(response)["code"]) == (field, code)

    def test_lines_adding_up_past_the_largest_cart_are_refused(self, api_client):
        big = {**MUG, "quantity": 10_000, "unit_price": "1000000"}
        response = create(api_client, {"currency": "USD", "lines": [big, big]})

        assert response.status_code == 400
        assert error_of(response)["code"] == "subtotal_too_large"

    def test_the_tutorials_cart_has_no_lines(self, api_client):
        response = create(api_client, {"total": 20, "currency": "USD", "items_number": 5})

        data = response_json(response)
        assert (data["itemized"], data["lines"], data["subtotal"]) == (False, [], 20)


class TestLineChanges:
    def test_adding_a_line_recounts_the_cart(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"))

        response = api_client.post(lines_url(cart), MUG, format="json")

        data = response_json(response)
        assert response.status_code == 201, data
        assert (data["cart"]["subtotal"], data["cart"]["items_number"]) == (Decimal("20.00"), 3)
        assert data["line"]["sku"] == "MUG"
        assert data["discount_removed"] is None
        cart.refresh_from_db()
        assert (cart.subtotal, cart.total, cart.items_number) == (Decimal(20), Decimal(20), 3)

    def test_changing_a_line_recounts_the_cart(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"), ("MUG", 1, "11"))
        tea = cart.lines.get(sku="TEA")

        response = api_client.patch(
            lines_url(cart, tea.pk), {"quantity": 4, "unit_price": "5"}, format="json"
        )

        data = response_json(response)
        assert response.status_code == 200, data
        assert (data["cart"]["total"], data["cart"]["items_number"]) == (Decimal("31.00"), 5)
        assert (data["line"]["quantity"], data["line"]["amount"]) == (4, Decimal("20.00"))

    def test_a_line_keeps_its_sku(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"))
        tea = cart.lines.get()

        api_client.patch(lines_url(cart, tea.pk), {"sku": "OTHER", "name": "Green"}, format="json")

        tea.refresh_from_db()
        assert (tea.sku, tea.name) == ("TEA", "Green")

    def test_removing_a_line_recounts_the_cart(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"), ("MUG", 1, "11"))
        mug = cart.lines.get(sku="MUG")

        response = api_client.delete(lines_url(cart, mug.pk))

        data = response_json(response)
        assert response.status_code == 200, data
        assert data["line"]["id"] == mug.pk
        assert (data["cart"]["total"], data["cart"]["items_number"]) == (Decimal("9.00"), 2)
        assert [line["sku"] for line in data["cart"]["lines"]] == ["TEA"]

    def test_a_line_of_another_cart_is_not_found(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"))
        other = itemized_cart(("MUG", 1, "11"))
        mug = other.lines.get()

        for response in (
            api_client.patch(lines_url(cart, mug.pk), {"quantity": 2}, format="json"),
            api_client.delete(lines_url(cart, mug.pk)),
        ):
            assert response.status_code == 404
            assert error_of(response)["code"] == "line_not_found"
        assert other.lines.get().quantity == 1

    def test_a_cart_made_of_a_total_takes_no_lines(self, api_client):
        cart = CartFactory()

        response = api_client.post(lines_url(cart), MUG, format="json")

        assert response.status_code == 409
        assert error_of(response)["code"] == "cart_not_itemized"
        assert not CartLine.objects.exists()

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (PaymentStatus.SUCCESS, "cart_paid"),
            (PaymentStatus.PROCESSING, "cart_payment_in_progress"),
        ],
    )
    def test_a_paid_or_paying_cart_answers_409_and_keeps_its_lines(self, api_client, status, code):
        cart = itemized_cart(("TEA", 2, "4.50"))
        Cart.objects.filter(pk=cart.pk).update(payment_status=status)
        tea = cart.lines.get()

        responses = [
            api_client.post(lines_url(cart), MUG, format="json"),
            api_client.patch(lines_url(cart, tea.pk), {"quantity": 9}, format="json"),
            api_client.delete(lines_url(cart, tea.pk)),
        ]

        assert [(r.status_code, error_of(r)["code"]) for r in responses] == [(409, code)] * 3
        assert list(cart.lines.values_list("sku", "quantity")) == [("TEA", 2)]

    def test_a_declined_cart_may_still_change(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"))
        Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.FAILED)

        assert api_client.post(lines_url(cart), MUG, format="json").status_code == 201

    def test_a_unit_price_finer_than_the_carts_currency_is_refused(self, api_client):
        cart = itemized_cart(("TEA", 2, "450"), currency="JPY")

        response = api_client.post(lines_url(cart), {**MUG, "unit_price": "1.5"}, format="json")

        assert response.status_code == 400
        assert (error_of(response)["field"], error_of(response)["code"]) == (
            "unit_price",
            "too_many_decimals",
        )

    def test_a_cart_holds_a_bounded_number_of_lines(self, api_client, monkeypatch):
        monkeypatch.setattr("cart.services.MAX_LINES", 2)
        cart = itemized_cart(("TEA", 2, "4.50"), ("MUG", 1, "11"))

        response = api_client.post(lines_url(cart), MUG, format="json")

        assert response.status_code == 400
        assert error_of(response)["code"] == "too_many_lines"


class TestDiscountFollowsTheLines:
    def test_the_discount_is_allocated_to_the_lines_and_adds_up(self, api_client):
        cart = itemized_cart(("A", 1, "1.00"), ("B", 1, "1.00"), ("C", 1, "1.00"))
        DiscountFactory(code="ONE", value=Decimal("1"))

        data = response_json(apply(api_client, cart, "ONE"))

        shares = [line["amount_discounted"] for line in data["lines"]]
        assert shares == [Decimal("0.34"), Decimal("0.33"), Decimal("0.33")]
        assert sum(shares) == data["amount_discounted"] == Decimal("1.00")
        assert sum(line["total"] for line in data["lines"]) == data["total"]

    def test_a_percentage_follows_a_change_and_its_reservation_with_it(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"), ("MUG", 1, "11"))
        PercentDiscountFactory(code="TEN", value=Decimal("10"))
        apply(api_client, cart, "TEN")
        tea = cart.lines.get(sku="TEA")

        data = response_json(
            api_client.patch(lines_url(cart, tea.pk), {"quantity": 4}, format="json")
        )

        assert (data["cart"]["subtotal"], data["cart"]["amount_discounted"]) == (
            Decimal("29.00"),
            Decimal("2.90"),
        )
        assert data["cart"]["total"] == Decimal("26.10")
        assert [line["amount_discounted"] for line in data["cart"]["lines"]] == [
            Decimal("1.80"),
            Decimal("1.10"),
        ]
        assert data["discount_removed"] is None
        assert DiscountReservation.objects.get().amount == Decimal("2.90")

    def test_the_changed_line_in_the_answer_carries_its_new_share(self, api_client):
        # The answer's `line` is the same line as in its `cart`, share of the discount
        # included (it showed the share from before the change).
        cart = itemized_cart(("TEA", 1, "10.00"))
        PercentDiscountFactory(code="TEN", value=Decimal("10"))
        apply(api_client, cart, "TEN")
        tea = cart.lines.get(sku="TEA")

        changed = response_json(
            api_client.patch(lines_url(cart, tea.pk), {"quantity": 5}, format="json")
        )
        added = response_json(
            api_client.post(
                lines_url(cart),
                {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "50.00"},
                format="json",
            )
        )

        for data in (changed, added):
            [same] = [line for line in data["cart"]["lines"] if line["id"] == data["line"]["id"]]
            assert data["line"] == same
        assert (changed["line"]["amount_discounted"], changed["line"]["total"]) == (
            Decimal("5.00"),
            Decimal("45.00"),
        )
        assert added["line"]["amount_discounted"] == Decimal("5.00")

    def test_a_code_that_no_longer_fits_leaves_the_cart_and_says_why(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"), ("MUG", 1, "11"))
        DiscountFactory(code="SPEND20", currency="USD", min_cart_total=Decimal("20"))
        apply(api_client, cart, "SPEND20")
        mug = cart.lines.get(sku="MUG")

        response = api_client.delete(lines_url(cart, mug.pk))

        data = response_json(response)
        assert response.status_code == 200
        assert data["discount_removed"]["code"] == "SPEND20"
        assert data["discount_removed"]["error"]["code"] == "discount_minimum_not_met"
        assert data["cart"]["discount"] is None
        assert data["cart"]["total"] == data["cart"]["subtotal"] == Decimal("9.00")
        assert [line["amount_discounted"] for line in data["cart"]["lines"]] == [0]
        assert DiscountReservation.objects.get().status == "released"
        cart.refresh_from_db()
        assert (cart.discount, cart.amount_discounted, cart.total) == (None, 0, Decimal(9))

    def test_a_cart_that_lost_its_code_may_take_one_again(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"))
        DiscountFactory(code="SPEND5", currency="USD", min_cart_total=Decimal("5"))
        apply(api_client, cart, "SPEND5")
        api_client.patch(lines_url(cart, cart.lines.get().pk), {"quantity": 1}, format="json")

        response = api_client.patch(
            lines_url(cart, cart.lines.get().pk), {"quantity": 3}, format="json"
        )
        assert response_json(response)["cart"]["discount"] is None
        assert apply(api_client, cart, "SPEND5").status_code == 200

    def test_a_flat_amount_is_capped_at_a_smaller_cart(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"), ("MUG", 1, "11"))
        DiscountFactory(code="TWELVE", value=Decimal("12"))
        apply(api_client, cart, "TWELVE")

        data = response_json(api_client.delete(lines_url(cart, cart.lines.get(sku="MUG").pk)))

        assert (data["cart"]["amount_discounted"], data["cart"]["total"]) == (Decimal("9.00"), 0)
        assert DiscountReservation.objects.get().amount == Decimal("9.00")

    def test_removing_every_line_takes_the_code_off(self, api_client):
        cart = itemized_cart(("TEA", 2, "4.50"))
        DiscountFactory(code="FIVE")
        apply(api_client, cart, "FIVE")

        data = response_json(api_client.delete(lines_url(cart, cart.lines.get().pk)))

        assert data["discount_removed"]["error"]["code"] == "discount_has_no_effect"
        assert (data["cart"]["subtotal"], data["cart"]["items_number"]) == (0, 0)

    def test_a_released_reservation_takes_the_lines_share_off_too(self):
        from datetime import timedelta

        from django.utils import timezone

        from discount.services import discount_release_expired_reservations

        cart = itemized_cart(("TEA", 2, "4.50"), ("MUG", 1, "11"))
        cart.apply_discount(DiscountFactory(code="FIVE"))
        assert sum(cart.lines.values_list("amount_discounted", flat=True)) == 5
        DiscountReservation.objects.update(expires=timezone.now() - timedelta(seconds=1))

        assert discount_release_expired_reservations() == 1

        assert list(cart.lines.values_list("amount_discounted", flat=True)) == [0, 0]


def test_the_docs_example_with_lines_works_as_offered(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    create_op = schema["paths"]["/api/cart/"]["post"]
    example = create_op["requestBody"]["content"]["application/json"]["examples"]["WithLines"]

    response = create(api_client, example["value"])

    data = response_json(response)
    assert response.status_code == 201, data
    shown = create_op["responses"]["201"]["content"]["application/json"]["examples"]
    documented = shown["ItemizedCart"]["value"]
    assert set(data) == set(documented)
    assert set(data["lines"][0]) == set(documented["lines"][0])
    assert (data["subtotal"], data["items_number"]) == (
        Decimal(str(documented["subtotal"])),
        documented["items_number"],
    )


def test_the_admin_shows_a_carts_lines_with_their_share_of_the_discount(admin_client):
    cart = itemized_cart(("TEA-GREEN", 2, "4.50"), ("MUG", 1, "11"))
    cart.apply_discount(DiscountFactory(code="FIVE"))

    html = admin_client.get(f"/admin/cart/cart/{cart.pk}/change/").content.decode()

    assert "TEA-GREEN" in html
    assert "9.00 USD" in html  # the tea's amount
    assert "2.25 USD" in html  # its share of 5.00 (9 : 11)
    assert "8.25 USD" in html  # the mug after its 2.75


def test_the_apply_answer_shows_lines_added_while_the_request_began():
    # Found by the soak: an apply that read the cart before a concurrent line change
    # answered the new lines and subtotal (read under the lock) with the old items_number.
    from cart.services import LineInput, cart_apply_discount, cart_line_add

    cart = itemized_cart(("TEA", 2, "4.50"))
    stale = Cart.objects.get(pk=cart.pk)
    cart_line_add(cart=cart, line=LineInput("MUG", "Mug", 3, Decimal("11.00")))

    cart_apply_discount(cart=stale, discount=DiscountFactory(value=Decimal("5")))

    assert (stale.subtotal, stale.items_number, stale.total) == (
        Decimal("42.00"),
        5,
        Decimal("37.00"),
    )
