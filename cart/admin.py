from django.contrib import admin

from cart.models import Cart, Payment


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


@admin.register(Cart)
class CartAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "total",
        "subtotal",
        "amount_discounted",
        "currency",
        "items_number",
        "payment_status",
        "discount",
        "created",
    )
    list_filter = ("payment_status", "currency", "created")
    search_fields = ("id", "discount__code")
    list_select_related = ("discount",)
    # Amounts and status change only through the API's flows, which keep them consistent.
    readonly_fields = (
        "id",
        "subtotal",
        "total",
        "amount_discounted",
        "currency",
        "items_number",
        "payment_status",
        "discount",
        "created",
        "updated",
    )
    ordering = ("-created",)
    inlines = [PaymentInline]

    def has_add_permission(self, request):
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
