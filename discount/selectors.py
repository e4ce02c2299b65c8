"""Reading discounts.

discount = discount_get_by_code(code="dis20")   # DiscountNotFoundError if none
discount.check_usable(at=now, reserved=discount.reserved_uses_now)
discount, generated = discount_find_code(code="XMAS-7KQ4M-XW2P9-HD3")  # a generated one too
discount_code_held(generated.pk)               # a cart holds it or used it
promotions = discount_automatic_promotions()   # active automatic ones, oldest first
"""

from datetime import datetime

from django.db.models import Exists, F, IntegerField, OuterRef, Value
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
        .annotate(
            owns_codes=owns_codes,
            generated_id=Value(None, output_field=IntegerField()),
            generated_held=Value(False),
        )
    )


def _by_generated_code(code: str, at: datetime):
    held = DiscountReservation.objects.filter(code=OuterRef("codes__id")).exclude(
        status=ReservationStatus.RELEASED
    )
    return (
        Discount.objects.filter(codes__code=code)
        .with_reserved_uses_against_limit(at=at)
        .annotate(
            owns_codes=Value(False),
            generated_id=F("codes__id"),
            generated_held=Exists(held),
        )
    )


def _by_code(code: str, upper_code: str, at: datetime):
    """The discount whose own code is `code` and the one owning the generated code
    `upper_code`, in one statement: at most one row each (both codes are unique, and a
    code is never both), told apart by `generated_id`."""
    own, generated = _by_own_code(code, at), _by_generated_code(upper_code, at)
    return own.order_by().union(generated.order_by(), all=True)


# Run on every apply: compiled once (`common.compiled`), as building and compiling its
# subqueries cost more CPU than the rest of an apply's statements together.
_BY_CODE = CompiledQuery(_by_code, code=str, upper_code=str, at=datetime)


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


# Asked under the code's lock on every apply of a generated code (compiled: SQLite
# prepares the ORM's statement again on every run, see `common.compiled`).
_CODE_HELD = CompiledQuery(
    lambda code_id: (
        DiscountReservation.objects.filter(code_id=code_id)
        .exclude(status=ReservationStatus.RELEASED)
        .only("pk")[:1]
    ),
    code_id=int,
)


def discount_code_held(code_id: int) -> bool:
    """Whether a cart holds the generated code or used it: a reservation of it that was
    not released."""
    return bool(_CODE_HELD.run(code_id=code_id))


def discount_find_code(
    *, code: str, at: datetime | None = None
) -> tuple[Discount, DiscountCode | None]:
    """The discount a code a customer typed names, and the generated single-use code it
    is (or None for the discount's own code). A discount that owns generated codes is
    used through them only: its own code names the campaign, it is not one of them.
    Raises `DiscountNotFoundError`, or `DiscountCodeUsedError` for a generated code a
    cart holds or used (re-checked under a lock when reserving).

    One statement whatever the code (a discount's own, a generated one, none): the
    answer takes the same path for a code that exists and one that does not."""
    normalized = normalize_code(code)
    at = at or timezone.now()
    rows = _BY_CODE.run(code=normalized, upper_code=normalized.upper(), at=at)
    own = next((row for row in rows if row.generated_id is None), None)
    if own is not None:
        if own.owns_codes or own.automatic:
            raise DiscountNotFoundError()
        return own, None
    owner = next((row for row in rows if row.generated_id is not None), None)
    if owner is None:
        raise DiscountNotFoundError()
    if owner.generated_held:
        raise DiscountCodeUsedError()
    generated = DiscountCode(pk=owner.generated_id, discount=owner, code=normalized.upper())
    return owner, generated
