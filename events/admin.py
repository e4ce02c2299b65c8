"""Events in the admin: the outbox with each event's delivery log, and the provider's
events received. Read-only: events are written by the payment flows, deliveries by the
worker. "Redeliver now" goes through `events.services.event_redeliver`."""

from django.contrib import admin, messages

from common.admin import ReadOnlyInline, ReadOnlyModelAdmin, short_id
from events.models import Event, EventDelivery, ProviderEvent
from events.services import event_redeliver


class EventDeliveryInline(ReadOnlyInline):
    model = EventDelivery
    fields = ("attempt", "created", "status_code", "error", "latency_ms", "next_retry_at", "url")
    readonly_fields = fields


@admin.action(description="Redeliver now (same webhook-id)")
def redeliver_now(modeladmin, request, queryset):
    for event in queryset:
        event = event_redeliver(event=event)
        modeladmin.message_user(
            request,
            f"{event.type} {event.pk}: {event.get_status_display()}.",
            messages.SUCCESS if event.status == "pending" else messages.WARNING,
        )


@admin.register(Event)
class EventAdmin(ReadOnlyModelAdmin):
    """The outbox: every event for the shop, where its delivery stands, and each try."""

    # The list shows the bare type and status values; their explanations (the choices'
    # labels) are in the filters and on the event's page, with the next retry and the
    # delivery log: with them the list would not fit a 1366 px screen.
    list_display = (
        short_id("id"),
        "type_value",
        short_id("cart_id", label="Cart"),
        "status_value",
        "attempts",
        "created",
    )
    list_filter = ("status", "type", "created")
    search_fields = ("id", "cart__id", "request_id")
    ordering = ("-created",)
    fields = (
        "id",
        "type",
        "cart",
        "sequence",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "created",
        "request_id",
        "body",
    )
    readonly_fields = fields
    inlines = [EventDeliveryInline]
    actions = [redeliver_now]

    @admin.display(description="Type", ordering="type")
    def type_value(self, event: Event) -> str:
        return event.type

    @admin.display(description="Status", ordering="status")
    def status_value(self, event: Event) -> str:
        return event.status


@admin.register(ProviderEvent)
class ProviderEventAdmin(ReadOnlyModelAdmin):
    """Events the payment provider sent, by webhook-id, and what each changed."""

    list_display = ("webhook_id", "type", "outcome", "received")
    list_filter = ("type", "received")
    search_fields = ("webhook_id", "body")
    ordering = ("-received",)
