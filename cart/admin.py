"""Carts in the admin, and the payments panel of its dashboard.

Carts are read-only here (amounts and status change only through the API's flows); a
cart nobody tried to pay may be deleted, through `cart_delete`; a paid one may be
refunded, through `refund_create` (an action). Its payment attempts and refunds are
shown with it; the ledgers themselves are in `payments.admin`.
"""

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from cart.models import Cart, CartLine, PaymentAttemptStatus
from cart.selectors import payments_summary
from cart.services import cart_delete
from common.admin import (
    Panel,
    PanelRow,
    ReadOnlyInline,
    ServiceModelAdmin,
    format_money,
    money,
    short_id,
)
from discount.models import DiscountReservation
from payments.admin import PaymentInline, RefundInline, refund_remaining


class CartLineInline(ReadOnlyInline):
    """What an itemized cart is made of, with each line's share of the discount."""

    model = CartLine
    fields = (
        "sku",
        "name",
        "quantity",
        money("unit_price"),
        money("amount"),
        money("amount_discounted"),
        money("total"),
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("cart")


@admin.register(Cart)
class CartAdmin(ServiceModelAdmin):
    # Read at 1366 px with the navigation and the filters open: what tells carts apart.
    list_display = (
        short_id("id"),
        money("total"),
        "payment_status",
        "discount",
        "items_number",
        "created",
    )
    list_display_links = (list_display[0],)
    list_filter = ("payment_status", "currency", "created")
    search_fields = ("id", "discount__code")
    list_select_related = ("discount",)
    fields = (
        "id",
        money("total"),
        money("subtotal"),
        money("amount_discounted"),
        money("amount_refunded"),
        "currency",
        "items_number",
        "payment_status",
        "discount",
        "created",
        "updated",
    )
    readonly_fields = fields
    ordering = ("-created",)
    inlines = [CartLineInline, PaymentInline, RefundInline]
    actions = [refund_remaining]
    delete_service = staticmethod(lambda cart: cart_delete(cart=cart))

    def get_deleted_objects(self, objs, request):
        """The confirmation page lists what `cart_delete` deletes: the discount
        reservations a cart holds go with it (they protect a cart only from a plain
        `delete()`, so that a consumed use never vanishes)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        held = list(DiscountReservation.objects.filter(cart__in=objs).select_related("discount"))
        if held and len(protected) == len(held):  # nothing else protects these carts
            protected = []
            perms_needed.discard(DiscountReservation._meta.verbose_name)  # not deleted by hand
            deleted += [f"Discount reservation: {reservation}" for reservation in held]
            counts[DiscountReservation._meta.verbose_name_plural] = len(held)
        return deleted, counts, perms_needed, protected

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a view page: no Save button


@admin.site.add_panel
def payments_panel(request) -> Panel:
    """Today's payments at a glance, each number a link to the attempts behind it."""
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    summary = payments_summary(since=today)
    ledger = reverse("admin:payments_payment_changelist")

    def attempts(**filters) -> str:
        return f"{ledger}?{urlencode(filters)}"

    def settled_today(status: str, **filters) -> str:
        return attempts(
            status__exact=status, completed__gte=str(today), completed__lt=str(tomorrow), **filters
        )

    rows = [
        PanelRow(
            f"Paid today in {paid.currency}",
            f"{paid.carts} cart{'s' if paid.carts != 1 else ''} · "
            f"{format_money(paid.total, paid.currency)}",
            settled_today(PaymentAttemptStatus.SUCCESS, currency__exact=paid.currency),
            key=f"paid_{paid.currency}",
        )
        for paid in summary.paid
    ] or [PanelRow("Paid today", "0 carts", settled_today("success"), key="paid")]
    rows += [
        PanelRow(
            "Declined today",
            str(summary.declined),
            settled_today(PaymentAttemptStatus.FAILED),
            key="declined",
        ),
        PanelRow(
            "Provider could not be used today (nothing charged)",
            str(summary.not_charged),
            settled_today(PaymentAttemptStatus.ERROR),
            key="not_charged",
        ),
        PanelRow(
            "Being sent now",
            str(summary.processing),
            attempts(status__exact=PaymentAttemptStatus.PROCESSING),
            key="processing",
        ),
        PanelRow(
            "Outcome unknown (reconcile settles them)",
            str(summary.unknown),
            attempts(status__exact=PaymentAttemptStatus.UNKNOWN),
            key="unknown",
        ),
    ]
    zone = timezone.get_current_timezone_name()
    return Panel(f"Payments today ({zone})", rows)
