"""`CompiledQuery`: an ORM query compiled once, run with new values."""

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.transaction import TransactionManagementError
from django.test.utils import isolate_apps
from django.utils import timezone

from cart.models import Cart
from cart.tests.factories import CartFactory
from common.compiled import CompiledQuery
from common.testing import sqlite_reprepared, statements_sent
from discount.models import Discount, DiscountReservation, ReservationStatus
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def test_a_query_runs_with_each_calls_values_as_the_orm_would():
    first, second = DiscountFactory(code="FIRST"), DiscountFactory(code="SECOND")
    by_code = CompiledQuery(lambda code: Discount.objects.filter(code=code), code=str)

    assert [d.pk for d in by_code.run(code="FIRST")] == [first.pk]
    assert [d.pk for d in by_code.run(code="SECOND")] == [second.pk]
    assert by_code.run(code="THIRD") == []


def test_a_builder_that_changes_its_argument_is_refused_rather_than_run_wrong():
    upper = CompiledQuery(lambda code: Discount.objects.filter(code=code.upper()), code=str)

    with pytest.raises(ImproperlyConfigured, match="code"):
        upper.run(code="first")


def test_a_builder_that_derives_a_value_from_its_argument_is_refused():
    # The derived moment would be compiled in as a constant (the first marker's hour
    # before), and every run would compare with that instead of its own.
    last_hour = CompiledQuery(
        lambda at: Discount.objects.filter(created__lt=at, created__gte=at - timedelta(hours=1)),
        at=datetime,
    )

    with pytest.raises(ImproperlyConfigured, match="depend"):
        last_hour.run(at=timezone.now())


@pytest.mark.parametrize("typed", ["dis_0", "d%", "DIS\\20"])
def test_a_lookup_that_escapes_its_value_is_refused_or_answers_as_the_orm(typed):
    # SQLite's iexact is a LIKE: the ORM escapes _ and %; a value sent as the marker was
    # would be a pattern.
    DiscountFactory(code="DIS20")
    named = CompiledQuery(lambda code: Discount.objects.filter(code__iexact=code), code=str)

    try:
        found = named.run(code=typed)
    except ImproperlyConfigured:
        return
    assert [d.pk for d in found] == [d.pk for d in named.queryset(code=typed)]


def test_none_is_refused_where_the_orm_would_write_is_null():
    DiscountFactory(usage_limit=None)
    by_limit = CompiledQuery(lambda n: Discount.objects.filter(usage_limit=n), n=int)

    with pytest.raises(TypeError, match="n"):
        by_limit.run(n=None)


def test_only_text_moments_numbers_and_uuids_are_parameters():
    with pytest.raises(ImproperlyConfigured, match="value"):
        CompiledQuery(lambda value: Discount.objects.filter(value=value), value=Decimal)
    assert CompiledQuery(lambda at: Discount.objects.filter(created__lt=at), at=datetime)


def test_numbers_and_uuids_are_sent_as_the_orm_sends_them():
    first, second = DiscountFactory(code="FIRST"), DiscountFactory(code="SECOND")
    by_pk = CompiledQuery(lambda pk: Discount.objects.filter(pk=pk), pk=int)
    assert [d.code for d in by_pk.run(pk=second.pk)] == ["SECOND"]
    assert [d.code for d in by_pk.run(pk=first.pk)] == ["FIRST"]
    assert by_pk.run(pk=0) == []

    carts = [CartFactory(), CartFactory()]
    cart_by_pk = CompiledQuery(lambda pk: Cart.objects.filter(pk=pk), pk=UUID)
    for cart in carts:
        assert [c.pk for c in cart_by_pk.run(pk=cart.pk)] == [cart.pk]
    assert cart_by_pk.run(pk=uuid4()) == []


