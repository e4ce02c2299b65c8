"""Writing discounts: creating, editing and deleting them, and the uses carts hold.

    discount = discount_create(code="DIS20", value=Decimal("5"), ended=tomorrow)
    discount = discount_update(discount=discount, data={"active": False})
    discount_delete(discount=discount)        # DiscountInUseError once a cart used it
    discount_reserve(discount=discount, cart=locked_cart, amount=off, at=now)  # at apply
    discount_generate_codes(discount=discount, count=1000, prefix="XMAS-")  # single-use
    discount_apply_best_automatic(cart=locked_cart)  # automatic promotions, the best wins
    discount_reevaluate(cart=locked_cart)       # its lines changed: keep, resize or release
    discount_hold_for_payment(cart=locked_cart)  # opening an attempt: False if it is lost
    discount_consume_reservation(cart=cart, charged=amount)  # recording the charge
    discount_release_expired_reservations()     # from cron: `release_discount_reservations`

Every write runs the rules of `Discount.clean()`, so the API, the admin and any other
door refuse the same things with the same messages (Django's ValidationError, which the
API answers as a 400 naming the field and the admin shows beside it).

A use of a limited code is *reserved* when a cart applies it and *consumed* when that
cart's payment succeeds. `usage_limit` bounds consumed uses plus live reservations: a
reservation stops counting `DISCOUNT_RESERVATION_TTL` after it was made (or last kept),
at once, before any sweep, unless its cart is being paid (then the payment decides). So
carts that are never paid cannot use a code up. A reservation is taken with the code's
row locked (SELECT … FOR UPDATE on PostgreSQL; on SQLite every write transaction is
IMMEDIATE, which serializes writers), so however many carts race, no more uses are held
than the limit allows; the database's constraint backs up the consumed count.

The sweep releases expired reservations and takes the discount off their carts (totals
restored), never while a cart is being paid or once it is paid; such a cart is then
charged its restored total, which it shows. Opening a payment attempt keeps the use in
the same transaction (`discount_hold_for_payment`): a cart whose reservation expired
keeps the discount if the code can be reserved again; otherwise the discount leaves the
cart and the payment is refused (409) before anything is charged. So what is charged is
always the total the cart shows, and a discounted charge always holds its use.

Anonymous callers in production are told one `discount_invalid` for every reason that
would say whether a code exists (`discount_refusal_reasons`; rule in `discount.errors`).
"""

import logging
import re
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from cart.models import PAID_STATUSES, Cart, PaymentStatus
from discount.errors import (
    DiscountCodeTakenError,
    DiscountCodeUsedError,
    DiscountCustomerLimitReachedError,
    DiscountCustomerRequiredError,
    DiscountError,
    DiscountFirstOrderOnlyError,
    DiscountNotBetterError,
    DiscountUsageLimitReachedError,
    public_discount_error,
)
from discount.models import (
    PREFIX_MAX_LENGTH,
    Discount,
    DiscountCode,
    DiscountKind,
    DiscountReservation,
    ReservationStatus,
    generate_code,
)
from discount.selectors import (
    discount_automatic_promotions,
    discount_code_held,
    discount_get_locked,
)

logger = logging.getLogger(__name__)

# Paying keeps a live reservation for at least this long, so it cannot expire (and be
# released) between the check before the charge and the attempt that freezes the cart.
RESERVATION_GRACE_AT_PAYMENT = timedelta(seconds=60)
MAX_GENERATED_CODES = 100_000
GENERATE_BATCH = 5_000
_PREFIX = re.compile(r"[A-Z0-9][A-Z0-9_-]*", re.ASCII)


