from django.contrib import admin

from cart.models import Cart
from payments.admin import PaymentInline, RefundInline, refund_remaining


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
        "amount_refunded",
        "currency",
        "items_number",
        "payment_status",
        "discount",
        "created",
        "updated",
    )
    ordering = ("-created",)
    inlines = [PaymentInline, RefundInline]
    actions = [refund_remaining]

    def has_add_permission(self, request):
        return False
