"""The payment ledger in the admin: read-only, written by the payment flows alone.

Attempts and refunds are listed, searched and shown on each cart (`cart.admin` uses the
inlines); nothing here edits them: a rule the admin could bypass is not a rule. Giving
money back from the admin (`refund_remaining`, an action on carts) goes through the same
service as the API, `payments.services.refund_create`.
"""

from django.contrib import admin, messages

from common.errors import ApplicationError
from payments.models import Payment, Refund
from payments.services import refund_create


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PaymentInline(_ReadOnlyInline):
    model = Payment
    fields = (
        "created",
        "status",
        "amount",
        "currency",
        "payment_method",
        "provider_payment_id",
        "decline_code",
        "error_code",
        "error",
        "completed",
    )
    readonly_fields = fields


class RefundInline(_ReadOnlyInline):
    model = Refund
    fk_name = "cart"
    fields = (
        "created",
        "status",
        "reason",
        "amount",
        "currency",
        "provider_refund_id",
        "error_code",
        "completed",
    )
    readonly_fields = fields


class _ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Payment)
class PaymentAdmin(_ReadOnlyAdmin):
    """The payment ledger: read-only, written by the payment flow alone."""

    list_display = (
        "id",
        "cart",
        "amount",
        "currency",
        "status",
        "decline_code",
        "error_code",
        "amount_refunded",
        "provider_payment_id",
        "created",
        "completed",
    )
    list_filter = ("status", "currency", "decline_code", "error_code", "created")
    search_fields = ("id", "cart__id", "provider_payment_id", "idempotency_key")
    list_select_related = ("cart",)
    ordering = ("-created",)


@admin.register(Refund)
class RefundAdmin(_ReadOnlyAdmin):
    """The refund ledger: read-only; refunds are made through the API or the cart action."""

    list_display = (
        "id",
        "cart",
        "amount",
        "currency",
        "status",
        "reason",
        "error_code",
        "provider_refund_id",
        "created",
        "completed",
    )
    list_filter = ("status", "reason", "currency", "error_code", "created")
    search_fields = ("id", "cart__id", "payment__id", "provider_refund_id", "idempotency_key")
    list_select_related = ("cart",)
    ordering = ("-created",)


@admin.action(description="Refund what is left of the charge (reason: requested)")
def refund_remaining(modeladmin, request, queryset):
    """Give back everything not yet refunded of each selected cart, as the API does."""
    for cart in queryset:
        try:
            refund = refund_create(cart=cart)
        except ApplicationError as exc:
            modeladmin.message_user(request, f"Cart {cart.pk}: {exc.message}", messages.ERROR)
            continue
        modeladmin.message_user(
            request,
            f"Cart {cart.pk}: refund of {refund.amount.normalize():f} {refund.currency} "
            f"{refund.status}.",
            messages.SUCCESS if refund.status == "success" else messages.WARNING,
        )
