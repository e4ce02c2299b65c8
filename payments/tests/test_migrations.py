"""Migrating a database that already holds payments: the move of the payment models to
their own app (`payments.0001`, `cart.0003`) and everything after it (refunds, error codes)
keep every row."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = [pytest.mark.django_db(transaction=True)]

BEFORE_THE_MOVE = [("cart", "0002_payment_requests"), ("payments", None)]


def migrate(targets) -> None:
    MigrationExecutor(connection).migrate(targets)


def applied_state():
    """The models as the migrations applied to the database define them."""
    return MigrationExecutor(connection)._create_project_state(with_applied_migrations=True)


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_payments_written_before_the_move_are_still_there_after_it():
    try:
        migrate(BEFORE_THE_MOVE)
        old = applied_state().apps
        OldCart = old.get_model("cart", "Cart")
        OldPayment = old.get_model("cart", "Payment")
        OldRequest = old.get_model("cart", "PaymentRequest")
        ContentType = old.get_model("contenttypes", "ContentType")
        cart = OldCart.objects.create(
            subtotal=Decimal("20.00"),
            total=Decimal("20.00"),
            currency="USD",
            items_number=2,
            payment_status="success",
        )
        unreachable = OldPayment.objects.create(
            cart=cart,
            amount=Decimal("20.00"),
            currency="USD",
            status="error",
            error="payment provider unavailable after 3 attempts: HTTPConnectionPool("
            "host='10.0.0.7', port=5005): Max retries exceeded",
            idempotency_key=f"cart-{cart.pk}-0",
        )
        declined = OldPayment.objects.create(
            cart=cart,
            amount=Decimal("20.00"),
            currency="USD",
            status="failed",
            decline_code="insufficient_funds",
            idempotency_key=f"cart-{cart.pk}-a",
        )
        charged = OldPayment.objects.create(
            cart=cart,
            amount=Decimal("20.00"),
            currency="USD",
            status="success",
            provider_payment_id="pay_1",
            idempotency_key=f"cart-{cart.pk}-b",
        )
        request = OldRequest.objects.create(
            cart=cart, key="order-1", amount=Decimal("20.00"), payment=charged
        )
        ContentType.objects.filter(app_label="payments").delete()
        content_type = ContentType.objects.get_or_create(app_label="cart", model="payment")[0]

        migrate(latest())
    finally:
        migrate(latest())

    from django.contrib.contenttypes.models import ContentType as CurrentContentType

    from cart.models import Cart
    from payments.models import Payment, PaymentRequest

    assert list(Payment.objects.order_by("created").values_list("pk", "status")) == [
        (unreachable.pk, "error"),
        (declined.pk, "failed"),
        (charged.pk, "success"),
    ]
    # Provider internals written before error codes existed are replaced by the code and
    # its plain message.
    was_unreachable = Payment.objects.get(pk=unreachable.pk)
    assert (was_unreachable.error_code, was_unreachable.error) == (
        "provider_unavailable",
        "The payment provider could not be used. Nothing was charged.",
    )

    kept = Payment.objects.get(pk=charged.pk)
    assert (kept.cart_id, kept.amount, kept.provider_payment_id) == (
        cart.pk,
        Decimal("20.00"),
        "pay_1",
    )
    assert (kept.amount_refunded, kept.error_code) == (Decimal("0"), "")
    assert Payment.objects.get(pk=declined.pk).decline_code == "insufficient_funds"
    assert Cart.objects.get(pk=cart.pk).amount_refunded == Decimal("0")
    assert PaymentRequest.objects.get(pk=request.pk).payment_id == charged.pk
    assert Payment._meta.db_table == "cart_payment"
    moved = CurrentContentType.objects.get(pk=content_type.pk)
    assert (moved.app_label, moved.model) == ("payments", "payment")
