from django.contrib import admin
from django.utils import timezone

from discount.models import Discount, DiscountReservation


@admin.register(Discount)
class DiscountAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "kind",
        "value",
        "currency",
        "active",
        "started",
        "ended",
        "times_used",
        "reserved_uses",
        "usage_limit",
        "created",
    )
    list_filter = ("active", "kind", "currency", "created")
    search_fields = ("code", "description")
    readonly_fields = ("times_used", "created")
    ordering = ("-created",)

    def get_queryset(self, request):
        return super().get_queryset(request).with_reserved_uses(at=timezone.now())

    @admin.display(description="reserved (unpaid carts)")
    def reserved_uses(self, discount: Discount) -> int:
        return discount.reserved_uses_now


@admin.register(DiscountReservation)
class DiscountReservationAdmin(admin.ModelAdmin):
    """Uses of codes held by carts: read-only, written by applying, paying and the sweep."""

    list_display = ("discount", "cart", "status", "amount", "currency", "expires", "created")
    list_filter = ("status", "created")
    search_fields = ("discount__code", "cart__id")
    list_select_related = ("discount",)
    ordering = ("-created",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
