"""Numbering the events already recorded (`events.0003_sequence`): per cart, in the order
they were delivered in before numbering (their time, then their id)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.django_db(transaction=True)]

BEFORE_NUMBERING = [("events", "0002_request_id")]


def migrate(targets) -> None:
    MigrationExecutor(connection).migrate(targets)


def latest() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_events_recorded_before_numbering_are_numbered_per_cart_in_their_order():
    try:
        migrate(BEFORE_NUMBERING)
        old = MigrationExecutor(connection)._create_project_state(with_applied_migrations=True)
        OldCart = old.apps.get_model("cart", "Cart")
        OldEvent = old.apps.get_model("events", "Event")
        cart, other = (
            OldCart.objects.create(
                subtotal=Decimal("20.00"), total=Decimal("20.00"), currency="USD", items_number=1
            )
            for _ in range(2)
        )
        at = timezone.now()

        def recorded(cart, type, moment):
            return OldEvent.objects.create(type=type, cart=cart, body="{}", created=moment).pk

        # Written out of their order, and two at the same instant (placed by their id).
        refunded = recorded(cart, "cart.refunded", at + timedelta(seconds=5))
        paid = recorded(cart, "cart.paid", at)
        failed = recorded(cart, "cart.payment_failed", at - timedelta(seconds=5))
        same_instant = sorted([recorded(other, "cart.payment_failed", at) for _ in range(2)])
        paid_other = recorded(other, "cart.paid", at + timedelta(seconds=1))

        migrate(latest())

        from events.models import Event

        numbers = dict(Event.objects.values_list("pk", "sequence"))
        assert [numbers[failed], numbers[paid], numbers[refunded]] == [1, 2, 3]
        assert [numbers[pk] for pk in [*same_instant, paid_other]] == [1, 2, 3]
    finally:
        migrate(latest())