def discount_create(
    *,
    code: str,
    value: Decimal,
    kind: str = DiscountKind.AMOUNT,
    currency: str = "",
    description: str = "",
    started: datetime | None = None,
    ended: datetime | None = None,
    active: bool = True,
    min_cart_total: Decimal | None = None,
    usage_limit: int | None = None,
    skus: list[str] | None = None,
    sku_prefixes: list[str] | None = None,
    limit_per_customer: int | None = None,
    first_order_only: bool = False,
    budget_amount: Decimal | None = None,
    automatic: bool = False,
) -> Discount:
    """Create a discount code. Raises `ValidationError` for a broken rule (`code_taken`
    when the code exists in any case, `already_expired`, …)."""
    discount = Discount(
        code=code,
        value=value,
        kind=kind,
        currency=currency,
        description=description,
        started=started,
        ended=ended,
        active=active,
        min_cart_total=min_cart_total,
        usage_limit=usage_limit,
        skus=skus or [],
        sku_prefixes=sku_prefixes or [],
        limit_per_customer=limit_per_customer,
        first_order_only=first_order_only,
        budget_amount=budget_amount,
        automatic=automatic,
    )
    discount.full_clean(validate_unique=False, validate_constraints=False)
    with _code_unique(code):
        discount.save()
    return discount


def discount_update(*, discount: Discount, data: dict[str, Any]) -> Discount:
    """Change some settings of a code; its use count is never written from here, and a
    code already used keeps its kind (`kind_in_use`).

    The row is locked and re-read, so a use counted meanwhile is neither lost nor able to
    slip past a lowered `usage_limit` (the model's rules run on the fresh row).
    """
    with transaction.atomic():
        locked = Discount.objects.select_for_update().get(pk=discount.pk)
        for name, value in data.items():
            setattr(locked, name, value)
        locked.full_clean(validate_unique=False, validate_constraints=False)
        with _code_unique(locked.code, exclude_pk=locked.pk):
            locked.save(update_fields=list(data))
    return locked


def discount_delete(*, discount: Discount) -> None:
    """Delete a code no cart has used (a typo, say). Raises `DiscountInUseError` otherwise:
    carts keep referring to the codes they used; switch such a code off instead."""
    with transaction.atomic():
        locked = Discount.objects.select_for_update().get(pk=discount.pk)
        locked.check_deletable()
        locked.delete()


@contextmanager
def _code_unique(code: str, exclude_pk: int | None = None):
    # The serializer already checked the code; this catches two requests racing for it.
    # Outside a transaction the save is one statement, which fails whole: no BEGIN and
    # COMMIT around it. Inside one, a savepoint keeps it usable for the lookup below.
    try:
        with (
            transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext()
        ):
            yield
    except IntegrityError:
        if Discount.objects.with_code(code).exclude(pk=exclude_pk).exists():
            raise DiscountCodeTakenError() from None
        raise


def _reservation_ttl() -> timedelta:
    return timedelta(seconds=settings.DISCOUNT_RESERVATION_TTL)


def _check_room(*, discount: Discount, at: datetime, exclude: int | None = None) -> Discount:
    """Lock the code's row and raise the `DiscountError` why it cannot take one more use
    at `at` (switched off, outside its window, or its limit held by other uses)."""
    locked = discount_get_locked(discount.pk)
    locked.check_usable(at=at)
    if locked.usage_limit is not None:
        others = locked.reservations.holding(at=at).exclude(pk=exclude).count()
        if locked.times_used + others >= locked.usage_limit:
            raise DiscountUsageLimitReachedError()
    return locked


def _check_campaign(
    locked: Discount, *, cart: Cart, amount: Decimal, at: datetime, exclude: int | None = None
) -> None:
    """With the code's row locked: raise the `DiscountError` why `cart` cannot take it
    for `amount` beside the other uses held at `at` (its customer's uses, first order,
    the budget). The lock serializes every cart reserving this code, so two carts of one
    customer, or two carts for the last of the budget, cannot both pass."""
    if locked.per_customer:
        customer = cart.customer_ref
        if not customer:
            raise DiscountCustomerRequiredError()
        if (
            locked.first_order_only
            and Cart.objects.filter(customer_ref=customer, payment_status__in=PAID_STATUSES)
            .exclude(pk=cart.pk)
            .exists()
        ):
            raise DiscountFirstOrderOnlyError()
        theirs = locked.reservations.filter(cart__customer_ref=customer)
        used = (
            theirs.filter(status=ReservationStatus.CONSUMED).count()
            + theirs.holding(at=at).exclude(pk=exclude).count()
        )
        if used >= locked.customer_limit():
            raise DiscountCustomerLimitReachedError()
    if locked.budget_amount is not None:
        reserved = (
            locked.reservations.holding(at=at)
            .exclude(pk=exclude)
            .aggregate(total=Sum("amount"))["total"]
        )
        locked.check_budget(amount=amount, held=locked.amount_consumed + (reserved or 0))


