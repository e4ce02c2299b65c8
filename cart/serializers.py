"""The cart API's shapes.

    serializer = CartSerializer(data={"total": 10, "currency": "USD", "items_number": 5})
    serializer.is_valid()   # currency must be ISO-4217, total must fit its decimals

Amounts are read as exact decimals and shown rounded to the cart's currency
(15.00 USD, 15 JPY).
"""

import copy
from decimal import Decimal

from rest_framework import serializers

from cart.models import SKU_PATTERN, Cart, CartLine
from cart.selectors import cart_related
from cart.services import MAX_LINES, LineInput
from common import money
from common.fields import (
    JSONAmountField,
    WholeNumberField,
    check_fits_currency,
    clean_currency,
    run_model_clean,
    run_validator,
)
from common.serializers import FieldsBuiltOnce, ValidatorsBuiltOnce, built_once
from discount.models import DiscountKind
from payments.serializers import (
    PaymentSerializer,
    RefundSerializer,
    payment_representation,
    refund_representation,
    timestamp,
)


class AppliedDiscountSerializer(serializers.Serializer):
    """The cart's discount: `code` is the one applied (a generated single-use code, or
    the discount's own)."""

    id = serializers.IntegerField(read_only=True)
    code = serializers.CharField(read_only=True)
    kind = serializers.ChoiceField(choices=DiscountKind.choices, read_only=True)


class PayCartSerializer(FieldsBuiltOnce, serializers.Serializer):
    # Its one field is built once per class (`common.serializers`), not for every pay.
    payment_method = serializers.RegexField(
        r"^[A-Za-z0-9_]+$",
        max_length=64,
        required=False,
        help_text="A test payment method of the provider, e.g. pm_card_visa (optional).",
    )


def line_representation(line: CartLine, currency: str) -> dict:
    amount = money.quantizer(currency)

    return {
        "id": line.id,
        "sku": line.sku,
        "name": line.name,
        "quantity": line.quantity,
        "unit_price": amount(line.unit_price),
        "amount": amount(line.amount),
        "amount_discounted": amount(line.amount_discounted),
        "total": amount(line.total),
    }


class CartLineSerializer(serializers.ModelSerializer):
    """One line: on write `sku`, `name`, `quantity`, `unit_price` (in the cart's
    currency); shown with its amount, its share of the discount and its total."""

    sku = serializers.RegexField(
        SKU_PATTERN,
        max_length=64,
        help_text="The shop's SKU: letters, digits, '.', '_', '/' and '-' (at most 64).",
    )
    name = serializers.CharField(max_length=200, help_text="What the customer sees.")
    quantity = WholeNumberField(min_value=1, max_value=10_000)
    unit_price = JSONAmountField(
        min_value=0,
        max_value=money.MAX_AMOUNT,
        help_text="Price of one unit before discount, in the cart's currency.",
    )
    amount = JSONAmountField(read_only=True, help_text="quantity × unit_price.")
    amount_discounted = JSONAmountField(
        read_only=True,
        help_text="This line's share of the cart's discount (the shares add up to the "
        "cart's amount_discounted).",
    )
    total = JSONAmountField(read_only=True, help_text="amount - amount_discounted.")

    class Meta:
        model = CartLine
        fields = (
            "id",
            "sku",
            "name",
            "quantity",
            "unit_price",
            "amount",
            "amount_discounted",
            "total",
        )
        read_only_fields = ("id",)

    def validate(self, attrs: dict) -> dict:
        currency = self.context.get("currency")
        errors = {}
        if currency and "unit_price" in attrs:
            try:
                run_validator(lambda v: check_fits_currency(v, currency), attrs["unit_price"])
            except serializers.ValidationError as exc:
                errors["unit_price"] = exc.detail
        if attrs.get("quantity", 1) * attrs.get("unit_price", Decimal(0)) > money.MAX_AMOUNT:
            errors["unit_price"] = [
                serializers.ErrorDetail(
                    f"quantity × unit_price exceeds {money.MAX_AMOUNT}.", code="max_value"
                )
            ]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_representation(self, instance: CartLine) -> dict:
        return line_representation(instance, instance.cart.currency)


