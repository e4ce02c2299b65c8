"""Payments move from the `cart` app to their own app, table names kept.

Only Django's idea of which app owns the models changes (`SeparateDatabaseAndState` with
no database operation): the tables `cart_payment` and `cart_paymentrequest`, their rows,
indexes and constraints stay as they are, so nothing is copied. `cart.0003` removes the
models from the `cart` app's state. The content types follow, so permissions and admin
history stay attached to the models.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models

import common.fields

MOVED = ("payment", "paymentrequest")


def move_content_types(apps, schema_editor, source="cart", target="payments"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label=target, model=model).exists():
            ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="payments", target="cart")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("cart", "0002_payment_requests"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Payment",
                    fields=[
                        (
                            "id",
                            models.UUIDField(
                                default=uuid.uuid4,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("amount", common.fields.AmountField(decimal_places=4, max_digits=15)),
                        ("currency", models.CharField(max_length=3)),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("processing", "Processing: being sent to the provider"),
                                    ("unknown", "Unknown: sent, outcome not known yet"),
                                    ("success", "Success: charged"),
                                    ("failed", "Failed: declined by the provider"),
                                    (
                                        "error",
                                        "Error: the provider could not be used, nothing charged",
                                    ),
                                ],
                                default="processing",
                                max_length=16,
                            ),
                        ),
                        (
                            "payment_method",
                            models.CharField(blank=True, default="", max_length=64),
                        ),
                        ("idempotency_key", models.CharField(max_length=255, unique=True)),
                        (
                            "provider_payment_id",
                            models.CharField(blank=True, default="", max_length=64),
                        ),
                        ("decline_code", models.CharField(blank=True, default="", max_length=64)),
                        (
                            "error",
                            models.TextField(
                                blank=True, default="", help_text="Why the provider failed."
                            ),
                        ),
                        ("created", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("updated", models.DateTimeField(auto_now=True)),
                        ("completed", models.DateTimeField(blank=True, null=True)),
                        (
                            "cart",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="payments",
                                to="cart.cart",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "cart_payment",
                        "ordering": ["created"],
                        "indexes": [
                            models.Index(
                                fields=["status", "updated"], name="payment_status_updated"
                            )
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("status__in", ("processing", "unknown"))),
                                fields=("cart",),
                                name="payment_one_open_attempt_per_cart",
                            ),
                            models.UniqueConstraint(
                                condition=models.Q(("status", "success")),
                                fields=("cart",),
                                name="payment_one_success_per_cart",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("amount__gte", 0)),
                                name="payment_amount_not_negative",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="PaymentRequest",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("key", models.CharField(max_length=200)),
                        (
                            "payment_method",
                            models.CharField(blank=True, default="", max_length=64),
                        ),
                        (
                            "amount",
                            common.fields.AmountField(
                                decimal_places=4,
                                help_text="The cart total when the key was first used.",
                                max_digits=15,
                            ),
                        ),
                        ("created", models.DateTimeField(auto_now_add=True)),
                        (
                            "cart",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="payment_requests",
                                to="cart.cart",
                            ),
                        ),
                        (
                            "payment",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="requests",
                                to="payments.payment",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "cart_paymentrequest",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("cart", "key"), name="payment_request_key_per_cart"
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