def test_rows_become_instances_as_the_orm_makes_them():
    from django.db.models import Value

    cart = CartFactory()
    query = CompiledQuery(lambda pk: Cart.objects.filter(pk=pk).annotate(note=Value("x")), pk=UUID)
    (read,) = query.run(pk=cart.pk)
    (orm,) = query.queryset(pk=cart.pk)
    for field in Cart._meta.concrete_fields:
        mine, theirs = getattr(read, field.attname), getattr(orm, field.attname)
        assert (mine, type(mine)) == (theirs, type(theirs)), field.attname
    assert read.note == "x"
    assert not read._state.adding
    assert read._state.db == orm._state.db


def test_an_instance_read_is_the_orms_to_every_use_of_it():
    # Made without Model.__init__: the same __dict__, state, deferred fields and related
    # object, and it saves as the ORM's does.
    campaign = DiscountFactory(code="WINTER")
    cart = CartFactory(discount=campaign)
    query = CompiledQuery(lambda pk: Cart.objects.filter(pk=pk).only("id", "total"), pk=UUID)
    (read,) = query.run(pk=cart.pk)
    (orm,) = query.queryset(pk=cart.pk)
    assert read.__dict__.keys() == orm.__dict__.keys()
    assert read.get_deferred_fields() == orm.get_deferred_fields() != set()
    assert read.discount == orm.discount == campaign  # a deferred key, then its object
    read.total = Decimal("12.50")
    read.save(update_fields=["total"])
    cart.refresh_from_db()
    assert cart.total == Decimal("12.50")


def test_a_model_whose_instances_are_watched_gets_its_signals(monkeypatch):
    from django.db.models.signals import post_init, pre_init

    cart = CartFactory()
    query = CompiledQuery(lambda pk: Cart.objects.filter(pk=pk), pk=UUID)
    query.run(pk=cart.pk)  # the reader is made before anyone listens
    seen = []

    def watch(sender, **kwargs):
        seen.append((sender, "instance" in kwargs))

    pre_init.connect(watch, sender=Cart)
    post_init.connect(watch, sender=Cart)
    try:
        (read,) = query.run(pk=cart.pk)
    finally:
        pre_init.disconnect(watch, sender=Cart)
        post_init.disconnect(watch, sender=Cart)
    assert seen == [(Cart, False), (Cart, True)]
    assert read.pk == cart.pk


@isolate_apps("cart")
def test_a_model_with_an_init_of_its_own_anywhere_is_made_by_django():
    from django.db import models

    from common.compiled import _Reader

    class Noted:
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.noted = True

    class NotedCart(models.Model, Noted):  # Model.__init__ calls Noted's
        def __str__(self) -> str:
            return "noted"

    assert _Reader(Cart, ["id"], connection).plain
    assert not _Reader(NotedCart, ["id"], connection).plain


def test_a_query_without_the_primary_key_is_refused():
    CartFactory()
    totals = CompiledQuery(lambda: Cart.objects.values("total"))
    with pytest.raises(ImproperlyConfigured, match="primary key"):
        totals.run()


def test_a_joined_table_never_lends_its_columns_to_the_model():
    # select_related reads the discount's columns beside the code's: "id" and "code" of
    # the code are the code's own, and the discount's are not set as attributes.
    from discount.models import DiscountCode
    from discount.services import discount_generate_codes

    campaign = DiscountFactory(code="XMAS")
    (generated,) = discount_generate_codes(discount=campaign, count=1, prefix="XM")
    query = CompiledQuery(
        lambda code: DiscountCode.objects.select_related("discount").filter(code=code),
        code=str,
    )
    (read,) = query.run(code=generated.code)
    assert (read.pk, read.code, read.discount_id) == (
        generated.pk,
        generated.code,
        campaign.pk,
    )
    assert read.kind == campaign.kind  # another column: an attribute, as with raw()