class UpdateCartLineSerializer(CartLineSerializer):
    """PATCH of a line: any of `quantity`, `unit_price`, `name` (its SKU stays)."""

    sku = serializers.CharField(read_only=True)


def cart_representation(cart: Cart) -> dict:
    """`CartSerializer(cart).data`, built directly: DRF would deep-copy and rebuild every
    declared field (and the nested ones) for each cart, the largest cost of a cart GET in
    a profile; the write paths' answers call it without a serializer instance at all.
    `test_fast_representation_matches_the_declared_fields` keeps the two in step."""
    amount = money.quantizer(cart.currency)
    related = cart_related(cart)
    discount = related.discount
    return {
        "id": str(cart.id),
        "total": amount(cart.total),
        "subtotal": amount(cart.subtotal),
        "amount_discounted": amount(cart.amount_discounted),
        "total_discounted": amount(cart.total_discounted),
        "amount_refunded": amount(cart.amount_refunded),
        "items_number": cart.items_number,
        "currency": cart.currency,
        "payment_status": cart.payment_status,
        "customer_ref": cart.customer_ref,
        "itemized": cart.itemized,
        "lines": [line_representation(line, cart.currency) for line in related.lines],
        "discount": discount and {"id": discount.id, "code": discount.code, "kind": discount.kind},
        "payments": [payment_representation(p) for p in related.payments],
        "refunds": [refund_representation(r) for r in related.refunds],
        "created": timestamp(cart.created),
        "updated": timestamp(cart.updated),
    }


