"""The payment ledger in the admin: read-only, written by the payment flows alone.

Attempts and refunds are listed, searched and shown on each cart (`cart.admin` uses the
inlines); nothing here can change them: a rule the admin could bypass is not a rule.
"""

from django.contrib import admin

from payments.models import Payment


class PaymentInline(admin.TabularInline):
    model = Payment
    extra = 0
    can_delete = False
    fields = (
        "created",
        "status",
        "amount",
        "currency",
        "payment_method",
        "provider_payment_id",
        "decline_code",
        "error",
        "completed",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    """The payment ledger: read-only, written by the payment flow alone."""

    list_display = (
        "id",
        "cart",
        "amount",
        "currency",
        "status",
        "decline_code",
        "provider_payment_id",
        "created",
        "completed",
    )
    list_filter = ("status", "currency", "decline_code", "created")
    search_fields = ("id", "cart__id", "provider_payment_id", "idempotency_key")
    list_select_related = ("cart",)
    ordering = ("-created",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
