"""Storefront keys in the admin: issued by adding one, revoked by switching it off.

The secret of a new key is shown once, on the page that answers the form that issued it
(`response_add`), marked not to be cached: not in a Django message, which the cookie
message storage would carry in a cookie, and never logged. Only its hash is kept.
"""

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from storefront.models import StorefrontKey


@admin.register(StorefrontKey)
class StorefrontKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "active", "created", "last_used")
    list_filter = ("active",)
    search_fields = ("name", "prefix")
    fields = ("name", "active", "prefix", "created", "last_used")
    readonly_fields = ("prefix", "created", "last_used")
    ordering = ("-created",)

    def save_model(self, request, obj, form, change):
        if not change:
            obj._secret = obj.new_secret()  # readable in this request only
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(obj, "_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        opts = self.opts
        if "_continue" in request.POST:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        elif "_addanother" in request.POST:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        else:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        response = TemplateResponse(
            request,
            "admin/storefront/storefrontkey/secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "title": "Storefront key issued",
                "key": obj,
                "secret": secret,
                "next_url": next_url,
            },
        )
        add_never_cache_headers(response)
        return response

    def has_delete_permission(self, request, obj=None):
        return False  # switch a key off instead: carts may have been made with it
