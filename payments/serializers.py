"""The API's shapes of the payment ledger: attempts, refunds, and the refund request.

    PaymentSerializer(payment).data     # one attempt, as carts show them in `payments`
    RefundSerializer(refund).data       # one refund, as carts show them in `refunds`

Both are also built directly (`payment_representation`, `refund_representation`): a cart
lists them for every GET, and DRF's field machinery was its largest cost in a profile.
`test_fast_representation_matches_the_declared_fields` keeps the two ways in step.
"""

from datetime import datetime

from django.utils import timezone
from rest_framework import serializers

from common import money
from common.fields import JSONAmountField, WholeNumberField
from payments.models import ErrorCode, Payment, Refund


def _error_code_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=ErrorCode.choices,
        allow_blank=True,
        read_only=True,
        help_text="Why it did not simply succeed: a stable code (empty when it did). "
        "`error` is its plain message.",
    )


def timestamp(value: datetime | None) -> str | None:
    """`DateTimeField().to_representation(value)` of an aware value from the database,
    without DRF looking up the active time zone on every call (most of a list page's
    timestamps cost): the project never activates one, so it is settings.TIME_ZONE."""
    if not value:
        return None
    text = value.astimezone(timezone.get_default_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class PaymentSerializer(serializers.ModelSerializer):
    """One attempt to charge the cart, from the ledger. `error_code` and `error` are a
    stable code and a plain message (the codes are listed in the README)."""

    amount = JSONAmountField(read_only=True)
    error_code = _error_code_field()

    class Meta:
        model = Payment
        fields = (
            "id",
            "amount",
            "currency",
            "status",
            "payment_method",
            "provider_payment_id",
            "decline_code",
            "error_code",
            "error",
            "idempotency_key",
            "created",
            "completed",
        )
        read_only_fields = fields

    def to_representation(self, instance: Payment) -> dict:
        return payment_representation(instance)

    def declared_representation(self, instance: Payment) -> dict:
        """What DRF builds from the declared fields (the contract the schema shows)."""
        data = super().to_representation(instance)
        data["amount"] = money.quantize(data["amount"], instance.currency)
        return data


def payment_representation(payment: Payment) -> dict:
    """`PaymentSerializer(payment).data`, built directly."""
    return {
        "id": str(payment.id),
        "amount": money.quantize(payment.amount, payment.currency),
        "currency": payment.currency,
        "status": payment.status,
        "payment_method": payment.payment_method,
        "provider_payment_id": payment.provider_payment_id,
        "decline_code": payment.decline_code,
        "error_code": payment.error_code,
        "error": payment.error,
        "idempotency_key": payment.idempotency_key,
        "created": timestamp(payment.created),
        "completed": timestamp(payment.completed),
    }


class RefundSerializer(serializers.ModelSerializer):
    """Money given back of one charge: `requested_by_customer` (POST /refund/) or
    `duplicate_charge` (a second charge, given back automatically)."""

    amount = JSONAmountField(read_only=True)
    payment = serializers.UUIDField(source="payment_id", read_only=True)
    error_code = _error_code_field()

    class Meta:
        model = Refund
        fields = (
            "id",
            "payment",
            "amount",
            "currency",
            "status",
            "reason",
            "provider_refund_id",
            "idempotency_key",
            "error_code",
            "error",
            "created",
            "completed",
        )
        read_only_fields = fields

    def to_representation(self, instance: Refund) -> dict:
        return refund_representation(instance)

    def declared_representation(self, instance: Refund) -> dict:
        data = super().to_representation(instance)
        data["amount"] = money.quantize(data["amount"], instance.currency)
        return data


def refund_representation(refund: Refund) -> dict:
    """`RefundSerializer(refund).data`, built directly."""
    return {
        "id": str(refund.id),
        "payment": str(refund.payment_id),
        "amount": money.quantize(refund.amount, refund.currency),
        "currency": refund.currency,
        "status": refund.status,
        "reason": refund.reason,
        "provider_refund_id": refund.provider_refund_id,
        "idempotency_key": refund.idempotency_key,
        "error_code": refund.error_code,
        "error": refund.error,
        "created": timestamp(refund.created),
        "completed": timestamp(refund.completed),
    }


class RefundLineRequestSerializer(serializers.Serializer):
    line_id = WholeNumberField(min_value=1, help_text="A line of the cart.")
    quantity = WholeNumberField(
        min_value=1, max_value=10_000, help_text="How many of its units to give back."
    )


class RefundCartSerializer(serializers.Serializer):
    """The body of POST /api/cart/{id}/refund/."""

    lines = RefundLineRequestSerializer(
        many=True,
        required=False,
        min_length=1,
        max_length=500,
        help_text="Instead of an amount, for a cart with lines: units to give back; the "
        "refund is what they were paid after their share of the discount.",
    )

    amount = JSONAmountField(
        required=False,
        min_value=0,
        max_value=money.MAX_AMOUNT,
        help_text="What to give back, in the cart's currency (> 0, no more decimals than the "
        "currency has). Default: everything charged and not yet refunded.",
    )
