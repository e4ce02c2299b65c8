from django.contrib import admin, messages

from storefront.models import StorefrontKey


@admin.register(StorefrontKey)
class StorefrontKeyAdmin(admin.ModelAdmin):
    """Issue a key by adding one: its secret is shown once, in the confirmation message."""

    list_display = ("name", "prefix", "active", "created", "last_used")
    list_filter = ("active",)
    search_fields = ("name", "prefix")
    fields = ("name", "active", "prefix", "created", "last_used")
    readonly_fields = ("prefix", "created", "last_used")
    ordering = ("-created",)

    def save_model(self, request, obj, form, change):
        secret = None if change else obj.new_secret()
        super().save_model(request, obj, form, change)
        if secret:
            messages.warning(
                request,
                f"The key's secret, shown only now: {secret} — give it to the storefront, "
                "which sends it as the X-Storefront-Key header.",
            )

    def has_delete_permission(self, request, obj=None):
        return False  # switch a key off instead: carts may have been made with it
