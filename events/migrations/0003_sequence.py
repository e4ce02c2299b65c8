import django.db.models.deletion
from django.db import migrations, models, transaction
from django.db.models import Count, OuterRef, Q, Subquery

from common.migration_operations import AddUniqueConstraint, DropIndex

CARTS_PER_BATCH = 500


def number_the_events(apps, schema_editor):
    """Number the events recorded so far, per cart, in the order they were delivered in
    until now (their time, then their id), a batch of carts per transaction (the rows
    of one batch locked, not the table). A cart's events are numbered all together,
    each by its place among them, so no two share a number; a cart given an event
    meanwhile (by the running release, unnumbered) is numbered again in a later batch."""
    Event = apps.get_model("events", "Event")
    place = (
        Event.objects.filter(cart_id=OuterRef("cart_id"))
        .filter(
            Q(created__lt=OuterRef("created")) | Q(created=OuterRef("created"), id__lte=OuterRef("id"))
        )
        .order_by()
        .values("cart_id")
        .annotate(count=Count("*"))
        .values("count")
    )
    using = schema_editor.connection.alias
    while True:
        with transaction.atomic(using=using):
            carts = list(
                Event.objects.using(using)
                .filter(sequence__isnull=True)
                .order_by()
                .values_list("cart_id", flat=True)
                .distinct()[:CARTS_PER_BATCH]
            )
            if not carts:
                return
            Event.objects.using(using).filter(cart_id__in=carts).update(sequence=Subquery(place))


class Migration(migrations.Migration):
    # CREATE and DROP INDEX CONCURRENTLY (PostgreSQL) run outside a transaction.
    atomic = False

    dependencies = [
        ("cart", "0007_generated_codes"),
        ("events", "0002_request_id"),
    ]

    # Rolling-safe: the column may be empty, so the release before this one goes on
    # recording events (unnumbered; delivered before the cart's numbered ones, by their
    # time) while this migration runs and until its pods are replaced; no step locks
    # the table's writes for longer than a moment.
    operations = [
        migrations.AddField(
            model_name="event",
            name="sequence",
            field=models.IntegerField(
                editable=False,
                help_text="The event's place among its cart's events: 1, 2, 3, in the order "
                "of the changes (empty only for an event the release before numbering "
                "recorded).",
                null=True,
            ),
        ),
        migrations.RunPython(number_the_events, migrations.RunPython.noop, atomic=False),
        AddUniqueConstraint(
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
