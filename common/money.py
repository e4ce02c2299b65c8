"""Money rules shared by every app: ISO-4217 currencies, precision and rounding.

Amounts are always `Decimal`. Which currencies exist and how many decimals each one
allows come from the `iso4217` package (the official ISO table), never from a list
kept here. Currencies without minor units in that table (gold, test and fund codes
such as XAU or XXX) are refused: they are not something a shop charges in.

    >>> quantize(Decimal("10.005"), "USD")
    Decimal('10.01')
    >>> to_minor_units(Decimal("15.00"), "USD"), to_minor_units(Decimal("15"), "JPY")
    (1500, 15)

This module imports nothing from Django, so the payment client can use it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import cache

import iso4217

# Largest amount a cart, a discount or a payment may carry, in major units. Anything
# above this is a typo or an attack, not a basket. The database columns
# (max_digits=15, decimal_places=4) hold it with room to spare.
MAX_AMOUNT = Decimal("10000000000")
# Database column shape for every amount: enough decimals for any ISO currency.
AMOUNT_MAX_DIGITS = 15
AMOUNT_DECIMAL_PLACES = 4


class UnknownCurrencyError(ValueError):
    """The code is not an ISO-4217 currency a shop can charge in."""


@cache
def _exponents() -> dict[str, int]:
    return {c.code: c.exponent for c in iso4217.Currency if c.exponent is not None}


def normalize_currency(code: str) -> str:
    """Return the upper-case ISO code, or raise `UnknownCurrencyError`."""
    normalized = code.strip().upper() if isinstance(code, str) else ""
    if normalized not in _exponents():
        raise UnknownCurrencyError(f"'{code}' is not an ISO 4217 currency code.")
    return normalized


def currency_exponent(currency: str) -> int:
    """Number of decimals the currency allows (USD 2, JPY 0, BHD 3)."""
    return _exponents()[normalize_currency(currency)]


def decimal_places(amount: Decimal) -> int:
    """Significant decimals in `amount`: 10.50 has 1, 10 has 0."""
    exponent = amount.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def fits_currency(amount: Decimal, currency: str) -> bool:
    """True when `amount` needs no more decimals than the currency allows."""
    return decimal_places(amount) <= currency_exponent(currency)


def quantize(amount: Decimal, currency: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round to the currency's minor unit: half up (the rounding shops print) unless told."""
    step = Decimal(1).scaleb(-currency_exponent(currency))
    return amount.quantize(step, rounding=rounding)


def quantizer(currency: str) -> Callable[[Decimal], Decimal]:
    """`quantize` for many amounts of one currency: its minor unit found once (a cart's
    answer rounds five amounts, a page a hundred)."""
    step = Decimal(1).scaleb(-currency_exponent(currency))
    return lambda amount: amount.quantize(step, rounding=ROUND_HALF_UP)


def round_down(amount: Decimal, currency: str) -> Decimal:
    """Truncate to the currency's minor unit: 5.5 JPY -> 5."""
    return quantize(amount, currency, rounding=ROUND_DOWN)


def format_amount(amount: Decimal, currency: str) -> str:
    """'20.00 USD', '1500 JPY': for people (the admin, logs), as the API rounds it."""
    try:
        return f"{quantize(amount, currency)} {currency}"
    except UnknownCurrencyError:
        return f"{amount.normalize():f} {currency}".strip()


def precision_message(currency: str) -> str:
    return f"{currency} amounts have at most {currency_exponent(currency)} decimal places."


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Exact integer minor units (cents) for the wire; refuses amounts that don't fit."""
    if not fits_currency(amount, currency):
        raise ValueError(f"{amount} has more decimals than {currency} allows.")
    return int(amount.scaleb(currency_exponent(currency)))


def from_minor_units(units: int, currency: str) -> Decimal:
    """Inverse of `to_minor_units`: 1500 USD cents -> Decimal('15.00')."""
    return quantize(Decimal(units).scaleb(-currency_exponent(currency)), currency)


def allocate(amount: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split `amount` over `weights` in proportion, exactly in the currency's minor unit.

    Largest remainder: each share is first rounded down to the minor unit, then the
    minor units left over go, one each, to the shares that lost the most to rounding
    (ties to the earlier one). So the shares always add up to `amount`, none is off its
    exact proportion by a whole minor unit or more, and a zero weight gets nothing.

        >>> allocate(Decimal("10.00"), [Decimal(1), Decimal(1), Decimal(1)], "USD")
        [Decimal('3.34'), Decimal('3.33'), Decimal('3.33')]
    """
    units = to_minor_units(amount, currency)
    if units < 0 or any(weight < 0 for weight in weights):
        raise ValueError("Only a non-negative amount is split over non-negative weights.")
    whole = sum(weights, Decimal(0))
    if units and not whole:
        raise ValueError("Nothing to split over: every weight is zero.")
    if not units:
        return [from_minor_units(0, currency) for _ in weights]
    # Integer arithmetic on exact decimals: units * weight / whole as quotient and remainder.
    exponent = min((w.as_tuple().exponent for w in (*weights, whole)), default=0)
    scale = Decimal(1).scaleb(-exponent) if exponent < 0 else Decimal(1)
    scaled = [int(weight * scale) for weight in weights]
    total = int(whole * scale)
    shares, remainders = [], []
    for index, weight in enumerate(scaled):
        share, remainder = divmod(units * weight, total)
        shares.append(share)
        remainders.append((-remainder, index))
    for _, index in sorted(remainders)[: units - sum(shares)]:
        shares[index] += 1
    return [from_minor_units(share, currency) for share in shares]
