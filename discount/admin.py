"""Discount codes in the admin. Saving and deleting go through `discount.services`, and
the form shows the errors of `Discount.clean()` beside their fields: the admin refuses
what the API refuses, with the same messages."""

import csv

from django.contrib import admin
from django.db.models import OuterRef, Subquery
from django.http import StreamingHttpResponse
from django.utils import timezone

from common.admin import (
    ReadOnlyModelAdmin,
    ServiceModelAdmin,
    adopt,
    format_money,
    money,
    short_id,
)
from discount.models import (
    Discount,
    DiscountCode,
    DiscountKind,
    DiscountReservation,
    ReservationStatus,
)
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
    "skus",
    "sku_prefixes",
    "limit_per_customer",
    "first_order_only",
    "budget_amount",
    "automatic",
)


@admin.register(Discount)
class DiscountAdmin(ServiceModelAdmin):
    # Read at 1366 px with the navigation and the filters open (the value shows the kind).
    list_display = ("code", "value_display", "active", "ended", "uses", "created")
    list_filter = ("active", "kind", "currency", "created")
    search_fields = ("code", "description")
    readonly_fields = ("times_used", money("amount_consumed"), "created")
    fields = (*SETTINGS, *readonly_fields)
    ordering = ("-created",)
    delete_service = staticmethod(lambda discount: discount_delete(discount=discount))

    @admin.display(description="Value", ordering="value")
    def value_display(self, discount: Discount) -> str:
        if discount.kind == DiscountKind.PERCENT:
            return f"{discount.value.normalize():f} %"
        if discount.currency:
            return format_money(discount.value, discount.currency)
        return f"{discount.value.normalize():f} (cart's currency)"

    def get_queryset(self, request):
        return super().get_queryset(request).with_reserved_uses(at=timezone.now())

    @admin.display(description="Used (+ reserved)", ordering="times_used")
    def uses(self, discount: Discount) -> str:
        # Consumed by paid carts, then held by carts not paid yet: both count.
        used = f"{discount.times_used} + {discount.reserved_uses_now}"
        if discount.usage_limit is None:
            return used
        return f"{used} of {discount.usage_limit}"

    def save_model(self, request, obj, form, change):
        # The form has run Discount.clean(); the service runs it again under a lock.
        if change:
            data = {name: getattr(obj, name) for name in form.changed_data if name in SETTINGS}
            saved = discount_update(discount=obj, data=data)
        else:
            saved = discount_create(**{name: getattr(obj, name) for name in SETTINGS})
        adopt(obj, saved)


@admin.register(DiscountReservation)
class DiscountReservationAdmin(ReadOnlyModelAdmin):
    """Uses of codes held by carts: written by applying, paying and the sweep alone."""

    list_display = (
        "discount",
        short_id("cart_id", label="Cart"),
        "status",
        money("amount"),
        "expires",
    )
    list_filter = ("status", "created")
    search_fields = ("discount__code", "cart__id")
    list_select_related = ("discount",)
    ordering = ("-created",)


def with_use(codes):
    """Each generated code with `use`: the status of the reservation that holds or
    spent it (reserved, consumed), or None while it is free."""
    holder = (
        DiscountReservation.objects.filter(code=OuterRef("pk"))
        .exclude(status=ReservationStatus.RELEASED)
        .values("status")[:1]
    )
    return codes.annotate(use=Subquery(holder))


class _Echo:
    def write(self, value):
        return value


@admin.action(description="Export the selected codes as CSV")
def export_codes_csv(modeladmin, request, queryset):
    """Stream the codes (all of them with "select all"), whatever their number."""
    writer = csv.writer(_Echo())
    rows = with_use(queryset.select_related("discount")).order_by("id")

    def lines():
        yield writer.writerow(["code", "discount", "status", "created"])
        for code in rows.iterator(chunk_size=2000):
            status = code.use or "available"
            yield writer.writerow(
                [code.code, code.discount.code, status, code.created.isoformat()]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="discount-codes.csv"'
    return response


@admin.register(DiscountCode)
class DiscountCodeAdmin(ReadOnlyModelAdmin):
    """Generated single-use codes (made by `discount_generate_codes`): listed, searched,
    filtered by discount and exported as CSV."""

    list_display = ("code", "discount", "status", "created")
    list_filter = ("discount", "created")
    search_fields = ("code",)
    list_select_related = ("discount",)
    ordering = ("-id",)
    actions = [export_codes_csv]

    def get_queryset(self, request):
        return with_use(super().get_queryset(request))

    @admin.display(description="Status")
    def status(self, code: DiscountCode) -> str:
        return code.use or "available"
