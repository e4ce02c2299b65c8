"""Reading carts and payments: carts as the API shows them, and the admin's dashboard.

    carts = with_related_in_one_statement(Cart.objects.filter(...))
    cart_related(carts[0]).payments   # no query: read by the cart's own statement
    cart = cart_as_shown(cart_id)     # the same for one cart, by a statement compiled once
    cart = cart_get(cart_id)          # the cart's row alone (None: no such cart)
    locked = cart_get_locked(cart.pk)  # its row locked, in the caller's transaction
    locked = cart_get_locked(cart.pk, with_has_payments=True)  # and whether it was tried
    cart_known_history(cart, payments=[])  # its answer shows no attempt, read from nowhere

    summary = payments_summary(since=start_of_today)
    summary.paid         # [PaidInCurrency("USD", carts=2, total=Decimal("35.00")), …]
    summary.declined, summary.not_charged, summary.processing, summary.unknown

Two aggregate queries, whatever the table size: settled attempts are found through the
(status, updated) index (an attempt completed since `since` was updated since then too).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from datetime import UTC, datetime
from decimal import Context, Decimal

from django.db import connections, models
from django.db.models import Count, Exists, OuterRef, Sum
from django.db.models.expressions import RawSQL
from django.utils.dateparse import parse_datetime

from cart.models import (
    OPEN_ATTEMPT_STATUSES,
    AppliedDiscount,
    Cart,
    CartLine,
    Payment,
    PaymentAttemptStatus,
)
from common import money
from common.compiled import CompiledQuery
from payments.models import Refund
from payments.serializers import PaymentSerializer, RefundSerializer

# What a cart's answer shows of each kind of history: the model, the fields read (the
# serializers' representations use no others) and their order (the model's ordering, then
# the key, so equal timestamps still come out in one order).
_HISTORY_KINDS = {
    "lines": (
        CartLine,
        ("id", "sku", "name", "quantity", "unit_price", "amount_discounted"),
        ("id",),
    ),
    # A payment shows its model fields by their own names: the serializer's list is it.
    "payments": (Payment, PaymentSerializer.Meta.fields, ("created", "id")),
    # A refund's serializer names its payment `payment`: the column read is `payment_id`.
    "refunds": (
        Refund,
        tuple("payment_id" if f == "payment" else f for f in RefundSerializer.Meta.fields),
        ("created", "id"),
    ),
}
# The annotations `with_related_in_one_statement` adds: a JSON array per kind, and the
# applied discount's [id, code, kind] (or NULL).
_COLUMN = "_shown_{}_json"
# Amounts are read as text, so no float ever holds one; SQLite keeps an amount as a
# REAL of 15 significant digits, which Django's own converter reads with this precision.
_AMOUNT_CONTEXT = Context(prec=money.AMOUNT_MAX_DIGITS)
_AMOUNT_STEP = Decimal(1).scaleb(-money.AMOUNT_DECIMAL_PLACES)


@dataclasses.dataclass(frozen=True)
class CartRelated:
    """What a cart's answer shows besides the cart row, ordered as the models order it."""

    discount: AppliedDiscount | None
    lines: list[CartLine]
    payments: list[Payment]
    refunds: list[Refund]


def _read_fields(kind: str) -> list[models.Field]:
    # In the model's order: `Model.from_db` takes the values of a partial row so.
    model, fields, _order = _HISTORY_KINDS[kind]
    return [field for field in model._meta.concrete_fields if field.attname in fields]


def _history_sql(kind: str, vendor: str) -> str:
    """A subquery giving one cart's rows of `kind` as a JSON array of arrays (`[]` when
    none), amounts as text."""
    model, _fields, order = _HISTORY_KINDS[kind]
    columns = []
    for field in _read_fields(kind):
        column = f'h."{field.column}"'
        if isinstance(field, models.DecimalField):
            column = f"CAST({column} AS TEXT)"
        columns.append(column)
    columns = ", ".join(columns)
    ordering = ", ".join(f'h."{model._meta.get_field(name).column}"' for name in order)
    source = f'"{model._meta.db_table}" h WHERE h."cart_id" = "cart_cart"."id"'
    if vendor == "postgresql":
        return (
            f"SELECT COALESCE(json_agg(json_build_array({columns}) ORDER BY {ordering}), "
            f"'[]')::text FROM {source}"
        )
    # SQLite (3.40) has no ORDER BY inside an aggregate: the rows are ordered by a
    # subquery, which SQLite keeps as it is under an aggregate. json() keeps each row an
    # array rather than a string (a JSON value's type does not survive a subquery).
    return (
        f"SELECT json_group_array(json(row)) FROM (SELECT json_array({columns}) AS row "
        f"FROM {source} ORDER BY {ordering})"
    )