def discount_reserve(
    *,
    discount: Discount,
    cart: Cart,
    amount: Decimal,
    at: datetime,
    code: DiscountCode | None = None,
) -> DiscountReservation:
    """Reserve one use of the code for `cart` (whose row the caller has locked, inside
    its transaction), or raise the `DiscountError` why not. Re-checks, under the code's
    row lock, what may have changed since the request was validated, and the rules
    counted across carts (`usage_limit`, per customer, `budget_amount`). A generated
    `code` is single-use: the reservation names it, and one that a cart holds (until
    the sweep releases it) or used is `DiscountCodeUsedError`; a database constraint
    backs that up."""
    locked = _check_room(discount=discount, at=at)
    _check_campaign(locked, cart=cart, amount=amount, at=at)
    reservation = DiscountReservation(
        discount=locked,
        cart=cart,
        code=code,
        amount=amount,
        currency=cart.currency,
        expires=at + _reservation_ttl(),
    )
    if code is None:
        reservation.save()
        return reservation
    if discount_code_held(code.pk):
        raise DiscountCodeUsedError()
    try:
        with transaction.atomic():
            reservation.save()
    except IntegrityError:
        raise DiscountCodeUsedError() from None
    return reservation


def discount_apply_best_automatic(*, cart: Cart, at: datetime | None = None) -> Discount | None:
    """Give `cart` (its row locked by the caller, in its transaction) the automatic
    promotion that takes the most off it now, if it holds no typed code: its reservation
    taken as for a code (limits, per customer, budget), the next best tried when one
    cannot take the cart. A cart already holding the best keeps it (resized by
    `discount_reevaluate`); one holding a worse promotion swaps. Returns what it holds.
    """
    at = at or timezone.now()
    current = cart.discount
    if current is not None and not current.automatic:
        return current
    offers = []
    for candidate in discount_automatic_promotions():
        try:
            candidate.check_usable(at=at)
            offers.append((candidate.amount_off_cart(cart), candidate))
        except DiscountError:
            continue
    offers.sort(key=lambda offer: offer[0], reverse=True)  # stable: the oldest on a tie
    if current is not None:
        # The one it holds stays unless another takes off more: it is on offer no more
        # (switched off, ended) only for carts that do not hold it yet, as a code is.
        if not offers or offers[0][1].pk == current.pk:
            return current
        if offers[0][0] <= cart.amount_discounted:
            return current
        live = cart.discount_reservations.filter(
            discount_id=current.pk, status=ReservationStatus.RESERVED
        ).first()
        if live is not None:
            _release(live, cart)
        else:
            cart.remove_discount()
            cart.save_discount()
    for amount_off, candidate in offers:
        try:
            with transaction.atomic():
                discount_reserve(discount=candidate, cart=cart, amount=amount_off, at=at)
        except DiscountError:
            continue
        cart.set_discount(candidate, amount_off)
        cart.save_discount()
        return candidate
    return None


def discount_make_room_for_code(*, cart: Cart, amount_off: Decimal) -> None:
    """A customer typed a code on `cart` (locked) that holds an automatic promotion: the
    code replaces it when it takes off more, else `DiscountNotBetterError`."""
    if amount_off <= cart.amount_discounted:
        raise DiscountNotBetterError()
    live = cart.discount_reservations.filter(
        discount_id=cart.discount_id, status=ReservationStatus.RESERVED
    ).first()
    if live is not None:
        _release(live, cart)
    else:
        cart.remove_discount()
        cart.save_discount()