@pytest.mark.django_db(transaction=True)
def test_a_lock_is_refused_outside_a_transaction_as_the_orm_refuses_it():
    from django.db import connection, transaction

    cart = CartFactory()
    locked = CompiledQuery(lambda pk: Cart.objects.select_for_update().filter(pk=pk), pk=UUID)
    with transaction.atomic():
        assert [c.pk for c in locked.run(pk=cart.pk)] == [cart.pk]
    if connection.features.has_select_for_update:
        with pytest.raises(TransactionManagementError):
            locked.run(pk=cart.pk)
        with pytest.raises(TransactionManagementError):
            list(locked.queryset(pk=cart.pk))
    else:  # SQLite: no row locks; its write transactions hold the database's lock
        assert [c.pk for c in locked.run(pk=cart.pk)] == [cart.pk]


def test_numbers_fit_any_integer_column_and_any_lookup():
    DiscountFactory(code="USED", times_used=3)
    used = CompiledQuery(lambda n: Discount.objects.filter(times_used=n), n=int)
    at_least = CompiledQuery(lambda n: Discount.objects.filter(times_used__gte=n), n=int)
    assert [d.code for d in used.run(n=3)] == ["USED"]
    assert used.run(n=4) == []
    assert [d.code for d in at_least.run(n=2)] == ["USED"]


def test_a_uuid_given_as_text_finds_the_row_on_every_database():
    cart = CartFactory()
    by_pk = CompiledQuery(lambda pk: Cart.objects.filter(pk=pk), pk=UUID)
    assert [c.pk for c in by_pk.run(pk=str(cart.pk))] == [cart.pk]
    assert [c.pk for c in by_pk.run(pk=cart.pk.hex)] == [cart.pk]


def test_a_union_reads_each_column_by_its_name_as_the_orm_does():
    from django.db.models import Value

    spring, summer = DiscountFactory(code="SPRING"), DiscountFactory(code="SUMMER")
    both = CompiledQuery(
        lambda first, second: (
            Discount.objects.filter(code=first)
            .annotate(branch=Value("first"))
            .order_by()
            .union(
                Discount.objects.filter(code=second).annotate(branch=Value("second")).order_by(),
                all=True,
            )
        ),
        first=str,
        second=str,
    )

    found = both.run(first="SPRING", second="SUMMER")
    orm = list(both.queryset(first="SPRING", second="SUMMER"))

    def shown(rows):
        return sorted((d.pk, d.code, d.value, d.ended, d.branch) for d in rows)

    assert shown(found) == shown(orm)
    assert shown(found) == [
        (spring.pk, "SPRING", spring.value, spring.ended, "first"),
        (summer.pk, "SUMMER", summer.value, summer.ended, "second"),
    ]


@pytest.mark.parametrize("description", ["it's 50% off", "100%% sure", "%s", "a ' and a \\"])
def test_constants_are_matched_as_the_orm_matches_them(description):
    # On SQLite the constants are written into the SQL (quotes doubled, % kept from
    # the driver's placeholders); the rows found must be the ORM's.
    wanted = DiscountFactory(code="WANTED", description=description, active=False)
    DiscountFactory(code="OTHER", description="it's 50 off", active=False)
    DiscountFactory(code="ACTIVE", description=description, active=True)
    described = CompiledQuery(
        lambda code: Discount.objects.filter(description=description, active=False).exclude(
            code=code
        ),
        code=str,
    )

    found = described.run(code="NONE")

    assert [d.pk for d in found] == [wanted.pk]
    assert [d.pk for d in found] == [d.pk for d in described.queryset(code="NONE")]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's statement cache")
def test_on_sqlite_a_constant_that_decides_a_partial_index_does_not_cost_a_prepare_per_run():
    # `reservation_one_per_generated_code` holds rows WHERE NOT status = 'released': with
    # 'released' sent as a value SQLite compiles the statement again on every run.
    held = CompiledQuery(
        lambda code_id: DiscountReservation.objects.filter(code_id=code_id).exclude(
            status=ReservationStatus.RELEASED
        ),
        code_id=int,
    )

    with statements_sent(connection) as sent:
        held.run(code_id=1)

    assert len(sent) == 1
    assert ReservationStatus.RELEASED.value in sent[0][0]  # written into the SQL
    assert sqlite_reprepared(connection, sent) == []
