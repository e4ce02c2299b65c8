import base64
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.models import Cart, PaymentStatus
from cart.services import cart_apply_discount
from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from discount.errors import DiscountExpiredError, DiscountInactiveError
from discount.models import Discount, DiscountReservation
from discount.tests.factories import DiscountFactory, PercentDiscountFactory
from payments.models import Payment, Refund

pytestmark = pytest.mark.django_db

URL = "/api/cart/"


def apply(client, cart, code):
    return client.post(f"{URL}{cart.pk}/apply_discount/", {"code": code})


class TestCreate:
    def test_cart_id_is_a_random_uuid(self, api_client):
        one = api_client.post(URL, {"total": 10, "currency": "USD", "items_number": 1})
        two = api_client.post(URL, {"total": 10, "currency": "USD", "items_number": 1})

        ids = [uuid.UUID(response_json(r)["id"]) for r in (one, two)]
        assert all(i.version == 4 for i in ids)
        assert ids[0] != ids[1]

    def test_created_cart_shows_subtotal_and_no_discount(self, api_client):
        response = api_client.post(URL, {"total": "19.99", "currency": "usd", "items_number": 2})

        data = response_json(response)
        assert response.status_code == 201
        assert data["currency"] == "USD"
        assert data["subtotal"] == data["total"] == data["total_discounted"] == Decimal("19.99")
        assert data["amount_discounted"] == Decimal("0.00")
        assert data["discount"] is None
        assert data["payment_status"] == "pending"

    @pytest.mark.parametrize(
        ("total", "currency", "shown"),
        [("1500", "JPY", b'"total":1500,'), ("1.234", "BHD", b'"total":1.234,')],
    )
    def test_amounts_are_shown_in_the_currencys_minor_unit(
        self, api_client, total, currency, shown
    ):
        response = api_client.post(URL, {"total": total, "currency": currency, "items_number": 1})
        assert shown in response.content

    def test_json_numbers_are_read_exactly(self, api_client):
        response = api_client.post(
            URL,
            '{"total": 0.30, "currency": "USD", "items_number": 1}',
            content_type="application/json",
        )
        assert Cart.objects.get().total == Decimal("0.30")
        assert b'"total":0.30' in response.content

    @pytest.mark.parametrize(
        ("fields", "field", "code"),
        [
            ({"total": "10.5", "currency": "JPY"}, "total", "too_many_decimals"),
            ({"total": "1.234"}, "total", "too_many_decimals"),
            ({"total": -1}, "total", "min_value"),
            ({"total": "10000000000.01"}, "total", "max_value"),
            ({"total": "1e30"}, "total", "max_digits"),
            ({"total": "ten"}, "total", "invalid"),
            ({"total": True}, "total", "invalid"),
            ({"total": None}, "total", "null"),
            ({"currency": "XAU"}, "currency", "unknown_currency"),
            ({"currency": "DOLLARS"}, "currency", "max_length"),
            ({"total": "1_000"}, "total", "invalid"),
            ({"total": "１０"}, "total", "invalid"),
            ({"total": ""}, "total", "invalid"),
            ({"items_number": -1}, "items_number", "min_value"),
            ({"items_number": 2_000_000}, "items_number", "max_value"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, api_client, fields, field, code):
        payload = {"total": 10, "currency": "USD", "items_number": 1, **fields}

        response = api_client.post(URL, payload)

        assert response.status_code == 400
        error = error_of(response)
        assert (error["field"], error["code"]) == (field, code)
        assert Cart.objects.count() == 0

    def test_minus_zero_is_zero(self, api_client):
        response = api_client.post(URL, {"total": "-0", "currency": "USD", "items_number": 0})
        assert b'"total":0.00' in response.content

    def test_the_trailing_slash_is_optional(self, api_client):
        response = api_client.post("/api/cart", {"total": 1, "currency": "USD", "items_number": 1})
        assert response.status_code == 201

    def test_missing_fields_are_each_named(self, api_client):
        response = api_client.post(URL, {})

        fields = {d["field"] for d in error_of(response)["details"]}
        assert fields == {"total", "currency", "items_number"}

    def test_read_only_fields_are_ignored(self, api_client):
        response = api_client.post(
            URL,
            {
                "total": 10,
                "currency": "USD",
                "items_number": 1,
                "payment_status": "success",
                "amount_discounted": 10,
                "subtotal": 99,
            },
        )
        cart = Cart.objects.get(pk=response_json(response)["id"])
        assert (cart.payment_status, cart.amount_discounted, cart.subtotal) == (
            "pending",
            0,
            10,
        )


class TestApplyDiscount:
    def test_percent_discount_keeps_the_subtotal_visible(self, api_client):
        cart = CartFactory(total=Decimal("80.00"))
        PercentDiscountFactory(code="TEN", value=Decimal("12.5"))

        data = response_json(apply(api_client, cart, "ten"))

        assert data["subtotal"] == Decimal("80.00")
        assert data["amount_discounted"] == Decimal("10.00")
        assert data["total"] == data["total_discounted"] == Decimal("70.00")
        assert data["discount"]["code"] == "TEN"

    def test_total_never_goes_below_zero(self, api_client):
        cart = CartFactory(total=Decimal("3.00"))
        DiscountFactory(code="BIG", value=Decimal("50"))

        data = response_json(apply(api_client, cart, "BIG"))

        assert data["total"] == Decimal("0.00")
        assert data["amount_discounted"] == Decimal("3.00")

    def test_applying_reserves_one_use(self, api_client):
        discount = DiscountFactory(code="ONE", usage_limit=1)
        apply(api_client, CartFactory(), "ONE")

        discount.refresh_from_db()
        assert (discount.times_used, discount.uses_held(at=timezone.now())) == (0, 1)
        response = apply(api_client, CartFactory(), "ONE")
        assert error_of(response)["code"] == "discount_usage_limit_reached"

    @pytest.mark.parametrize(
        ("discount", "code"),
        [
            (None, "discount_not_found"),
            ({"active": False}, "discount_inactive"),
            ({"started": timezone.now() + timedelta(days=1)}, "discount_not_started"),
            ({"currency": "EUR"}, "discount_currency_mismatch"),
            ({"min_cart_total": Decimal("100")}, "discount_minimum_not_met"),
            ({"usage_limit": 3, "times_used": 3}, "discount_usage_limit_reached"),
        ],
    )
    def test_each_refusal_is_a_400_with_its_code(self, api_client, discount, code):
        cart = CartFactory()
        if discount is not None:
            DiscountFactory(code="CODE", **discount)

        response = apply(api_client, cart, "CODE")

        assert response.status_code == 400
        error = error_of(response)
        assert (error["code"], error["field"]) == (code, "code")
        cart.refresh_from_db()
        assert (cart.total, cart.amount_discounted, cart.discount) == (20, 0, None)
        assert not Discount.objects.filter(times_used__gt=3).exists()

    def test_expired_code_is_refused(self, api_client):
        discount = DiscountFactory(code="OLD")
        Discount.objects.filter(pk=discount.pk).update(ended=timezone.now())

        assert error_of(apply(api_client, CartFactory(), "OLD"))["code"] == "discount_expired"

    def test_code_switched_off_after_validation_is_refused_without_a_use(self):
        discount = DiscountFactory(code="LATE")
        cart = CartFactory()
        Discount.objects.filter(pk=discount.pk).update(active=False)

        with pytest.raises(DiscountInactiveError):
            cart_apply_discount(cart=cart, discount=discount)  # holds the stale, active copy

        discount.refresh_from_db()
        assert discount.times_used == 0
        # The cart's UPDATE, sent before the code's row is locked, is rolled back with it.
        assert (cart.discount, cart.total) == (None, Decimal("20.00"))
        cart.refresh_from_db()
        assert (cart.discount, cart.amount_discounted, cart.total) == (None, 0, 20)
        assert not DiscountReservation.objects.exists()

    def test_a_code_that_expired_after_validation_is_refused_without_a_use(self):
        discount = DiscountFactory(code="GONE")
        Discount.objects.filter(pk=discount.pk).update(ended=timezone.now())

        with pytest.raises(DiscountExpiredError):
            cart_apply_discount(cart=CartFactory(), discount=discount)  # the stale copy

        discount.refresh_from_db()
        assert discount.times_used == 0

    @pytest.mark.parametrize("second", ["FIRST", "SECOND"])
    def test_a_cart_takes_one_discount_only(self, api_client, second):
        cart = CartFactory(total=Decimal("20"))
        DiscountFactory(code="FIRST", value=Decimal("5"))
        DiscountFactory(code="SECOND", value=Decimal("3"))
        apply(api_client, cart, "FIRST")

        response = apply(api_client, cart, second)

        assert response.status_code == 400
        assert error_of(response)["code"] == "discount_already_applied"
        cart.refresh_from_db()
        assert (cart.total, cart.amount_discounted) == (15, 5)
        assert Discount.objects.get(code="SECOND").times_used == 0

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (PaymentStatus.SUCCESS, "cart_paid"),
            (PaymentStatus.PROCESSING, "cart_payment_in_progress"),
        ],
    )
    def test_a_paid_or_paying_cart_is_frozen(self, api_client, status, code):
        cart = CartFactory(payment_status=status)
        DiscountFactory(code="LATE")

        response = apply(api_client, cart, "LATE")

        assert response.status_code == 409
        assert error_of(response)["code"] == code
        assert Discount.objects.get(code="LATE").times_used == 0

    def test_a_frozen_cart_is_a_409_even_for_an_unknown_code(self, api_client):
        cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
        response = apply(api_client, cart, "NO-SUCH-CODE")
        assert (response.status_code, error_of(response)["code"]) == (409, "cart_paid")

    @pytest.mark.parametrize(
        ("total", "discount"),
        [("0", {"value": Decimal("5")}), ("20", {"value": Decimal("0.001")})],
    )
    def test_a_code_that_takes_nothing_off_is_refused_without_a_use(
        self, api_client, total, discount
    ):
        cart = CartFactory(total=Decimal(total))
        DiscountFactory(code="NOTHING", **discount)

        response = apply(api_client, cart, "NOTHING")

        assert error_of(response)["code"] == "discount_has_no_effect"
        assert Discount.objects.get(code="NOTHING").times_used == 0

    def test_a_failed_cart_can_still_take_a_discount(self, api_client):
        cart = CartFactory(payment_status=PaymentStatus.FAILED)
        DiscountFactory(code="RETRY")
        assert apply(api_client, cart, "RETRY").status_code == 200

    def test_missing_code_is_a_400(self, api_client):
        response = api_client.post(f"{URL}{CartFactory().pk}/apply_discount/", {})
        assert (error_of(response)["field"], error_of(response)["code"]) == ("code", "required")

    def test_unknown_cart_is_a_404(self, api_client):
        DiscountFactory(code="X")
        response = api_client.post(f"{URL}{uuid.uuid4()}/apply_discount/", {"code": "X"})
        assert response.status_code == 404


