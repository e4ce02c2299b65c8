from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# -- allocation ------------------------------------------------------------------------

CURRENCIES = st.sampled_from(["USD", "JPY", "BHD", "CLF"])


@st.composite
def allocations(draw):
    currency = draw(CURRENCIES)
    units = draw(st.integers(min_value=0, max_value=10**12))
    weights = draw(
        st.lists(
            st.decimals(min_value=0, max_value=10**9, places=draw(st.integers(0, 4))),
            min_size=1,
            max_size=40,
        ).filter(lambda ws: sum(ws) > 0)
    )
    return money.from_minor_units(units, currency), weights, currency


# Generating the cases is slow on a loaded machine (mutation runs, parallel CI): how fast
# examples come is no property of the money code.
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(allocations())
def test_allocated_shares_add_up_exactly_to_the_amount(case):
    amount, weights, currency = case
    shares = money.allocate(amount, weights, currency)
    assert sum(shares) == amount
    assert len(shares) == len(weights)
    assert all(money.fits_currency(share, currency) for share in shares)


@given(allocations())
def test_each_share_is_within_one_minor_unit_of_its_exact_proportion(case):
    amount, weights, currency = case
    unit = Decimal(1).scaleb(-money.currency_exponent(currency))
    whole = sum(weights)
    for share, weight in zip(money.allocate(amount, weights, currency), weights, strict=True):
        exact = amount * weight / whole
        assert abs(share - exact) < unit
        if weight == 0:
            assert share == 0


def test_largest_remainders_get_the_leftover_units_earliest_first_on_ties():
    three = [Decimal(1), Decimal(1), Decimal(1)]
    assert money.allocate(Decimal("10.00"), three, "USD") == [
        Decimal("3.34"),
        Decimal("3.33"),
        Decimal("3.33"),
    ]
    # 1.00 over 1:2 is 0.333… and 0.666…: the second lost more to rounding.
    assert money.allocate(Decimal("1.00"), [Decimal("5.00"), Decimal("10.00")], "USD") == [
        Decimal("0.33"),
        Decimal("0.67"),
    ]
    assert money.allocate(Decimal("7"), [Decimal("2"), Decimal("0")], "JPY") == [7, 0]


def test_allocating_nothing_gives_zero_shares_even_over_zero_weights():
    assert money.allocate(Decimal("0.00"), [Decimal(0), Decimal(0)], "USD") == [0, 0]


@pytest.mark.parametrize(
    ("amount", "weights"),
    [
        (Decimal("1.00"), [Decimal(0)]),
        (Decimal("-1.00"), [Decimal(1)]),
        (Decimal("1.00"), [Decimal(-1), Decimal(2)]),
        (Decimal("1.001"), [Decimal(1)]),
    ],
)
def test_allocation_refuses_what_cannot_be_split(amount, weights):
    with pytest.raises(ValueError, match=r"split|decimals"):
        money.allocate(amount, weights, "USD")


@pytest.mark.parametrize("currency", ["USD", "jpy", "BHD"])
@pytest.mark.parametrize("amount", ["0", "1.005", "2.5", "10.994999", "-3.3351", "19999.9995"])
def test_a_quantizer_rounds_as_quantize_does(currency, amount):
    assert money.quantizer(currency)(Decimal(amount)) == money.quantize(Decimal(amount), currency)
    assert str(money.quantizer(currency)(Decimal(amount))) == str(
        money.quantize(Decimal(amount), currency)
    )


def test_a_quantizer_refuses_an_unknown_currency():
    with pytest.raises(money.UnknownCurrencyError):
        money.quantizer("XYZ")
