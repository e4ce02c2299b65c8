"""Reading discounts.

discount = discount_get_by_code(code="dis20")   # DiscountNotFoundError if none
discount.check_usable(at=now, reserved=discount.reserved_uses_now)
discount, generated = discount_find_code(code="XMAS-7KQ4M-XW2P9-HD3")  # a generated one too
promotions = discount_automatic_promotions()   # active automatic ones, oldest first
"""

from datetime import datetime

from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from common.compiled import CompiledQuery
from discount.errors import DiscountCodeUsedError, DiscountNotFoundError
from discount.models import (
    Discount,
    DiscountCode,
    DiscountReservation,
    ReservationStatus,
    normalize_code,
)


def discount_get_by_code(*, code: str, at: datetime | None = None) -> Discount:
    """The discount with this code in any case, with `reserved_uses_now` (its live
    reservations at `at`, default now) read in the same query; `DiscountNotFoundError` if
    there is none, `DiscountCodeMalformedError` if `code` is not made of the code alphabet.
    """
    normalize_code(code)
    at = at or timezone.now()
    discount = Discount.objects.with_code(code).with_reserved_uses(at=at).first()
    if discount is None:
        raise DiscountNotFoundError()
    return discount


def _by_own_code(code: str, at: datetime):
    owns_codes = Exists(DiscountCode.objects.filter(discount=OuterRef("pk")))
    return (
        Discount.objects.with_code(code)
        .with_reserved_uses_against_limit(at=at)
        .annotate(owns_codes=owns_codes)[:1]
    )


def _by_generated_code(code: str, at: datetime):
    held = DiscountReservation.objects.filter(code=OuterRef("codes__id")).exclude(
        status=ReservationStatus.RELEASED
    )
    return (
        Discount.objects.filter(codes__code=code)
        .with_reserved_uses_against_limit(at=at)
        .annotate(generated_id=F("codes__id"), generated_held=Exists(held))[:1]
    )


# Both run on every apply: compiled once (`common.compiled`), as building and compiling
# their subqueries cost more CPU than the rest of an apply's statements together.
_BY_OWN_CODE = CompiledQuery(_by_own_code, code=str, at=datetime)
_BY_GENERATED_CODE = CompiledQuery(_by_generated_code, code=str, at=datetime)


def _automatic_promotions():
    return Discount.objects.filter(automatic=True, active=True).order_by("pk")


# Asked on every cart created and every line change, mostly to find none: compiled once,
# as compiling it cost more CPU than sending it.
_AUTOMATIC_PROMOTIONS = CompiledQuery(_automatic_promotions)


def discount_automatic_promotions() -> list[Discount]:
    """The active automatic promotions, oldest first (whether each is usable now is for
    the caller to check)."""
    return _AUTOMATIC_PROMOTIONS.run()


# Every use reserved locks its code's row first.
_DISCOUNT_LOCKED = CompiledQuery(
    lambda pk: Discount.objects.select_for_update().filter(pk=pk), pk=int
)


def discount_get_locked(discount_id: int) -> Discount:
    """The discount's row, locked until the caller's transaction ends. Raises
    `Discount.DoesNotExist` if it is gone."""
    found = _DISCOUNT_LOCKED.run(pk=discount_id)
    if not found:
        raise Discount.DoesNotExist(f"No discount {discount_id}.")
    return found[0]


def discount_find_code(
    *, code: str, at: datetime | None = None
) -> tuple[Discount, DiscountCode | None]:
    """The discount a code a customer typed names, and the generated single-use code it
    is (or None for the discount's own code). A discount that owns generated codes is
    used through them only: its own code names the campaign, it is not one of them.
    Raises `DiscountNotFoundError`, or `DiscountCodeUsedError` for a generated code a
    cart holds or used (re-checked under a lock when reserving).

    Two queries whatever the code (a discount's own, a generated one, none): the answer
    takes the same path for a code that exists and one that does not."""
    normalized = normalize_code(code)
    at = at or timezone.now()
    found = _BY_OWN_CODE.run(code=normalized, at=at)
    owners = _BY_GENERATED_CODE.run(code=normalized.upper(), at=at)
    if found:
        discount = found[0]
        if discount.owns_codes or discount.automatic:
            raise DiscountNotFoundError()
        return discount, None
    if not owners:
        raise DiscountNotFoundError()
    owner = owners[0]
    if owner.generated_held:
        raise DiscountCodeUsedError()
    generated = DiscountCode(pk=owner.generated_id, discount=owner, code=normalized.upper())
    return owner, generated