class CartSerializer(ValidatorsBuiltOnce, serializers.ModelSerializer):
    """A cart as the API shows it (with its lines, discount and payment attempts); on
    create, `total`, `currency` and `items_number` are read, or `currency` and `lines`."""

    total = JSONAmountField(
        min_value=0,
        max_value=money.MAX_AMOUNT,
        required=False,
        help_text="On create: the cart's amount before discount (required without "
        "`lines`; with them, optional and checked against their sum). Afterwards: what "
        "to pay.",
    )
    subtotal = JSONAmountField(read_only=True)
    amount_discounted = JSONAmountField(read_only=True)
    total_discounted = JSONAmountField(
        read_only=True, help_text="Same as `total`: the amount to pay (tutorial name)."
    )
    amount_refunded = JSONAmountField(
        read_only=True, help_text="Given back of what was charged (refunds made)."
    )
    currency = serializers.RegexField(
        r"^[A-Za-z]{3}$", max_length=3, help_text="ISO-4217 code, e.g. USD (any case)."
    )
    items_number = WholeNumberField(
        min_value=0,
        max_value=1_000_000,
        required=False,
        help_text="How many items (required without `lines`; with them, the sum of their "
        "quantities, checked if sent).",
    )
    lines = CartLineSerializer(
        many=True,
        required=False,
        max_length=MAX_LINES,
        help_text="Optional: what is being bought. Then `subtotal` and `items_number` "
        "are derived from them, and lines change with /lines/ while the cart is pending.",
    )
    itemized = serializers.BooleanField(
        read_only=True, help_text="Made of `lines` (created with them)."
    )
    customer_ref = serializers.RegexField(
        r"^[!-~]{0,100}\Z",
        required=False,
        help_text="Optional, on create: the shop's opaque reference of the customer "
        "(up to 100 printable ASCII characters, no spaces; empty: none). Codes limited per "
        "customer or to a first order need it.",
    )
    discount = AppliedDiscountSerializer(
        source="applied_discount", read_only=True, allow_null=True
    )
    payments = PaymentSerializer(many=True, read_only=True)
    refunds = RefundSerializer(many=True, read_only=True)

    MONEY_FIELDS = (
        "total",
        "subtotal",
        "amount_discounted",
        "total_discounted",
        "amount_refunded",
    )

    class Meta:
        model = Cart
        fields = (
            "id",
            "total",
            "subtotal",
            "amount_discounted",
            "total_discounted",
            "amount_refunded",
            "items_number",
            "currency",
            "payment_status",
            "customer_ref",
            "itemized",
            "lines",
            "discount",
            "payments",
            "refunds",
            "created",
            "updated",
        )
        read_only_fields = ("id", "payment_status", "created", "updated")

    # What a client writes on create, in the order of Meta.fields (errors are named in
    # it), all declared here: reading a request needs none of the model's fields
    # (`test_a_request_is_read_with_the_writable_fields_only`).
    WRITABLE_FIELDS = ("total", "items_number", "currency", "customer_ref", "lines")

    def get_fields(self) -> dict:
        data = getattr(self, "initial_data", None)
        if data is None:  # showing a cart, or its schema: every field
            return super().get_fields()
        # Reading a request builds only what it may write (building the read-only ones,
        # the nested serializers too, was a third of a create's CPU), and `lines` only
        # when sent. The answer is `to_representation`, which needs no field. The plain
        # fields are built once per class (`common.serializers.built_once`); `lines`, a
        # nested serializer, is a deep copy for each request.
        fields = built_once(
            self,
            "_plain_writable_fields",
            lambda: {
                name: copy.deepcopy(self._declared_fields[name])
                for name in self.WRITABLE_FIELDS
                if name != "lines"
            },
        )
        with_lines = hasattr(data, "keys") and "lines" in data
        if with_lines:
            fields["lines"] = copy.deepcopy(self._declared_fields["lines"])
        else:
            # The tutorial's cart: a total and a number of items, named when missing.
            fields["total"].required = fields["items_number"].required = True
        return fields

    def validate_currency(self, currency: str) -> str:
        # Checked per field too, so one response names every bad field at once.
        return run_validator(clean_currency, currency)

    def validate(self, attrs: dict) -> dict:
        lines = attrs.pop("lines", None)
        candidate = Cart(**{"total": Decimal(0), **attrs})
        run_model_clean(candidate)
        attrs["currency"] = candidate.currency  # normalized: "usd" -> "USD"
        if lines is not None:
            self._check_line_prices(lines, candidate.currency)
            attrs["lines"] = [LineInput(**line) for line in lines]
        return attrs

    def _check_line_prices(self, lines: list[dict], currency: str) -> None:
        errors = [{} for _ in lines]
        for index, line in enumerate(lines):
            if not money.fits_currency(line["unit_price"], currency):
                errors[index] = {
                    "unit_price": [
                        serializers.ErrorDetail(
                            money.precision_message(currency), code="too_many_decimals"
                        )
                    ]
                }
        if any(errors):
            raise serializers.ValidationError({"lines": errors})

    # The function itself, not a method calling it: a page of carts calls it per cart.
    to_representation = staticmethod(cart_representation)

    def declared_representation(self, instance: Cart) -> dict:
        """What DRF builds from the declared fields (the contract the schema shows)."""
        data = super().to_representation(instance)
        for name in self.MONEY_FIELDS:
            data[name] = money.quantize(data[name], instance.currency)
        return data


class CartLineChangeSerializer(serializers.Serializer):
    """The answer of a line change: the cart, the line, and the code that left the cart
    (with why) when the change made it no longer fit."""

    cart = CartSerializer()
    line = CartLineSerializer()
    discount_removed = serializers.DictField(
        allow_null=True,
        help_text="null, or {code, error: {code, message}}: the discount code that no "
        "longer fits the cart and left it (its reserved use released).",
    )


class CartPaymentSerializer(serializers.Serializer):
    """The answer of /pay/: the cart and the attempt (plus `error` on a decline)."""

    cart = CartSerializer()
    payment = PaymentSerializer()


class CartRefundSerializer(serializers.Serializer):
    """The answer of /refund/: the cart and the refund (plus `error` when declined)."""

    cart = CartSerializer()
    refund = RefundSerializer()


# PaymentSerializer stays importable from here, where the tutorial-era tests find it.
__all__ = [
    "CartLineChangeSerializer",
    "CartLineSerializer",
    "CartPaymentSerializer",
    "CartRefundSerializer",
    "CartSerializer",
    "PayCartSerializer",
    "PaymentSerializer",
    "UpdateCartLineSerializer",
]