def discount_generate_codes(
    *, discount: Discount, count: int, prefix: str = ""
) -> list[DiscountCode]:
    """Make `count` (1 to 100,000) single-use codes for `discount`, all or none, each
    `prefix` (upper-cased) and 13 random symbols (`discount.models.generate_code`).
    Raises `ValidationError` for a count or prefix out of bounds."""
    prefix = prefix.strip().upper()
    if not 1 <= count <= MAX_GENERATED_CODES:
        raise ValidationError(
            {
                "count": ValidationError(
                    f"Generate 1 to {MAX_GENERATED_CODES} codes at a time.", code="out_of_range"
                )
            }
        )
    if prefix and (len(prefix) > PREFIX_MAX_LENGTH or not _PREFIX.fullmatch(prefix)):
        raise ValidationError(
            {
                "prefix": ValidationError(
                    f"At most {PREFIX_MAX_LENGTH} letters, digits, '-' and '_', "
                    "starting with a letter or digit.",
                    code="invalid_prefix",
                )
            }
        )
    made: list[DiscountCode] = []
    with transaction.atomic():
        while len(made) < count:
            wanted = {generate_code(prefix) for _ in range(count - len(made))}
            rows = [DiscountCode(discount=discount, code=code) for code in wanted]
            try:
                with transaction.atomic():
                    DiscountCode.objects.bulk_create(rows, batch_size=GENERATE_BATCH)
            except IntegrityError:
                # One of them exists already (a chance below 10**-7 even for 10**6
                # codes): draw the batch again.
                continue
            made.extend(rows)
    logger.info("Generated %s codes for discount %s", count, discount.pk)
    return made


def discount_reevaluate(*, cart: Cart) -> DiscountError | None:
    """The lines of `cart` changed (its row locked by the caller, in its transaction,
    `subtotal` already recounted): its discount takes off what it now gives, or, when
    the code no longer fits the cart, leaves it with its reservation released. Returns
    the `DiscountError` saying why it left, or None. Whether the code is still usable
    (switched off, expired) is not asked again: the cart holds its use already, as it
    would without the change.
    """
    discount = cart.discount
    if discount is None:
        cart.remove_discount()
        cart.save_discount()
        return None
    reservation = cart.discount_reservations.filter(
        discount_id=discount.pk, status=ReservationStatus.RESERVED
    ).first()
    try:
        amount_off = discount.amount_off_cart(cart)
        if discount.budget_amount is not None and (
            reservation is None or amount_off > reservation.amount
        ):
            # More than was reserved: the budget must still hold it (the code's row
            # locked, as when reserving).
            locked = Discount.objects.select_for_update().get(pk=discount.pk)
            _check_campaign(
                locked,
                cart=cart,
                amount=amount_off,
                at=timezone.now(),
                exclude=reservation.pk if reservation else None,
            )
    except DiscountError as reason:
        logger.info("Cart %s: discount %s left after a line change: %s", cart.pk, discount, reason)
        if reservation is not None:
            _release(reservation, cart)
        else:
            cart.remove_discount()
            cart.save_discount()
        return reason
    if reservation is not None and reservation.amount != amount_off:
        reservation.amount = amount_off
        reservation.save(update_fields=["amount", "updated"])
    cart.set_discount(discount, amount_off)
    cart.save_discount()
    return None


def discount_hold_for_payment(*, cart: Cart) -> bool:
    """Keep the use a cart's discount holds for the attempt about to charge its total.

    Call it inside the transaction that opens the attempt, with the cart's row locked:
    the cart then becomes `processing`, and its reservation counts whatever its expiry
    (`holding`), in that same commit, so no other cart can take the use between this
    check and the charge. The code's row is locked and the time read under that lock, so
    a use another cart reserved meanwhile is seen (and a reservation another apply saw
    expired is never brought back).

    True: the cart may be charged its total (no discount, or its use kept: a live
    reservation, or an expired one the code could take again). False: the use cannot be
    kept; the reservation is released and the discount taken off `cart` (saved, totals
    restored); the caller commits that and refuses the payment
    (`DiscountReservationExpiredError`), so nothing is charged for a total not shown.
    """
    if cart.discount_id is None:
        return True
    discount = Discount.objects.select_for_update().get(pk=cart.discount_id)
    now = timezone.now()  # after the lock: later than the time of any use counted before
    reservation = cart.discount_reservations.filter(
        discount_id=discount.pk, status=ReservationStatus.RESERVED
    ).first()
    try:
        if reservation is None or reservation.expires <= now:
            discount.check_usable(at=now)  # a live reservation keeps what it was given
            _check_campaign(
                discount,
                cart=cart,
                amount=cart.amount_discounted,
                at=now,
                exclude=reservation.pk if reservation else None,
            )
        elif discount.first_order_only:
            # Another cart of the customer may have been paid since this one applied it.
            _check_campaign(discount, cart=cart, amount=Decimal(0), at=now, exclude=reservation.pk)
        if discount.usage_limit is not None:
            others = discount.reservations.holding(at=now)
            if reservation is not None:
                others = others.exclude(pk=reservation.pk)
            if discount.times_used + others.count() >= discount.usage_limit:
                raise DiscountUsageLimitReachedError()
    except DiscountError as reason:
        logger.info("Cart %s: its discount's use cannot be kept: %s", cart.pk, reason)
        if reservation is not None:
            _release(reservation, cart)
        else:
            cart.remove_discount()
            cart.save_discount()
        return False
    if reservation is None:  # applied before uses were reserved: reserve it now
        DiscountReservation.objects.create(
            discount=discount,
            cart=cart,
            amount=cart.amount_discounted,
            currency=cart.currency,
            expires=now + RESERVATION_GRACE_AT_PAYMENT,
        )
    elif reservation.expires < now + RESERVATION_GRACE_AT_PAYMENT:
        # Kept a little past the attempt, should it end with nothing charged.
        reservation.expires = now + RESERVATION_GRACE_AT_PAYMENT
        reservation.save(update_fields=["expires", "updated"])
    return True


