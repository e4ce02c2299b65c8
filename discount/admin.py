from django.contrib import admin

from discount.models import Discount


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
        "usage_limit",
        "created",
    )
    list_filter = ("active", "kind", "currency", "created")
    search_fields = ("code", "description")
    readonly_fields = ("times_used", "created")
    ordering = ("-created",)
