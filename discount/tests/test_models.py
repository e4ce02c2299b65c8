from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from discount import errors
from discount.models import Discount, DiscountKind
from discount.tests.factories import DiscountFactory, PercentDiscountFactory

NOW = timezone.now()


class TestCheckUsable:
    def test_active_code_within_its_window_is_usable(self):
        DiscountFactory.build(started=NOW - timedelta(days=1)).check_usable(at=NOW)

    @pytest.mark.parametrize(
        ("fields", "error"),
        [
            ({"active": False}, errors.DiscountInactiveError),
            ({"started": NOW + timedelta(seconds=1)}, errors.DiscountNotStartedError),
            ({"ended": NOW}, errors.DiscountExpiredError),
            ({"ended": NOW - timedelta(days=1)}, errors.DiscountExpiredError),
            ({"usage_limit": 2, "times_used": 2}, errors.DiscountUsageLimitReachedError),
        ],
    )
    def test_each_reason_is_its_own_error(self, fields, error):
        with pytest.raises(error):
            DiscountFactory.build(**fields).check_usable(at=NOW)

    def test_code_without_end_never_expires(self):
        DiscountFactory.build(ended=None).check_usable(at=NOW + timedelta(days=3650))


class TestAmountOff:
    def test_flat_amount_in_the_carts_currency(self):
        assert DiscountFactory.build(value=Decimal("5")).amount_off(
            Decimal("20"), "USD"
        ) == Decimal("5.00")

    def test_flat_amount_never_exceeds_the_subtotal(self):
        assert DiscountFactory.build(value=Decimal("50")).amount_off(
            Decimal("20.00"), "USD"
        ) == Decimal("20.00")

    @pytest.mark.parametrize(
        ("value", "subtotal", "currency", "expected"),
        [
            ("10", "20.00", "USD", "2.00"),
            ("15", "0.10", "USD", "0.02"),  # 0.015 rounds half up
            ("12.5", "99.99", "USD", "12.50"),  # 12.49875
            ("33.3333", "100", "JPY", "33"),
            ("50", "5", "JPY", "3"),  # 2.5 yen rounds half up
            ("100", "19.99", "USD", "19.99"),
            ("10", "1.005", "BHD", "0.101"),  # 0.1005
        ],
    )
    def test_percent_rounds_half_up_to_the_minor_unit(self, value, subtotal, currency, expected):
        off = PercentDiscountFactory.build(value=Decimal(value)).amount_off(
            Decimal(subtotal), currency
        )
        assert off == Decimal(expected)
        assert str(off) == expected

    def test_a_flat_amount_is_rounded_down_to_the_currency(self):
        off = DiscountFactory.build(value=Decimal("5.5")).amount_off(Decimal("100"), "JPY")
        assert off == Decimal("5")

    def test_an_amount_rounding_to_nothing_has_no_effect(self):
        with pytest.raises(errors.DiscountNoEffectError):
            DiscountFactory.build(value=Decimal("0.4")).amount_off(Decimal("100"), "JPY")

    def test_code_for_another_currency_does_not_apply(self):
        with pytest.raises(errors.DiscountCurrencyMismatchError):
            DiscountFactory.build(currency="EUR").amount_off(Decimal("20"), "USD")

    def test_minimum_cart_total_is_compared_with_the_subtotal(self):
        discount = DiscountFactory.build(min_cart_total=Decimal("50.00"), currency="USD")
        with pytest.raises(errors.DiscountMinimumNotMetError):
            discount.amount_off(Decimal("49.99"), "USD")
        assert discount.amount_off(Decimal("50.00"), "USD") == Decimal("5.00")


@pytest.mark.django_db
class TestClean:
    def errors_of(self, discount) -> dict[str, list[str]]:
        with pytest.raises(ValidationError) as info:
            discount.clean()
        return {field: [e.code for e in errs] for field, errs in info.value.error_dict.items()}

    def test_valid_discount_passes(self):
        DiscountFactory.build(currency="usd").clean()

    def test_currency_is_normalized(self):
        discount = DiscountFactory.build(currency="usd")
        discount.clean()
        assert discount.currency == "USD"

    @pytest.mark.parametrize(
        ("fields", "field", "code"),
        [
            ({"value": Decimal("0")}, "value", "value_not_positive"),
            ({"value": Decimal("-1")}, "value", "value_not_positive"),
            (
                {"kind": DiscountKind.PERCENT, "value": Decimal("100.01")},
                "value",
                "percent_above_100",
            ),
            ({"value": Decimal("10000000000.01")}, "value", "amount_too_large"),
            ({"value": Decimal("0.5"), "currency": "JPY"}, "value", "too_many_decimals"),
            ({"currency": "ZZZ"}, "currency", "unknown_currency"),
            (
                {"min_cart_total": Decimal("-1"), "currency": "USD"},
                "min_cart_total",
                "out_of_range",
            ),
            ({"min_cart_total": Decimal("1")}, "min_cart_total", "currency_required"),
            (
                {"min_cart_total": Decimal("1.001"), "currency": "USD"},
                "min_cart_total",
                "too_many_decimals",
            ),
            (
                {"budget_amount": Decimal("0"), "currency": "USD"},
                "budget_amount",
                "out_of_range",
            ),
            (
                {"budget_amount": Decimal("10000000000.01"), "currency": "USD"},
                "budget_amount",
                "out_of_range",
            ),
            ({"budget_amount": Decimal("10")}, "budget_amount", "currency_required"),
            (
                {"budget_amount": Decimal("10.5"), "currency": "JPY"},
                "budget_amount",
                "too_many_decimals",
            ),
            ({"ended": NOW - timedelta(seconds=1)}, "ended", "already_expired"),
            (
                {"started": NOW + timedelta(days=2), "ended": NOW + timedelta(days=1)},
                "ended",
                "ends_before_start",
            ),
            ({"usage_limit": 1, "times_used": 2}, "usage_limit", "below_times_used"),
        ],
    )
    def test_each_bad_field_is_named_with_a_code(self, fields, field, code):
        assert self.errors_of(DiscountFactory.build(**fields)) == {field: [code]}

    def test_an_expired_end_is_allowed_when_editing_an_existing_code(self, db):
        discount = DiscountFactory()
        discount.ended = NOW - timedelta(days=1)
        discount.clean()


@pytest.mark.django_db
class TestDatabaseGuards:
    def test_codes_are_unique_ignoring_case(self):
        DiscountFactory(code="DIS20")
        with pytest.raises(IntegrityError), transaction.atomic():
            DiscountFactory(code="dis20")

    def test_with_code_finds_any_case(self):
        discount = DiscountFactory(code="DIS20")
        assert list(Discount.objects.with_code(" dis20 ")) == [discount]

    def test_uses_can_never_pass_the_limit(self):
        discount = DiscountFactory(usage_limit=1, times_used=1)
        with pytest.raises(IntegrityError), transaction.atomic():
            Discount.objects.filter(pk=discount.pk).update(times_used=2)

    def test_percent_above_100_is_refused_by_the_database(self):
        with pytest.raises(IntegrityError), transaction.atomic():
            PercentDiscountFactory(value=Decimal("101"))

    def test_str_is_the_code(self):
        assert str(DiscountFactory.build(code="SPRING")) == "SPRING"
