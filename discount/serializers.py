"""The discount API's shapes: what a discount looks like in JSON and what a request may send.

Serializers check the shape of the input and translate; the rules themselves live on
`Discount` (`clean`, run by the services on every write; `check_usable`), so the admin and
the API refuse the same things.

    serializer = ApplyDiscountSerializer(data={"code": "dis20"})
    serializer.is_valid()   # False for an unknown, expired, inactive or used-up code
"""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common import money
from common.fields import WHOLE_NUMBER_MAPPING, JSONAmountField, WholeNumberField
from common.serializers import FieldsBuiltOnce, ValidatorsBuiltOnce
from discount.errors import DiscountError, public_discount_error
from discount.models import MAX_SCOPE_ENTRIES, SKU_PATTERN, Discount
from discount.selectors import discount_find_code


class DiscountSerializer(FieldsBuiltOnce, ValidatorsBuiltOnce, serializers.ModelSerializer):
    """A discount code as staff create, edit and read it. The rules are `Discount.clean`,
    which `discount_create` / `discount_update` run."""

    value = JSONAmountField(
        help_text="Amount off (in `currency`, or the cart's currency if none) or percentage."
    )
    min_cart_total = JSONAmountField(required=False, allow_null=True)
    reserved_uses = serializers.SerializerMethodField(
        help_text="Uses held by carts not paid yet; with `times_used` (paid carts) they "
        "count against `usage_limit`. Each expires DISCOUNT_RESERVATION_TTL after it was made."
    )
    currency = serializers.RegexField(
        r"^[A-Za-z]{3}$",
        required=False,
        allow_blank=True,
        max_length=3,
        help_text="ISO-4217 code. If set, the code only applies to carts in this currency.",
    )

    skus = serializers.ListField(
        child=serializers.RegexField(SKU_PATTERN, max_length=64),
        required=False,
        max_length=MAX_SCOPE_ENTRIES,
        help_text="If set (or sku_prefixes), the code applies only to the cart lines with "
        "one of these SKUs (case-sensitive): a percentage of their amounts, a flat amount "
        "capped at them. Empty: the whole cart.",
    )
    sku_prefixes = serializers.ListField(
        child=serializers.RegexField(SKU_PATTERN, max_length=64),
        required=False,
        max_length=MAX_SCOPE_ENTRIES,
        help_text="…or to the lines whose SKU starts with one of these.",
    )
    budget_amount = JSONAmountField(
        required=False,
        allow_null=True,
        help_text="Most the code gives away across all carts, in `currency` (required "
        "then). Amounts reserved by unpaid carts and consumed by paid ones count; a cart "
        "whose discount would pass it is refused (`discount_budget_exhausted`).",
    )
    amount_consumed = JSONAmountField(
        read_only=True, help_text="Given away to paid carts (counts against the budget)."
    )
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        **WHOLE_NUMBER_MAPPING,  # usage_limit, limit_per_customer: ASCII digits only
    }

    class Meta:
        model = Discount
        fields = (
            "id",
            "code",
            "kind",
            "value",
            "currency",
            "description",
            "created",
            "started",
            "ended",
            "active",
            "min_cart_total",
            "usage_limit",
            "times_used",
            "reserved_uses",
            "skus",
            "sku_prefixes",
            "limit_per_customer",
            "first_order_only",
            "budget_amount",
            "amount_consumed",
            "automatic",
        )
        read_only_fields = ("id", "created", "times_used", "amount_consumed")
        extra_kwargs = {"times_used": {"help_text": "Consumed uses: carts paid with the code."}}

    @extend_schema_field(OpenApiTypes.INT)
    def get_reserved_uses(self, discount: Discount) -> int:
        annotated = getattr(discount, "reserved_uses_now", None)  # lists annotate it
        if annotated is not None:
            return annotated
        return discount.reservations.holding(at=timezone.now()).count()

    def to_representation(self, instance: Discount) -> dict:
        data = super().to_representation(instance)
        for name in ("value", "min_cart_total", "budget_amount", "amount_consumed"):
            if data[name] is not None:
                data[name] = _display(data[name], instance.currency)
        return data


def _display(amount, currency: str):
    """15.0000 in the database shows as 15.00 for USD, as 15 with no currency."""
    if currency:
        return money.quantize(amount, currency)
    if amount == amount.to_integral_value():
        return amount.quantize(1)  # not normalize(): that turns 100 into 1E+2
    return amount.normalize()


class ApplyDiscountSerializer(FieldsBuiltOnce, serializers.Serializer):
    """`{"code": …}` naming a usable code; `validated_data["discount"]` is that discount
    and `validated_data["generated_code"]` the single-use code typed, if it is one.

    With `context={"reveal_reasons": False}` every refusal that would say whether the
    code exists is `discount_invalid` (see `discount.errors.public_discount_error`).

    Its one field is built once per class (`common.serializers`), not for every apply:
    it depends on nothing of the request (the context is read by `validate` only).
    """

    code = serializers.CharField(
        max_length=64,
        help_text="The discount code, any case: letters A-Z, digits 0-9, '-' and '_'.",
    )

    def validate(self, attrs: dict) -> dict:
        now = timezone.now()
        try:
            # Every reason a code is unusable, used up by reservations too, is found
            # here, in one query, before anything about the cart is checked: a code that
            # exists but is unusable takes the path (and the answer) of one that does not.
            discount, generated = discount_find_code(code=attrs["code"], at=now)
            discount.check_usable(at=now, reserved=discount.reserved_uses_now)
        except DiscountError as exc:
            reveal = self.context.get("reveal_reasons", True)
            exc = public_discount_error(exc, reveal_reasons=reveal)
            raise serializers.ValidationError({"code": [exc.message]}, code=exc.code) from None
        return {**attrs, "discount": discount, "generated_code": generated}


class GenerateCodesSerializer(serializers.Serializer):
    """The body of POST /api/discount/{id}/codes/."""

    count = WholeNumberField(
        min_value=1, max_value=100_000, help_text="How many codes (1 to 100,000)."
    )
    prefix = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_-]*\Z",
        max_length=32,
        required=False,
        help_text="Put before each code, upper-cased (e.g. XMAS-): at most 32 letters, "
        "digits, '-' and '_'.",
    )


class GeneratedCodesSerializer(serializers.Serializer):
    """The answer: the codes made, each usable once."""

    discount = serializers.IntegerField()
    count = serializers.IntegerField()
    codes = serializers.ListField(child=serializers.CharField())
