"""The payment models now belong to the `payments` app (see `payments.0001_initial`):
they leave the `cart` app's state; their tables stay where they are."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("cart", "0002_payment_requests"),
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="PaymentRequest"),
                migrations.DeleteModel(name="Payment"),
            ],
        ),
    ]