def _discount_sql(vendor: str) -> str:
    """The applied discount as `[id, code, kind]`, NULL without one: the code is the
    generated one the discount was applied with, else the discount's own."""
    array = "json_build_array" if vendor == "postgresql" else "json_array"
    cast = "::text" if vendor == "postgresql" else ""
    return (
        f'SELECT {array}(d."id", COALESCE(g."code", d."code"), d."kind"){cast} '
        'FROM "discount_discount" d LEFT JOIN "discount_discountcode" g '
        'ON g."id" = "cart_cart"."discount_code_id" WHERE d."id" = "cart_cart"."discount_id"'
    )


@functools.cache
def _related_sql(vendor: str) -> dict[str, str]:
    sql = {kind: _history_sql(kind, vendor) for kind in _HISTORY_KINDS}
    sql["discount"] = _discount_sql(vendor)
    return {_COLUMN.format(kind): f"({text})" for kind, text in sql.items()}


def with_related_in_one_statement(queryset: models.QuerySet) -> models.QuerySet:
    """`queryset` of carts whose statement also reads each cart's discount, lines,
    payments and refunds (as JSON beside the row): one statement per cart or page. A
    statement sees one moment of the database on its own, so no transaction is needed
    around it. `cart_related(cart)` then reads them without a query.
    `test_one_statement_reads_what_the_orm_reads` holds it to the ORM's reading."""
    sql = _related_sql(connections[queryset.db].vendor)
    return queryset.annotate(
        **{name: RawSQL(text, (), output_field=models.TextField()) for name, text in sql.items()}
    )


# The first page of GET /api/cart/ for each page size asked (at most 101 rows).
_NEWEST: dict[int, CompiledQuery] = {}


def carts_newest(limit: int) -> list[Cart]:
    """The `limit` newest carts, each with its related rows as
    `with_related_in_one_statement` reads them, by a statement compiled once per limit."""
    query = _NEWEST.get(limit)
    if query is None:
        query = _NEWEST[limit] = CompiledQuery(
            lambda: with_related_in_one_statement(Cart.objects.order_by("-created"))[:limit]
        )
    return query.run()


# One cart as `with_related_in_one_statement` reads it, compiled once: compiling it
# through the ORM on every request was most of a get cart's CPU.
_AS_SHOWN = CompiledQuery(
    lambda pk: with_related_in_one_statement(Cart.objects.filter(pk=pk)), pk=uuid.UUID
)


def cart_as_shown(cart_id: str) -> Cart | None:
    """One cart as `with_related_in_one_statement` reads it (one statement, its related
    rows beside it), by a statement compiled once. None when no cart has that id (or it
    is no UUID)."""
    try:
        key = uuid.UUID(str(cart_id))
    except ValueError:
        return None
    found = _AS_SHOWN.run(pk=key)
    return found[0] if found else None


def _converter(field: models.Field):
    if field.is_relation:
        field = field.target_field
    if isinstance(field, models.DecimalField):
        return lambda text: _AMOUNT_CONTEXT.create_decimal(text).quantize(_AMOUNT_STEP)
    if isinstance(field, models.UUIDField):
        return uuid.UUID
    if isinstance(field, models.DateTimeField):
        return _utc_datetime
    return None