def discount_consume_reservation(*, cart: Cart, charged: Decimal | None = None) -> None:
    """The cart's payment of `charged` (default: its total) succeeded: the use of the
    code it was charged with is consumed.

    Call it inside the transaction that records the payment as successful, with the
    cart's row locked. It never fails for a charge that happened. A charge of another
    amount than the cart shows (a charge that landed after its attempt was closed as not
    charged, when the discount had been released, or another code applied, since) first
    makes the cart show what was charged, with the discount the charge had. A use that
    can no longer fit under the limit is recorded and logged rather than refused.
    """
    if charged is not None and charged != cart.total:
        _match_the_charge(cart, charged)
    if cart.discount_id is None:
        return
    reserved = cart.discount_reservations.filter(
        discount_id=cart.discount_id, status=ReservationStatus.RESERVED
    )
    given = reserved.aggregate(total=Sum("amount"))["total"] or cart.amount_discounted
    consumed = reserved.update(status=ReservationStatus.CONSUMED, updated=timezone.now())
    if not consumed:
        if cart.discount_reservations.filter(status=ReservationStatus.CONSUMED).exists():
            return  # already consumed (a late charge recorded twice)
        logger.error(
            "Cart %s paid with discount %s but held no reservation", cart.pk, cart.discount_id
        )
    code = Discount.objects.filter(pk=cart.discount_id)
    # One UPDATE counts the use and what it gave while the limit has room; past it, the
    # amount is still added (the charge happened) and the overflow logged.
    counted = code.filter(Q(usage_limit__isnull=True) | Q(times_used__lt=F("usage_limit"))).update(
        times_used=F("times_used") + 1, amount_consumed=F("amount_consumed") + given
    )
    if not counted:
        code.update(amount_consumed=F("amount_consumed") + given)
        logger.error(
            "Discount %s consumed past its usage limit by cart %s", cart.discount_id, cart.pk
        )


def discount_match_charge(*, cart: Cart, charged: Decimal) -> bool:
    """Whether `cart` (its row locked, in the caller's transaction) can show `charged` as
    its total, as the charge of an attempt closed before it landed had it: as it is,
    without its discount (the charge was made before the code was applied), or with the
    discount released since that took off the difference and still takes it off the
    cart's lines as they are (back to `reserved`, for `discount_consume_reservation`).
    The cart is changed so when it can. False when nothing it held explains the charge
    (its lines changed, say): the charge does not pay the cart as it stands."""
    if charged == cart.total:
        return True
    return _match_the_charge(cart, charged)


