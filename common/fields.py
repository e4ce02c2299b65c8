"""The one way an amount of money is stored and read in this service.

    total = AmountField()                      # model: Decimal, 15 digits, 4 decimals
    total = JSONAmountField(min_value=0)       # API: JSON number or numeric string in,
                                               # exact JSON number out

Four decimals hold every ISO-4217 currency (CLF has 4); whether an amount fits its own
currency is checked by the model's `clean()` (see `common.money.fits_currency`).
"""

import re
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from rest_framework import serializers
from rest_framework.fields import get_error_detail

from common import money

# Plain ASCII decimal notation. Python's Decimal() would also take "1_000" or full-width
# digits, which no client means as an amount.
_NUMERIC_STRING = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", re.ASCII)


def is_plain_number(text: str) -> bool:
    """Whether an amount typed as `text` (spaces around it aside) is in plain ASCII
    decimal notation: "12", "-0.5", "1e3", not "١٢" or "1_000". The API's amounts and
    the admin's read it so."""
    return _NUMERIC_STRING.fullmatch(text.strip()) is not None


class AmountField(models.DecimalField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", money.AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", money.AMOUNT_DECIMAL_PLACES)
        super().__init__(*args, **kwargs)


class JSONAmountField(serializers.DecimalField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", money.AMOUNT_MAX_DIGITS)
        kwargs.setdefault("decimal_places", money.AMOUNT_DECIMAL_PLACES)
        kwargs.setdefault("coerce_to_string", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> Decimal:
        if isinstance(data, str) and not is_plain_number(data):
            self.fail("invalid")
        value = super().to_internal_value(data)
        return value.copy_abs() if value.is_zero() else value  # "-0" is 0


def is_ascii_number(text: str) -> bool:
    """Whether a whole number typed as `text` is in ASCII digits: int() would also read
    Arabic-Indic "١٢" or full-width "１２" as 12, and "1_000" as 1000, which nobody
    typing them means (amounts refuse them too). The API's whole numbers and the
    admin's read it so."""
    return text.isascii() and "_" not in text


class WholeNumberField(serializers.IntegerField):
    """An integer: a JSON number, or a string of ASCII digits (`is_ascii_number`)."""

    def to_internal_value(self, data) -> int:
        if isinstance(data, str) and not is_ascii_number(data):
            self.fail("invalid")
        return super().to_internal_value(data)


# For a ModelSerializer's `serializer_field_mapping`: its model's integer fields read so.
WHOLE_NUMBER_MAPPING = {
    model_field: WholeNumberField
    for model_field, field in serializers.ModelSerializer.serializer_field_mapping.items()
    if field is serializers.IntegerField
}


def clean_currency(code: str) -> str:
    """The upper-case ISO-4217 code, or a ValidationError coded `unknown_currency`."""
    try:
        return money.normalize_currency(code)
    except money.UnknownCurrencyError as exc:
        raise ValidationError(str(exc), code="unknown_currency") from None


def check_fits_currency(amount: Decimal, currency: str) -> None:
    """A ValidationError coded `too_many_decimals` for 10.5 JPY or 1.234 USD."""
    if not money.fits_currency(amount, currency):
        raise ValidationError(money.precision_message(currency), code="too_many_decimals")


def run_validator(validator, value):
    """Call one of the validators above from a serializer field method."""
    try:
        return validator(value)
    except ValidationError as exc:
        raise serializers.ValidationError(get_error_detail(exc)) from None


def run_model_clean(instance: models.Model) -> None:
    """Run the model's own rules from a serializer: the API and the admin refuse alike.

    Django's ValidationError (with its codes) becomes DRF's, so the error handler names
    each field and its code.
    """
    try:
        instance.clean()
    except ValidationError as exc:
        raise serializers.ValidationError(get_error_detail(exc)) from None
