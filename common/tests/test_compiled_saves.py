"""`CompiledSaves`: `save()` sends the statement Django built for the same save before,
and the rows are the ones Django's own statement would write."""

from decimal import Decimal

import pytest
from django.db import DatabaseError
from django.db.models import F
from django.db.models.signals import post_save
from django.db.models.sql.compiler import SQLInsertCompiler, SQLUpdateCompiler

from cart.models import Cart
from cart.tests.factories import CartFactory
from discount.models import Discount
from discount.tests.factories import DiscountFactory
from payments.models import Payment, PaymentAttemptStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(monkeypatch):
    """How many INSERT and UPDATE statements Django's compilers assembled."""
    counts = {"insert": 0, "update": 0}
    for kind, compiler in (("insert", SQLInsertCompiler), ("update", SQLUpdateCompiler)):
        original = compiler.as_sql

        def counting(self, *args, _original=original, _kind=kind, **kwargs):
            counts[_kind] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(compiler, "as_sql", counting)
    return counts


def _row(instance) -> dict:
    """The row as the database holds it (to compare with the instance's `_values`)."""
    return _values(type(instance).objects.get(pk=instance.pk))


def _values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_an_update_of_the_same_fields_is_assembled_once(built):
    cart = CartFactory()
    discount = DiscountFactory()
    cart.set_discount(discount, Decimal("5.00"))
    cart.save_discount()
    built["update"] = 0

    other = CartFactory(total=Decimal("40.00"))
    other.set_discount(discount, Decimal("7.50"))
    other.save_discount()

    assert built["update"] == 0
    assert _row(other) == _values(other)
    assert other.total == Decimal("32.50")
    # The first cart's row is untouched by the second's statement.
    assert Cart.objects.get(pk=cart.pk).total == Decimal("15.00")


def test_an_insert_is_assembled_once_and_writes_every_value(built):
    CartFactory(customer_ref="first")
    built["insert"] = 0

    cart = Cart.objects.create(
        total=Decimal("12.34"), currency=" eur ", items_number=2, customer_ref="c-2"
    )

    assert built["insert"] == 0
    assert _row(cart) == _values(cart)
    assert cart.currency == "EUR"
    assert cart.subtotal == Decimal("12.34")
    assert cart.created is not None
    assert cart.updated is not None


def test_a_primary_key_the_database_gives_comes_back_from_the_compiled_insert(built):
    first = DiscountFactory(skus=["TEA-1"], sku_prefixes=["MUG-"])
    built["insert"] = 0

    second = DiscountFactory(skus=["TEA-2", "TEA-3"], sku_prefixes=[])

    assert built["insert"] == 0  # JSON values too, on either database
    assert second.pk != first.pk
    assert isinstance(second.pk, int)
    assert _row(second) == _values(second)
    assert Discount.objects.get(pk=second.pk).skus == ["TEA-2", "TEA-3"]


def test_null_and_set_values_are_each_written(built):
    discount = DiscountFactory()
    cart = CartFactory()
    for held in (discount, None, discount, None):
        if held is None:
            cart.remove_discount()
        else:
            cart.set_discount(held, Decimal("5.00"))
        cart.save_discount()
        assert _row(cart) == _values(cart)
        assert Cart.objects.get(pk=cart.pk).discount_id == (held.pk if held else None)


def test_an_expression_is_left_to_django_and_still_written():
    cart = CartFactory(items_number=5)
    cart.items_number = F("items_number") + 1
    cart.save(update_fields=["items_number"])

    assert Cart.objects.get(pk=cart.pk).items_number == 6


def test_update_fields_on_a_row_that_is_gone_raises_as_django_does():
    cart = CartFactory()
    cart.save(update_fields=["total"])  # compiled now
    Cart.objects.filter(pk=cart.pk).delete()

    with pytest.raises(DatabaseError, match="did not affect any rows"):
        cart.save(update_fields=["total"])


def test_a_full_save_of_a_row_that_is_gone_inserts_it_again_as_django_does():
    cart = CartFactory(total=Decimal("9.00"))
    cart.save()
    Cart.objects.filter(pk=cart.pk).delete()

    cart.save()

    assert Cart.objects.get(pk=cart.pk).total == Decimal("9.00")


def test_post_save_receivers_still_hear_every_save():
    heard = []

    def receiver(sender, instance, created, update_fields, **kwargs):
        heard.append((instance.pk, created, update_fields and sorted(update_fields)))

    post_save.connect(receiver, sender=Cart)
    try:
        cart = CartFactory()
        cart.save(update_fields=["total"])
        cart.save(update_fields=["total"])
    finally:
        post_save.disconnect(receiver, sender=Cart)

    assert heard == [
        (cart.pk, True, None),
        (cart.pk, False, ["total"]),
        (cart.pk, False, ["total"]),
    ]


def test_a_payment_inserted_and_updated_compiled_is_the_row_django_writes(built):
    for n in range(2):
        built.update(insert=0, update=0)
        payment = Payment.objects.create(
            cart=CartFactory(),
            amount=Decimal("20.00"),
            currency="USD",
            payment_method="pm_card_visa",
            status=PaymentAttemptStatus.PROCESSING,
            idempotency_key=f"key-{n}",
        )
        payment.status = PaymentAttemptStatus.SUCCESS
        payment.provider_payment_id = f"pay_{n}"
        payment.save()
        assert _row(payment) == _values(payment)
    assert built == {"insert": 0, "update": 0}  # the second time round


def test_text_the_saves_send_as_it_is_is_what_django_prepares_for_every_such_field():
    from django.apps import apps
    from django.db import connection

    from common.compiled import _STR_AS_IS

    texts = ["", "pm_card_visa", "é ü 日本", "  spaced  ", "x" * 300, "0", "None"]
    fields = [
        field
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if type(field) in _STR_AS_IS
    ]
    assert fields
    for field in fields:
        for text in texts:
            assert field.get_db_prep_save(text, connection) is text
