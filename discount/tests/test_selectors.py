"""`discount_find_code` runs one statement compiled once (`common.compiled`): it must
answer exactly what the ORM's queryset answers, whatever the code and its uses."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.models import PaymentStatus
from cart.tests.factories import CartFactory
from discount.errors import DiscountCodeUsedError, DiscountNotFoundError
from discount.models import Discount, DiscountReservation, ReservationStatus
from discount.selectors import (
    _AUTOMATIC_PROMOTIONS,
    _BY_CODE,
    _CODE_HELD,
    discount_automatic_promotions,
    discount_code_held,
    discount_find_code,
)
from discount.services import discount_generate_codes
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db

SHOWN = (
    *(field.attname for field in Discount._meta.concrete_fields),
    "reserved_uses_now",
)


def _reserve(discount, *, expires, status=ReservationStatus.RESERVED, code=None, paying=False):
    cart = CartFactory(
        payment_status=PaymentStatus.PROCESSING if paying else PaymentStatus.PENDING
    )
    return DiscountReservation.objects.create(
        discount=discount,
        cart=cart,
        code=code,
        amount=Decimal("5"),
        currency="USD",
        expires=expires,
        status=status,
    )


def _rows(discounts, extra):
    return [
        (
            {name: getattr(d, name) for name in SHOWN},
            {
                name: bool(getattr(d, name))
                if name.endswith(("_codes", "_held"))
                else getattr(d, name)
                for name in extra
            },
        )
        for d in discounts
    ]


def _same_as_the_orm(query, extra, **values):
    compiled = query.run(**values)
    assert _rows(compiled, extra) == _rows(list(query.queryset(**values)), extra)
    return compiled


def test_the_compiled_queries_answer_what_the_orm_answers_for_every_kind_of_code():
    now = timezone.now()
    limited = DiscountFactory(code="Limited5", usage_limit=3)
    _reserve(limited, expires=now + timedelta(minutes=5))  # live
    _reserve(limited, expires=now - timedelta(minutes=5))  # expired
    _reserve(limited, expires=now - timedelta(minutes=5), paying=True)  # held: being paid
    _reserve(limited, expires=now + timedelta(minutes=5), status=ReservationStatus.RELEASED)
    DiscountFactory(code="OPEN5")
    campaign = DiscountFactory(code="XMAS")
    free, held, released = discount_generate_codes(discount=campaign, count=3, prefix="X-")
    _reserve(campaign, expires=now + timedelta(minutes=5), code=held)
    _reserve(
        campaign,
        expires=now + timedelta(minutes=5),
        code=released,
        status=ReservationStatus.RELEASED,
    )

    def by_code(code, at=now):
        return _same_as_the_orm(_BY_CODE, EXTRA, code=code.lower(), upper_code=code.upper(), at=at)

    (found,) = by_code("limited5")
    assert (found.code, found.reserved_uses_now, bool(found.owns_codes)) == ("Limited5", 2, False)
    assert found.generated_id is None
    (found,) = by_code("xmas")
    assert found.owns_codes
    assert by_code("open5")[0].reserved_uses_now == 0
    assert by_code("nothing") == []
    # Another moment counts other reservations: the time is a parameter, not a constant.
    assert by_code("limited5", at=now + timedelta(minutes=10))[0].reserved_uses_now == 1

    for code, is_held in ((free, False), (held, True), (released, False)):
        (owner,) = by_code(code.code)
        assert (owner.pk, owner.generated_id, bool(owner.generated_held)) == (
            campaign.pk,
            code.pk,
            is_held,
        )
        assert not owner.owns_codes
    assert by_code("X-NOTHING") == []


EXTRA = ("owns_codes", "generated_id", "generated_held")


def test_find_code_answers_each_code_as_before():
    DiscountFactory(code="SPRING5", usage_limit=10)
    campaign = DiscountFactory(code="XMAS")
    free, held = discount_generate_codes(discount=campaign, count=2, prefix="X-")
    _reserve(campaign, expires=timezone.now() + timedelta(minutes=5), code=held)

    discount, generated = discount_find_code(code="spring5")
    assert (discount.code, discount.reserved_uses_now, generated) == ("SPRING5", 0, None)
    discount, generated = discount_find_code(code=free.code.lower())
    assert (discount.pk, generated.pk, generated.code) == (campaign.pk, free.pk, free.code)
    with pytest.raises(DiscountCodeUsedError):
        discount_find_code(code=held.code)
    for unusable in ("xmas", "nothing"):  # a campaign's own code names no use
        with pytest.raises(DiscountNotFoundError):
            discount_find_code(code=unusable)


def test_the_compiled_automatic_promotions_are_the_orms_oldest_first():
    older = DiscountFactory(code="AUTO1", automatic=True)
    DiscountFactory(code="TYPED", automatic=False)
    DiscountFactory(code="PAUSED", automatic=True, active=False)
    newer = DiscountFactory(code="AUTO2", automatic=True, value=Decimal("7"))
    found = discount_automatic_promotions()
    assert [d.pk for d in found] == [older.pk, newer.pk]
    assert [d.pk for d in found] == [d.pk for d in _AUTOMATIC_PROMOTIONS.queryset()]
    fields = [f.attname for f in Discount._meta.concrete_fields]
    assert [[getattr(d, f) for f in fields] for d in found] == [
        [getattr(d, f) for f in fields] for d in _AUTOMATIC_PROMOTIONS.queryset()
    ]


def test_a_code_is_taken_by_another_discount_in_any_case_or_by_a_generated_code():
    # Discount.code_taken runs one compiled statement over both tables.
    spring = DiscountFactory(code="SPRING")
    campaign = DiscountFactory(code="XMAS")
    (generated,) = discount_generate_codes(discount=campaign, count=1, prefix="XM")
    assert Discount(code="spring").code_taken()
    assert Discount(code=" Spring ").code_taken()
    assert not spring.code_taken()  # its own code, when it is edited
    assert Discount(code=generated.code.lower()).code_taken()
    assert campaign.code_taken() is False
    assert not Discount(code="SUMMER").code_taken()
    assert not Discount(code="not a code!").code_taken()


def test_a_generated_code_is_held_while_a_reservation_of_it_is_not_released():
    discount = DiscountFactory(code="HELDCAMPAIGN")
    free, reserved, consumed, released = discount_generate_codes(discount=discount, count=4)
    later = timezone.now() + timedelta(hours=1)
    _reserve(discount, expires=later, code=reserved)
    _reserve(discount, expires=later, code=consumed, status=ReservationStatus.CONSUMED)
    _reserve(discount, expires=later, code=released, status=ReservationStatus.RELEASED)

    held = {
        code.code: discount_code_held(code.pk) for code in (free, reserved, consumed, released)
    }

    assert held == {
        free.code: False,
        reserved.code: True,
        consumed.code: True,
        released.code: False,
    }
    for code in (free, reserved, consumed, released):  # the compiled query is the ORM's
        assert bool(_CODE_HELD.run(code_id=code.pk)) == bool(
            list(_CODE_HELD.queryset(code_id=code.pk))
        )
