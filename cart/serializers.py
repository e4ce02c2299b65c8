"""The cart API's shapes.

    serializer = CartSerializer(data={"total": 10, "currency": "USD", "items_number": 5})
    serializer.is_valid()   # currency must be ISO-4217, total must fit its decimals

Amounts are read as exact decimals and shown rounded to the cart's currency
(15.00 USD, 15 JPY).
"""

from rest_framework import serializers

from cart.models import Cart
from common import money
from common.fields import JSONAmountField, clean_currency, run_model_clean, run_validator
from discount.models import Discount
from payments.serializers import (
    PaymentSerializer,
    RefundSerializer,
    payment_representation,
    refund_representation,
    timestamp,
)


class AppliedDiscountSerializer(serializers.ModelSerializer):
    class Meta:
        model = Discount
        fields = ("id", "code", "kind")
        read_only_fields = fields


class PayCartSerializer(serializers.Serializer):
    payment_method = serializers.RegexField(
        r"^[A-Za-z0-9_]+$",
        max_length=64,
        required=False,
        help_text="A test payment method of the provider, e.g. pm_card_visa (optional).",
    )


def validate_idempotency_key(value: str | None) -> str | None:
    """The optional `Idempotency-Key` header: 1-200 printable ASCII characters."""
    if value is None:
        return None
    if not 1 <= len(value) <= 200 or not (value.isascii() and value.isprintable()):
        raise serializers.ValidationError(
            {"Idempotency-Key": ["Use 1 to 200 printable ASCII characters."]}, code="invalid"
        )
    return value


class CartSerializer(serializers.ModelSerializer):
    """A cart as the API shows it (with its discount and payment attempts); on create,
    only `total`, `currency` and `items_number` are read."""

    total = JSONAmountField(
        min_value=0,
        max_value=money.MAX_AMOUNT,
        help_text="On create: the cart's amount before discount. Afterwards: what to pay.",
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
    items_number = serializers.IntegerField(min_value=0, max_value=1_000_000)
    discount = AppliedDiscountSerializer(read_only=True, allow_null=True)
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
            "discount",
            "payments",
            "refunds",
            "created",
            "updated",
        )
        read_only_fields = ("id", "payment_status", "created", "updated")

    def validate_currency(self, currency: str) -> str:
        # Checked per field too, so one response names every bad field at once.
        return run_validator(clean_currency, currency)

    def validate(self, attrs: dict) -> dict:
        candidate = Cart(**attrs)
        run_model_clean(candidate)
        attrs["currency"] = candidate.currency  # normalized: "usd" -> "USD"
        return attrs

    def to_representation(self, instance: Cart) -> dict:
        # Built directly: DRF would deep-copy and rebuild every declared field (and the
        # nested ones) for each cart, the largest cost of a cart GET in a profile.
        # `test_fast_representation_matches_the_declared_fields` keeps the two in step.
        def amount(value):
            return money.quantize(value, instance.currency)

        discount = instance.discount
        return {
            "id": str(instance.id),
            "total": amount(instance.total),
            "subtotal": amount(instance.subtotal),
            "amount_discounted": amount(instance.amount_discounted),
            "total_discounted": amount(instance.total_discounted),
            "amount_refunded": amount(instance.amount_refunded),
            "items_number": instance.items_number,
            "currency": instance.currency,
            "payment_status": instance.payment_status,
            "discount": discount
            and {"id": discount.id, "code": discount.code, "kind": discount.kind},
            "payments": [payment_representation(p) for p in instance.payments.all()],
            # Only a paid cart can have refunds: others skip the query.
            "refunds": [refund_representation(r) for r in instance.refunds.all()]
            if instance.is_paid
            else [],
            "created": timestamp(instance.created),
            "updated": timestamp(instance.updated),
        }

    def declared_representation(self, instance: Cart) -> dict:
        """What DRF builds from the declared fields (the contract the schema shows)."""
        data = super().to_representation(instance)
        for name in self.MONEY_FIELDS:
            data[name] = money.quantize(data[name], instance.currency)
        return data


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
    "CartPaymentSerializer",
    "CartRefundSerializer",
    "CartSerializer",
    "PayCartSerializer",
    "PaymentSerializer",
    "validate_idempotency_key",
]