def _utc_datetime(text: str) -> datetime:
    # PostgreSQL writes the offset (+00:00, the connection's time zone); SQLite stores
    # UTC without one.
    value = parse_datetime(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_READ = {
    kind: (
        [field.attname for field in _read_fields(kind)],
        [_converter(field) for field in _read_fields(kind)],
    )
    for kind in _HISTORY_KINDS
}


def _read_rows(kind: str, text: str, db: str) -> list:
    if text == "[]":  # most carts have no lines, attempts or refunds: nothing to parse
        return []
    model = _HISTORY_KINDS[kind][0]
    attnames, converters = _READ[kind]
    return [
        model.from_db(
            db,
            attnames,
            [
                value if convert is None or value is None else convert(value)
                for convert, value in zip(converters, row, strict=True)
            ],
        )
        for row in json.loads(text)
    ]


# The write paths read their cart by id, then locked, and answer with its payments: the
# same statements every time, compiled once per process (`common.compiled`) instead of
# on every request.
_CART = CompiledQuery(lambda pk: Cart.objects.filter(pk=pk), pk=uuid.UUID)
_CART_LOCKED = CompiledQuery(
    lambda pk: Cart.objects.select_for_update().filter(pk=pk), pk=uuid.UUID
)
_CART_LOCKED_HAS_PAYMENTS = CompiledQuery(
    lambda pk: (
        Cart.objects.select_for_update()
        .filter(pk=pk)
        .annotate(has_payments=Exists(Payment.objects.filter(cart_id=OuterRef("pk"))))
    ),
    pk=uuid.UUID,
)
# In the order of the one statement's JSON (created, then id for a tie).
_PAYMENTS = CompiledQuery(
    lambda cart_id: Payment.objects.filter(cart_id=cart_id).order_by("created", "id"),
    cart_id=uuid.UUID,
)


def cart_get(cart_id) -> Cart | None:
    """The cart's row alone (its discount is read if asked for), or None when no cart
    has that id (or it is no UUID)."""
    try:
        key = uuid.UUID(str(cart_id))
    except ValueError:
        return None
    found = _CART.run(pk=key)
    return found[0] if found else None


def cart_get_locked(cart_id: uuid.UUID, *, with_has_payments: bool = False) -> Cart:
    """The cart's row, locked until the caller's transaction ends (SELECT … FOR UPDATE;
    SQLite's write transactions hold the database's write lock already). Raises
    `Cart.DoesNotExist` if it is gone.

    `with_has_payments`: the cart also says, in the same statement, whether it has any
    payment attempt (`has_payments`), so a path that answers with the cart and adds none
    can skip reading them (`cart_known_history(cart, payments=[])`). Only for a cart the
    caller then finds changeable (`check_can_change`): on PostgreSQL a lock that had to
    wait re-reads the cart's row but not the EXISTS, which keeps the statement's first
    snapshot, and a transaction adding an attempt leaves its cart processing, so a
    changeable cart had no attempt added while its lock was awaited."""
    query = _CART_LOCKED_HAS_PAYMENTS if with_has_payments else _CART_LOCKED
    found = query.run(pk=cart_id)
    if not found:
        raise Cart.DoesNotExist(f"No cart {cart_id}.")
    cart = found[0]
    if with_has_payments:
        cart.has_payments = bool(cart.has_payments)  # SQLite answers 0 or 1
    return cart


def cart_known_history(cart: Cart, **rows: list) -> Cart:
    """Leave on `cart` related rows already known (`payments=[…]`, `refunds=[…]`), the way
    `prefetch_related` leaves them: `cart.payments.all()` and `cart_related(cart)` then
    send no query (nor compile one)."""
    cache = {}
    for name, known in rows.items():
        queryset = getattr(cart, name).all()
        queryset._result_cache, queryset._prefetch_done = list(known), True
        cache[name] = queryset
    cart._prefetched_objects_cache = cache
    return cart


def _payments_of(cart: Cart) -> list[Payment]:
    cached = getattr(cart, "_prefetched_objects_cache", {}).get("payments")
    if cached is not None:
        return list(cached)
    return _PAYMENTS.run(cart_id=cart.pk)


def cart_related(cart: Cart) -> CartRelated:
    """The discount, lines, payments and refunds a cart's answer shows: from the cart's
    own statement when it was read by `with_related_in_one_statement`, otherwise through
    the ORM (only an itemized cart has lines and only a paid one refunds: the others
    skip those queries)."""
    discount = getattr(cart, _COLUMN.format("discount"), cart)
    if discount is cart:  # not read in one statement
        return CartRelated(
            discount=cart.applied_discount,
            lines=list(cart.lines.all()) if cart.itemized else [],
            payments=_payments_of(cart),
            refunds=list(cart.refunds.all()) if cart.is_paid else [],
        )
    db = cart._state.db
    return CartRelated(
        discount=discount and AppliedDiscount(*json.loads(discount)),
        **{
            kind: _read_rows(kind, getattr(cart, _COLUMN.format(kind)), db)
            for kind in _HISTORY_KINDS
        },
    )


@dataclasses.dataclass(frozen=True)
class PaidInCurrency:
    currency: str
    carts: int
    total: Decimal


@dataclasses.dataclass(frozen=True)
class PaymentsSummary:
    since: datetime
    paid: list[PaidInCurrency]  # one per currency, by currency code
    declined: int  # attempts the provider declined since `since`
    not_charged: int  # attempts closed as "provider could not be used" since `since`
    processing: int  # being sent now (any age)
    unknown: int  # sent, outcome not known yet (any age): reconcile settles them


def payments_summary(*, since: datetime) -> PaymentsSummary:
    """How payments went since `since`, and the attempts still open now."""
    settled = (
        Payment.objects.filter(
            status__in=(
                PaymentAttemptStatus.SUCCESS,
                PaymentAttemptStatus.FAILED,
                PaymentAttemptStatus.ERROR,
            ),
            updated__gte=since,
            completed__gte=since,
        )
        .values("status", "currency")
        .annotate(count=Count("id"), total=Sum("amount"))
        .order_by("currency")
    )
    paid, by_status = [], {}
    for row in settled:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        if row["status"] == PaymentAttemptStatus.SUCCESS:
            total = money.quantize(row["total"], row["currency"])
            paid.append(PaidInCurrency(row["currency"], row["count"], total))
    still_open = dict(
        Payment.objects.filter(status__in=OPEN_ATTEMPT_STATUSES)
        .values_list("status")
        .annotate(count=Count("id"))
        .order_by()
    )
    return PaymentsSummary(
        since=since,
        paid=paid,
        declined=by_status.get(PaymentAttemptStatus.FAILED, 0),
        not_charged=by_status.get(PaymentAttemptStatus.ERROR, 0),
        processing=still_open.get(PaymentAttemptStatus.PROCESSING, 0),
        unknown=still_open.get(PaymentAttemptStatus.UNKNOWN, 0),
    )
