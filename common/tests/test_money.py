from decimal import Decimal

import pytest

from common import money


@pytest.mark.parametrize(
    ("currency", "places"), [("USD", 2), ("usd", 2), ("JPY", 0), ("BHD", 3), ("CLF", 4)]
)
def test_currency_exponent_comes_from_the_iso_table(currency, places):
    assert money.currency_exponent(currency) == places


@pytest.mark.parametrize("code", ["XAU", "XXX", "ABC", "US", "", "USDX", None, 840])
def test_unknown_or_non_chargeable_currencies_are_refused(code):
    with pytest.raises(money.UnknownCurrencyError):
        money.normalize_currency(code)


def test_normalize_currency_upper_cases_and_strips():
    assert money.normalize_currency(" eur ") == "EUR"


@pytest.mark.parametrize(
    ("amount", "currency", "fits"),
    [
        ("10.5", "JPY", False),
        ("10", "JPY", True),
        ("1.234", "USD", False),
        ("1.23", "USD", True),
        ("1.2300", "USD", True),
        ("1.234", "BHD", True),
    ],
)
def test_fits_currency_counts_significant_decimals(amount, currency, fits):
    assert money.fits_currency(Decimal(amount), currency) is fits


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("10.005", "USD", "10.01"),
        ("10.004", "USD", "10.00"),
        ("2.5", "JPY", "3"),
        ("-2.5", "JPY", "-3"),
        ("0.0005", "BHD", "0.001"),
    ],
)
def test_quantize_rounds_half_up_to_the_minor_unit(amount, currency, expected):
    result = money.quantize(Decimal(amount), currency)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_minor_units_round_trip_exactly():
    assert money.to_minor_units(Decimal("15.00"), "USD") == 1500
    assert money.to_minor_units(Decimal("15"), "JPY") == 15
    assert money.to_minor_units(Decimal("1.234"), "BHD") == 1234
    assert money.from_minor_units(1500, "USD") == Decimal("15.00")
    assert str(money.from_minor_units(1234, "BHD")) == "1.234"


def test_minor_units_refuse_amounts_finer_than_the_currency():
    with pytest.raises(ValueError, match="more decimals"):
        money.to_minor_units(Decimal("10.5"), "JPY")
