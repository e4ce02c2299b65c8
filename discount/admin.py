"""Discount codes in the admin. Saving and deleting go through `discount.services`, and
the form shows the errors of `Discount.clean()` beside their fields: the admin refuses
what the API refuses, with the same messages."""

from django.contrib import admin

from common.admin import ServiceModelAdmin, adopt, format_money
from discount.models import Discount, DiscountKind
from discount.services import discount_create, discount_delete, discount_update

# What staff set; `times_used` and `created` are the service's.
SETTINGS = (
    "code",
    "kind",
    "value",
    "currency",
    "description",
    "started",
    "ended",
    "active",
    "min_cart_total",
    "usage_limit",
)


@admin.register(Discount)
class DiscountAdmin(ServiceModelAdmin):
    # Read at 1366 px with the navigation and the filters open (the value shows the kind).
    list_display = ("code", "value_display", "active", "ended", "uses", "created")
    list_filter = ("active", "kind", "currency", "created")
    search_fields = ("code", "description")
    fields = (*SETTINGS, "times_used", "created")
    readonly_fields = ("times_used", "created")
    ordering = ("-created",)
    delete_service = staticmethod(lambda discount: discount_delete(discount=discount))

    @admin.display(description="Value", ordering="value")
    def value_display(self, discount: Discount) -> str:
        if discount.kind == DiscountKind.PERCENT:
            return f"{discount.value.normalize():f} %"
        if discount.currency:
            return format_money(discount.value, discount.currency)
        return f"{discount.value.normalize():f} (cart's currency)"

    @admin.display(description="Used", ordering="times_used")
    def uses(self, discount: Discount) -> str:
        if discount.usage_limit is None:
            return str(discount.times_used)
        return f"{discount.times_used} of {discount.usage_limit}"

    def save_model(self, request, obj, form, change):
        # The form has run Discount.clean(); the service runs it again under a lock.
        if change:
            data = {name: getattr(obj, name) for name in form.changed_data if name in SETTINGS}
            saved = discount_update(discount=obj, data=data)
        else:
            saved = discount_create(**{name: getattr(obj, name) for name in SETTINGS})
        adopt(obj, saved)
