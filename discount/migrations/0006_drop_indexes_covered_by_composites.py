import django.db.models.deletion
from django.db import migrations, models

from common.migration_operations import DropIndex


class Migration(migrations.Migration):
    # DROP INDEX CONCURRENTLY (PostgreSQL) runs outside a transaction.
    atomic = False

    dependencies = [
        ("discount", "0005_automatic"),
    ]

    # Each foreign key's own index on discount_id: `discountcode_discount` (discount, id)
    # and `reservation_discount` (discount, status, expires) begin with that column and
    # serve the same lookups, while every INSERT kept both up to date.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="discountcode",
                    name="discount",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="codes",
                        to="discount.discount",
                    ),
                ),
                migrations.AlterField(
                    model_name="discountreservation",
                    name="discount",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="reservations",
                        to="discount.discount",
                    ),
                ),
            ],
            database_operations=[
                DropIndex(
                    "discount_discountcode",
                    "discount_discountcode_discount_id_7ed440f9",
                    column="discount_id",
                ),
                DropIndex(
                    "discount_discountreservation",
                    "discount_discountreservation_discount_id_b3bc998a",
                    column="discount_id",
                ),
            ],
        ),
    ]