def _match_the_charge(cart: Cart, charged: Decimal) -> bool:
    """Make the cart show the `charged` total: without a discount, or with the released
    one that took off the difference (back to `reserved`, for the caller to consume)."""
    live = cart.discount_reservations.filter(status=ReservationStatus.RESERVED).first()
    if charged == cart.subtotal:
        logger.error("Cart %s charged %s without its discount: taken off", cart.pk, charged)
        if live is not None:
            _release(live, cart)
        return True
    earlier = (
        cart.discount_reservations.filter(
            status=ReservationStatus.RELEASED, amount=cart.subtotal - charged
        )
        .order_by("-created")
        .first()
    )
    if earlier is None:
        logger.error("Cart %s charged %s: no discount it held explains it", cart.pk, charged)
        return False
    if (
        earlier.code_id is not None
        and DiscountReservation.objects.filter(code_id=earlier.code_id)
        .exclude(status=ReservationStatus.RELEASED)
        .exclude(cart=cart)
        .exists()
    ):
        # A generated single-use code another cart holds (or used) since cannot come back
        # (`reservation_one_per_generated_code`).
        logger.error("Cart %s charged %s: its released code is another cart's", cart.pk, charged)
        return False
    if not _still_gives(earlier, cart):
        # Its lines changed since: the lines it took the amount off are gone or smaller
        # (a scoped code), so the cart cannot show the charge as its total.
        logger.error("Cart %s charged %s: its released code no longer fits it", cart.pk, charged)
        return False
    logger.error("Cart %s charged %s after its discount was released: back", cart.pk, charged)
    if live is not None:
        _release(live, cart)
    DiscountReservation.objects.filter(pk=earlier.pk).update(
        status=ReservationStatus.RESERVED, updated=timezone.now()
    )
    cart.discount_id = earlier.discount_id
    cart.discount_code_id = earlier.code_id
    cart.amount_discounted = earlier.amount
    cart.total = charged
    cart.save_discount()
    return True


def _still_gives(reservation: DiscountReservation, cart: Cart) -> bool:
    """Whether the cart's lines, as they are now, can carry what the reservation took
    off: for a scoped code, the lines it applies to. Not the code's terms of today: staff
    may have edited them since; what it gave is what was charged."""
    discount = reservation.discount
    if not discount.scoped:
        return reservation.amount <= cart.subtotal
    if not cart.itemized:
        return False
    eligible = sum(
        (line.amount for line in cart.lines.all() if discount.applies_to(line.sku)), Decimal(0)
    )
    return reservation.amount <= eligible


def discount_release_expired_reservations(*, now: datetime | None = None, batch: int = 500) -> int:
    """Release reservations that expired on carts not being paid, and take the discount
    off those carts (totals restored). Returns how many were released. Safe to run from
    several processes at once; `release_discount_reservations` runs it from cron."""
    now = now or timezone.now()
    expired = list(
        DiscountReservation.objects.filter(
            status=ReservationStatus.RESERVED,
            expires__lte=now,
            cart__payment_status__in=(PaymentStatus.PENDING, PaymentStatus.FAILED),
        ).values_list("pk", "cart_id")[:batch]
    )
    released = 0
    for pk, cart_id in expired:
        with transaction.atomic():
            # The cart first, as every flow that changes a cart's discount locks it.
            cart = Cart.objects.select_for_update().filter(pk=cart_id).first()
            reservation = DiscountReservation.objects.select_for_update().filter(pk=pk).first()
            if cart is None or reservation is None:
                # Deleted since the batch was listed (`cart_delete` takes a cart's
                # reservations with it): nothing is left to release; on to the next.
                continue
            if (
                reservation.status != ReservationStatus.RESERVED
                or reservation.expires > now
                or cart.payment_status not in (PaymentStatus.PENDING, PaymentStatus.FAILED)
            ):
                continue  # kept, paid or being paid meanwhile
            _release(reservation, cart)
            released += 1
    return released


def _release(reservation: DiscountReservation, cart: Cart) -> None:
    reservation.status = ReservationStatus.RELEASED
    reservation.save(update_fields=["status", "updated"])
    if cart.discount_id == reservation.discount_id:
        cart.remove_discount()
        cart.save_discount()


def discount_reveals_reasons(*, user) -> bool:
    """Whether this caller hears why a code is unusable (staff always do)."""
    if not settings.DISCOUNT_HIDE_REFUSAL_REASONS:
        return True
    return bool(user and user.is_authenticated and user.is_staff)


@contextmanager
def discount_refusal_reasons(*, reveal: bool):
    """Turn a refusal that would say whether a code exists into `discount_invalid`,
    unless the caller may know (`discount_reveals_reasons`)."""
    try:
        yield
    except DiscountError as error:
        public = public_discount_error(error, reveal_reasons=reveal)
        if public is error:
            raise
        raise public from None
