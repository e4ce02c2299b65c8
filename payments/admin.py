"""The payment ledgers in the admin: attempts and refunds, read-only, written by the
payment flows alone.

Both are listed, searched and shown on each cart (`cart.admin` uses the inlines); nothing
here edits them: a rule the admin could bypass is not a rule. Giving money back from the
admin (`refund_remaining`, an action on carts) goes through the same service as the API,
`payments.services.refund_create`.
"""

from django.contrib import admin, messages

from common.admin import ReadOnlyInline, ReadOnlyModelAdmin, format_money, money, short_id
from common.errors import ApplicationError
from payments.errors import RefundOutcomeUnknownError
from payments.models import OPEN_REFUND_STATUSES, Payment, Refund
from payments.services import refund_create


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = (
        "created",
        "status",
        money("amount"),
        "payment_method",
        "provider_payment_id",
        "decline_code",
        "error_code",
        "error",
        "completed",
    )
    readonly_fields = fields


class RefundInline(ReadOnlyInline):
    model = Refund
    fk_name = "cart"
    fields = (
        "created",
        "status",
        "reason",
        money("amount"),
        "provider_refund_id",
        "error_code",
        "completed",
    )
    readonly_fields = fields


@admin.register(Payment)
class PaymentAdmin(ReadOnlyModelAdmin):
    """The payment ledger: read-only, written by the payment flow alone."""

    # Read at 1366 px with the navigation and the filters open.
    list_display = (
        short_id("id"),
        short_id("cart_id", label="Cart"),
        money("amount"),
        "status",
        "decline_code",
        "error_code",
        "created",
    )
    list_filter = ("status", "currency", "decline_code", "error_code", "created", "completed")
    search_fields = ("id", "cart__id", "provider_payment_id", "idempotency_key", "request_id")
    ordering = ("-created",)


@admin.register(Refund)
class RefundAdmin(ReadOnlyModelAdmin):
    """The refund ledger: read-only; refunds are made through the API or the cart action."""

    list_display = (
        short_id("id"),
        short_id("cart_id", label="Cart"),
        money("amount"),
        "status",
        "reason",
        "error_code",
        "created",
    )
    list_filter = ("status", "reason", "currency", "error_code", "created", "completed")
    search_fields = (
        "id",
        "cart__id",
        "payment__id",
        "provider_refund_id",
        "idempotency_key",
        "request_id",
    )
    ordering = ("-created",)


@admin.action(description="Refund what is left of the charge (reason: requested)")
def refund_remaining(modeladmin, request, queryset):
    """Give back everything not yet refunded of each selected cart, as the API does."""
    for cart in queryset:
        try:
            refund = refund_create(cart=cart)
        except RefundOutcomeUnknownError:
            # The API's message says to retry with the same Idempotency-Key; this door
            # sends none, and trying again only finds the amount held.
            held = (
                cart.refunds.filter(status__in=OPEN_REFUND_STATUSES).order_by("-created").first()
            )
            if held is None:  # its webhook (or reconcile) settled it since
                modeladmin.message_user(
                    request,
                    f"Cart {cart.pk}: the provider did not confirm the refund at once, and "
                    "it was settled since: see the cart's refunds.",
                    messages.WARNING,
                )
                continue
            modeladmin.message_user(
                request,
                f"Cart {cart.pk}: the provider has not confirmed the refund of "
                f"{format_money(held.amount, held.currency)}. Its amount stays held; "
                "reconcile_payments settles it from the provider's ledger (it cannot be "
                "refunded twice).",
                messages.WARNING,
            )
            continue
        except ApplicationError as exc:
            modeladmin.message_user(request, f"Cart {cart.pk}: {exc.message}", messages.ERROR)
            continue
        modeladmin.message_user(
            request,
            f"Cart {cart.pk}: refund of {format_money(refund.amount, refund.currency)} "
            f"{refund.status}.",
            messages.SUCCESS if refund.status == "success" else messages.WARNING,
        )