class TestList:
    def test_list_is_paged_newest_first(self, api_client):
        carts = [CartFactory() for _ in range(22)]

        first = response_json(api_client.get(URL))
        second = response_json(api_client.get(first["next"]))

        ids = [c["id"] for c in first["results"] + second["results"]]
        assert ids == [str(c.pk) for c in reversed(carts)]

    def test_a_page_shows_each_cart_as_reading_it_alone_does(self, api_client):
        """Payments, refunds and lines are fetched per page only for the carts that can
        have them: every kind of cart still shows all of its own."""
        plain = CartFactory()
        Payment.objects.create(
            cart=plain, amount=plain.total, currency="USD", status="failed", idempotency_key="p"
        )
        refunded = CartFactory(payment_status="partially_refunded")
        payment = Payment.objects.create(
            cart=refunded,
            amount=refunded.total,
            currency="USD",
            status="success",
            idempotency_key="r",
            amount_refunded=Decimal("1.50"),
        )
        Refund.objects.create(
            payment=payment,
            cart=refunded,
            amount=Decimal("1.50"),
            currency="USD",
            status="success",
            idempotency_key="r1",
        )
        lines = [{"sku": "A-1", "name": "Thing", "quantity": 3, "unit_price": "2.50"}]
        itemized = api_client.post(URL, {"currency": "USD", "lines": lines}, format="json")
        cart_apply_discount(
            cart=Cart.objects.get(pk=response_json(itemized)["id"]),
            discount=DiscountFactory(code="LIST5"),
        )

        page = response_json(api_client.get(URL))["results"]

        alone = [response_json(api_client.get(f"{URL}{c['id']}/")) for c in page]
        assert page == alone
        assert [len(c["lines"]) for c in page] == [1, 0, 0]
        assert [len(c["refunds"]) for c in page] == [0, 1, 0]
        assert [len(c["payments"]) for c in page] == [0, 1, 1]
        assert page[0]["discount"]["code"] == "LIST5"

    def test_filters_by_payment_status_and_currency(self, api_client):
        CartFactory(currency="EUR", total=Decimal("1"))
        paid = CartFactory(currency="EUR", total=Decimal("2"), payment_status="success")
        CartFactory(currency="USD", payment_status="success")

        results = response_json(
            api_client.get(URL, {"payment_status": "success", "currency": "eur"})
        )["results"]

        assert [r["id"] for r in results] == [str(paid.pk)]

    def test_unknown_payment_status_filter_is_a_400(self, api_client):
        response = api_client.get(URL, {"payment_status": "paid"})
        assert response.status_code == 400
        assert error_of(response)["field"] == "payment_status"

    @pytest.mark.parametrize(
        "cursor",
        [
            "garbage",
            base64.b64encode(b"p=abc").decode(),
            base64.b64encode(b"p=9999-99-99").decode(),
            base64.b64encode(b"o=x").decode(),
        ],
    )
    def test_a_cursor_we_did_not_hand_out_is_a_400(self, api_client, cursor):
        response = api_client.get(URL, {"cursor": cursor})

        assert response.status_code == 400
        assert (error_of(response)["field"], error_of(response)["code"]) == (
            "cursor",
            "invalid_cursor",
        )


@pytest.mark.usefixtures("prod_access")
class TestProductionAccess:
    def test_listing_every_cart_needs_staff(self, api_client, staff_client):
        assert api_client.get(URL).status_code == 401
        assert staff_client.get(URL).status_code == 200

    def test_a_storefront_creates_reads_and_discounts_its_cart_anonymously(self, api_client):
        DiscountFactory(code="OPEN")
        created = api_client.post(URL, {"total": 20, "currency": "USD", "items_number": 1})
        cart_id = response_json(created)["id"]

        assert created.status_code == 201
        assert api_client.get(f"{URL}{cart_id}/").status_code == 200
        applied = api_client.post(f"{URL}{cart_id}/apply_discount/", {"code": "OPEN"})
        assert applied.status_code == 200
