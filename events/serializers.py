"""How an event reads in `GET /api/events/`: its envelope's fields and the same `data`
the shop's endpoint was sent."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from events.models import Event


class EventSerializer(serializers.ModelSerializer):
    cart = serializers.UUIDField(source="cart_id", read_only=True)
    data = serializers.SerializerMethodField(
        help_text="What the event reports: the cart, and the payment or refund."
    )

    class Meta:
        model = Event
        fields = (
            "id",
            "type",
            "created",
            "sequence",
            "cart",
            "data",
            "status",
            "attempts",
            "delivered_at",
        )
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_data(self, event: Event) -> dict:
        return event.data
