"""A discount's rules at their edges: what creating a code stores, the largest and
smallest values it may hold, and the exact instants its window and its reservations
open and close."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from cart.tests.factories import CartFactory
from common import money
from discount import errors
from discount.models import Discount, DiscountKind, DiscountReservation, ReservationStatus
from discount.services import (
    discount_create,
    discount_release_expired_reservations,
    discount_reserve,
)
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def codes_of(error: ValidationError) -> dict[str, list[str]]:
    return {field: [e.code for e in errs] for field, errs in error.error_dict.items()}


class TestDiscountCreateStoresWhatItIsGiven:
    def test_every_setting_is_stored_as_given(self):
        started = timezone.now() - timedelta(hours=1)
        ended = timezone.now() + timedelta(days=3)

        created = discount_create(
            code="Spring-12",
            value=Decimal("12.5"),
            kind=DiscountKind.PERCENT,
            currency="eur",
            description="Spring sale",
            started=started,
            ended=ended,
            active=False,
            min_cart_total=Decimal("30.00"),
            usage_limit=7,
        )

        stored = Discount.objects.get(pk=created.pk)
        assert (stored.code, stored.value, stored.kind) == (
            "Spring-12",
            Decimal("12.50"),
            DiscountKind.PERCENT,
        )
        assert (stored.currency, stored.description, stored.active) == (
            "EUR",
            "Spring sale",
            False,
        )
        assert (stored.started, stored.ended) == (started, ended)
        assert (stored.min_cart_total, stored.usage_limit, stored.times_used) == (
            Decimal("30.00"),
            7,
            0,
        )

    def test_a_percent_code_takes_a_share_not_an_amount(self):
        created = discount_create(code="TWELVE", value=Decimal("12.5"), kind=DiscountKind.PERCENT)

        stored = Discount.objects.get(pk=created.pk)
        assert stored.amount_off(Decimal("40.00"), "USD") == Decimal("5.00")

    def test_a_dated_code_expires_at_its_end(self):
        ended = timezone.now() + timedelta(days=1)
        created = discount_create(code="DATED", value=Decimal("5"), ended=ended)

        stored = Discount.objects.get(pk=created.pk)
        stored.check_usable(at=ended - timedelta(microseconds=1))
        with pytest.raises(errors.DiscountExpiredError):
            stored.check_usable(at=ended)

    def test_the_defaults_make_an_active_amount_code_for_any_currency_without_end(self):
        created = discount_create(code="PLAIN", value=Decimal("5"))

        stored = Discount.objects.get(pk=created.pk)
        assert (stored.kind, stored.currency, stored.active) == (DiscountKind.AMOUNT, "", True)
        assert (stored.started, stored.ended, stored.min_cart_total, stored.usage_limit) == (
            None,
            None,
            None,
            None,
        )

    def test_every_campaign_setting_is_stored_as_given(self):
        created = discount_create(
            code="CAMPAIGN",
            value=Decimal("5"),
            currency="USD",
            skus=["MUG"],
            sku_prefixes=["TEA-"],
            limit_per_customer=2,
            first_order_only=True,
            budget_amount=Decimal("500"),
            automatic=True,
        )

        stored = Discount.objects.get(pk=created.pk)
        assert (stored.skus, stored.sku_prefixes) == (["MUG"], ["TEA-"])
        assert (stored.limit_per_customer, stored.first_order_only) == (2, True)
        assert (stored.budget_amount, stored.automatic) == (Decimal("500.00"), True)

    def test_the_defaults_make_a_typed_code_for_the_whole_cart_and_every_customer(self):
        created = discount_create(code="PLAIN", value=Decimal("5"))

        stored = Discount.objects.get(pk=created.pk)
        assert (stored.description, stored.automatic) == ("", False)
        assert (stored.skus, stored.sku_prefixes) == ([], [])
        assert (stored.limit_per_customer, stored.first_order_only, stored.budget_amount) == (
            None,
            False,
            None,
        )

    def test_a_refused_code_is_not_stored(self):
        with pytest.raises(ValidationError) as info:
            discount_create(code="TOOMUCH", value=Decimal("100.01"), kind=DiscountKind.PERCENT)

        assert codes_of(info.value) == {"value": ["percent_above_100"]}
        assert not Discount.objects.exists()

    def test_a_code_taken_in_another_case_is_refused(self):
        DiscountFactory(code="DIS20")

        with pytest.raises(ValidationError) as info:
            discount_create(code="dis20", value=Decimal("5"))

        assert codes_of(info.value) == {"code": ["code_taken"]}
        assert Discount.objects.count() == 1


class TestLargestAndSmallestValues:
    def test_a_100_percent_code_is_accepted_and_makes_the_cart_free(self):
        created = discount_create(code="FREE", value=Decimal("100"), kind=DiscountKind.PERCENT)

        stored = Discount.objects.get(pk=created.pk)
        assert stored.amount_off(Decimal("19.99"), "USD") == Decimal("19.99")

    def test_the_largest_amount_is_accepted_and_one_cent_more_is_not(self):
        discount_create(code="MAX", value=money.MAX_AMOUNT, currency="USD")

        with pytest.raises(ValidationError) as info:
            discount_create(code="OVER", value=money.MAX_AMOUNT + Decimal("0.01"))
        assert codes_of(info.value) == {"value": ["amount_too_large"]}

    def test_a_percentage_above_the_largest_amount_is_still_just_a_percentage_check(self):
        # 100 % is checked against 100, never against MAX_AMOUNT
        with pytest.raises(ValidationError) as info:
            discount_create(code="PCT", value=Decimal("101"), kind=DiscountKind.PERCENT)
        assert codes_of(info.value) == {"value": ["percent_above_100"]}

    def test_a_minimum_cart_total_of_zero_applies_to_every_cart(self):
        created = discount_create(
            code="ZERO-MIN", value=Decimal("5"), currency="USD", min_cart_total=Decimal("0")
        )

        stored = Discount.objects.get(pk=created.pk)
        assert stored.min_cart_total == Decimal("0")
        assert stored.amount_off(Decimal("0.01"), "USD") == Decimal("0.01")

    def test_the_largest_minimum_cart_total_is_accepted_and_one_cent_more_is_not(self):
        discount_create(
            code="BIGMIN", value=Decimal("5"), currency="USD", min_cart_total=money.MAX_AMOUNT
        )

        with pytest.raises(ValidationError) as info:
            discount_create(
                code="OVERMIN",
                value=Decimal("5"),
                currency="USD",
                min_cart_total=money.MAX_AMOUNT + Decimal("0.01"),
            )
        assert codes_of(info.value) == {"min_cart_total": ["out_of_range"]}

    def test_a_budget_of_one_cent_and_one_of_the_largest_amount_are_accepted(self):
        cent = discount_create(
            code="CENT", value=Decimal("5"), currency="USD", budget_amount=Decimal("0.01")
        )
        largest = discount_create(
            code="HUGE", value=Decimal("5"), currency="USD", budget_amount=money.MAX_AMOUNT
        )

        assert Discount.objects.get(pk=cent.pk).budget_amount == Decimal("0.01")
        assert Discount.objects.get(pk=largest.pk).budget_amount == money.MAX_AMOUNT

    def test_a_code_of_the_longest_length_is_found_in_any_case(self):
        created = discount_create(code="L" * 64, value=Decimal("5"))

        assert Discount.objects.with_code("l" * 64).get() == created

    def test_the_database_keeps_a_100_percent_code_and_refuses_zero(self):
        # Rows written without the model's rules, as a bulk import or a migration might.
        DiscountFactory(code="ALL", kind=DiscountKind.PERCENT, value=Decimal("100"))
        with pytest.raises(IntegrityError), transaction.atomic():
            DiscountFactory(code="NOTHING", value=Decimal("0"))


class TestWindowInstants:
    def test_a_code_ending_when_it_starts_is_refused(self):
        instant = timezone.now() + timedelta(days=1)

        with pytest.raises(ValidationError) as info:
            discount_create(code="BLINK", value=Decimal("5"), started=instant, ended=instant)

        assert codes_of(info.value) == {"ended": ["ends_before_start"]}

    def test_the_database_refuses_a_window_that_ends_when_it_starts(self):
        instant = timezone.now() + timedelta(days=1)
        with pytest.raises(IntegrityError), transaction.atomic():
            DiscountFactory(started=instant, ended=instant)

    def test_a_window_of_one_microsecond_is_accepted(self):
        started = timezone.now() + timedelta(days=1)
        discount_create(
            code="SHORT",
            value=Decimal("5"),
            started=started,
            ended=started + timedelta(microseconds=1),
        )

    def test_a_code_is_usable_from_its_first_instant(self):
        started = timezone.now() + timedelta(days=1)
        discount = DiscountFactory.build(started=started, ended=started + timedelta(days=1))

        discount.check_usable(at=started)
        with pytest.raises(errors.DiscountNotStartedError):
            discount.check_usable(at=started - timedelta(microseconds=1))

    def test_a_new_code_ending_now_or_before_is_already_expired(self):
        with pytest.raises(ValidationError) as info:
            discount_create(code="GONE", value=Decimal("5"), ended=timezone.now())
        assert codes_of(info.value) == {"ended": ["already_expired"]}

    def test_a_new_code_ending_at_the_instant_it_is_created_is_already_expired(self, monkeypatch):
        # No cart could ever use it: a code is expired from its end on (check_usable).
        instant = timezone.now()
        monkeypatch.setattr(timezone, "now", lambda: instant)

        with pytest.raises(ValidationError) as info:
            discount_create(code="BLINK", value=Decimal("5"), ended=instant)
        assert codes_of(info.value) == {"ended": ["already_expired"]}

        last = discount_create(
            code="LAST", value=Decimal("5"), ended=instant + timedelta(microseconds=1)
        )
        last.check_usable(at=instant)


class TestReservationInstants:
    def reserve(self, discount, *, at):
        return discount_reserve(discount=discount, cart=CartFactory(), amount=Decimal("5"), at=at)

    def test_a_reservation_holds_its_use_until_its_expiry_and_not_at_it(self, settings):
        settings.DISCOUNT_RESERVATION_TTL = 600
        discount = DiscountFactory(usage_limit=1)
        at = timezone.now()
        reservation = self.reserve(discount, at=at)
        assert reservation.expires == at + timedelta(seconds=600)

        assert discount.uses_held(at=reservation.expires - timedelta(microseconds=1)) == 1
        assert discount.uses_held(at=reservation.expires) == 0
        with pytest.raises(errors.DiscountUsageLimitReachedError):
            self.reserve(discount, at=reservation.expires - timedelta(microseconds=1))
        self.reserve(discount, at=reservation.expires)

    def test_the_sweep_releases_a_reservation_at_its_expiry_and_not_before(self):
        discount = DiscountFactory(usage_limit=3)
        reservation = self.reserve(discount, at=timezone.now())

        assert (
            discount_release_expired_reservations(
                now=reservation.expires - timedelta(microseconds=1)
            )
            == 0
        )
        assert discount_release_expired_reservations(now=reservation.expires) == 1
        reservation.refresh_from_db()
        assert reservation.status == ReservationStatus.RELEASED

    def test_the_sweep_releases_every_expired_reservation_up_to_its_batch(self):
        discount = DiscountFactory()
        at = timezone.now()
        for _ in range(3):
            self.reserve(discount, at=at)
        later = at + timedelta(days=1)

        assert discount_release_expired_reservations(now=later, batch=2) == 2
        assert discount_release_expired_reservations(now=later, batch=2) == 1
        assert not DiscountReservation.objects.filter(status=ReservationStatus.RESERVED).exists()
