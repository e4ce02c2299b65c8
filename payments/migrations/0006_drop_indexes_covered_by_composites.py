import django.db.models.deletion
from django.db import migrations, models

from common.migration_operations import DropIndex


class Migration(migrations.Migration):
    # DROP INDEX CONCURRENTLY (PostgreSQL) runs outside a transaction.
    atomic = False

    dependencies = [
        ("cart", "0007_generated_codes"),
        ("payments", "0005_attempt_cart_changed"),
    ]

    # The foreign key's own index on cart_id: the unique (cart_id, key) index begins
    # with that column and serves the same lookups, while every keyed pay's INSERT kept
    # both up to date.
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="paymentrequest",
                    name="cart",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="payment_requests",
                        to="cart.cart",
                    ),
                ),
            ],
            database_operations=[
                DropIndex(
                    "cart_paymentrequest",
                    "cart_paymentrequest_cart_id_12c2a59c",
                    column="cart_id",
                ),
            ],
        ),
    ]
