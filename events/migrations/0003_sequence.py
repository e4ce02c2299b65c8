import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, OuterRef, Q, Subquery

from common.migration_operations import DropIndex


def number_the_events(apps, schema_editor):
    """Number the events recorded so far, per cart, in the order they were delivered in
    until now: their time, then their id."""
    Event = apps.get_model("events", "Event")
    up_to_this_one = (
        Event.objects.filter(cart_id=OuterRef("cart_id"))
        .filter(Q(created__lt=OuterRef("created")) | Q(created=OuterRef("created"), id__lte=OuterRef("id")))
        .order_by()
        .values("cart_id")
        .annotate(count=Count("*"))
        .values("count")
    )
    Event.objects.filter(sequence__isnull=True).update(sequence=Subquery(up_to_this_one))


class Migration(migrations.Migration):
    # DROP INDEX CONCURRENTLY (PostgreSQL) runs outside a transaction.
    atomic = False

    dependencies = [
        ("cart", "0007_generated_codes"),
        ("events", "0002_request_id"),
    ]

    # Rolling-safe: the column may be empty, so the release before this one goes on
    # recording events (unnumbered; the delivery places those by their time) while this
    # migration runs and until its pods are replaced.
    operations = [
        migrations.AddField(
            model_name="event",
            name="sequence",
            field=models.PositiveIntegerField(
                editable=False,
                help_text="The event's place among its cart's events: 1, 2, 3, in the order "
                "of the changes (empty only for an event the release before numbering "
                "recorded).",
                null=True,
            ),
        ),
        migrations.RunPython(number_the_events, migrations.RunPython.noop, atomic=True),
        migrations.AddConstraint(
            model_name="event",
            constraint=models.UniqueConstraint(
                fields=("cart", "sequence"), name="event_one_number_per_cart"
            ),
        ),
        # The foreign key's own index on cart_id: the unique (cart_id, sequence) index
        # begins with that column and serves the same lookups.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="cart",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="cart.cart",
                    ),
                ),
            ],
            database_operations=[
                DropIndex("events_event", "events_event_cart_id_3a7d8280", column="cart_id"),
            ],
        ),
    ]
