"""Cart reads in one statement: what they read is what the ORM reads, and what the API
answers is, byte for byte, what the declared serializer fields make of the ORM's cart."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cart.models import Cart
from cart.selectors import (
    _HISTORY_KINDS,
    cart_as_shown,
    cart_related,
    with_related_in_one_statement,
)
from cart.serializers import CartSerializer
from cart.tests.factories import CartFactory, itemized_cart
from common.api import DecimalJSONRenderer
from discount.models import DiscountCode
from discount.tests.factories import DiscountFactory, PercentDiscountFactory
from payments.models import Payment, Refund

pytestmark = pytest.mark.django_db

MOMENT = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def attempt(cart, n, status, amount=None, **fields):
    return Payment.objects.create(
        cart=cart,
        amount=cart.total if amount is None else amount,
        currency=cart.currency,
        status=status,
        idempotency_key=f"{cart.pk}-{n}",
        **fields,
    )


def refund(cart, payment, n, amount, status="success", **fields):
    return Refund.objects.create(
        payment=payment,
        cart=cart,
        amount=Decimal(amount),
        currency=cart.currency,
        status=status,
        idempotency_key=f"refund-{cart.pk}-{n}",
        **fields,
    )


def carts_in_every_state() -> dict[str, Cart]:
    carts = {
        "plain": CartFactory(),
        "odd amounts": CartFactory(total=Decimal("9999999999.99"), items_number=1),
        "yen": CartFactory(total=Decimal("1500"), currency="JPY"),
        "itemized": itemized_cart(
            ("TEA", 2, "4.50"), ("MUG", 1, "0.10"), ("PEN", 3, "1234567.89")
        ),
    }
    carts["discounted"] = CartFactory(total=Decimal("20.00"))
    carts["discounted"].apply_discount(DiscountFactory(value=Decimal("5.10")))

    carts["itemized, discounted"] = itemized_cart(("TEA", 3, "3.33"), ("MUG", 1, "10.00"))
    carts["itemized, discounted"].apply_discount(PercentDiscountFactory(value=Decimal("15")))

    # Applied with a generated single-use code: the answer shows that code.
    generated = DiscountFactory(code="CAMPAIGN", value=Decimal("2"))
    code = DiscountCode.objects.create(discount=generated, code="ONE-USE-7")
    carts["generated code"] = CartFactory(total=Decimal("20.00"))
    Cart.objects.filter(pk=carts["generated code"].pk).update(
        discount=generated, discount_code=code, amount_discounted=2, total=18
    )

    paid = CartFactory(payment_status="success")
    attempt(paid, 1, "success", payment_method="pm_card_visa", provider_payment_id="pi_1")
    Payment.objects.filter(cart=paid).update(completed=MOMENT)
    carts["paid"] = paid

    refunded = CartFactory(payment_status="partially_refunded", amount_refunded=Decimal("3.30"))
    charge = attempt(refunded, 1, "success", amount_refunded=Decimal("3.30"))
    refund(refunded, charge, 1, "1.10", provider_refund_id="re_1")
    refund(refunded, charge, 2, "2.20", reason="duplicate_charge")
    refund(refunded, charge, 3, "0.50", status="failed", error_code="refund_declined", error="Nö")
    carts["refunded"] = refunded

    attempts = CartFactory(payment_status="success", total=Decimal("12.34"))
    attempt(
        attempts,
        1,
        "failed",
        decline_code="insufficient_funds",
        error_code="payment_method_refused",
    )
    attempt(attempts, 2, "error", error_code="provider_unavailable", error="Try later.\u2028")
    attempt(attempts, 3, "success", completed=MOMENT + timedelta(seconds=1))
    carts["several attempts"] = attempts
    return carts


def shown(value):
    """A value as compared: amounts by their digits, instants in UTC."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def cart_row(cart: Cart) -> dict:
    return {field.attname: shown(getattr(cart, field.attname)) for field in Cart._meta.fields}


def rows(objects, kind: str) -> list[dict]:
    _model, fields, _order = _HISTORY_KINDS[kind]
    return [{name: shown(getattr(obj, name)) for name in fields} for obj in objects]


def test_one_statement_reads_what_the_orm_reads():
    carts = carts_in_every_state()

    for name, cart in carts.items():
        orm = Cart.objects.get(pk=cart.pk)
        for read in (
            with_related_in_one_statement(Cart.objects.all()).get(pk=cart.pk),
            cart_as_shown(str(cart.pk)),
        ):
            related = cart_related(read)

            assert cart_row(read) == cart_row(orm), name
            assert related.discount == orm.applied_discount, name
            assert rows(related.lines, "lines") == rows(orm.lines.all(), "lines"), name
            assert rows(related.payments, "payments") == rows(orm.payments.all(), "payments")
            assert rows(related.refunds, "refunds") == rows(orm.refunds.all(), "refunds"), name
    assert (
        len(
            cart_related(
                with_related_in_one_statement(Cart.objects.all()).get(pk=carts["refunded"].pk)
            ).refunds
        )
        == 3
    )


def declared_json(cart: Cart) -> bytes:
    """What the declared DRF fields make of the cart as the ORM reads it."""
    orm = Cart.objects.select_related("discount", "discount_code").get(pk=cart.pk)
    return DecimalJSONRenderer().render(CartSerializer().declared_representation(orm))


def test_get_and_list_answer_byte_for_byte_what_the_declared_fields_make(api_client):
    carts = carts_in_every_state()

    page = json.loads(
        api_client.get("/api/cart/", {"page_size": 100}).content, parse_float=Decimal
    )["results"]
    listed = {cart["id"]: cart for cart in page}
    assert len(listed) == len(carts)
    for name, cart in carts.items():
        expected = declared_json(cart)
        response = api_client.get(f"/api/cart/{cart.pk}/")
        assert response.content == expected, name
        assert DecimalJSONRenderer().render(listed[str(cart.pk)]) == expected, name


def test_a_new_cart_is_answered_as_the_declared_fields_make_it(api_client):
    for body in (
        {"total": "20.5", "currency": "usd", "items_number": 2},
        {"currency": "EUR", "lines": [{"sku": "A", "name": "Ä", "quantity": 2, "unit_price": 3}]},
    ):
        response = api_client.post("/api/cart/", body, format="json")

        assert response.status_code == 201
        assert response.content == declared_json(Cart.objects.get(pk=response.json()["id"]))


@pytest.mark.parametrize(
    "cart_id",
    ["0e9a5c1e-0000-4000-8000-000000000000", "0e9a5c1e000040008000000000000000", "a" * 36],
)
def test_a_cart_nobody_has_or_no_uuid_is_not_found(api_client, cart_id):
    CartFactory()

    response = api_client.get(f"/api/cart/{cart_id}/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert cart_as_shown(cart_id) is None
