import django_filters

from common.api import UTCDateTimeFilter
from events.models import Event, EventStatus, EventType


class EventFilter(django_filters.FilterSet):
    type = django_filters.ChoiceFilter(choices=EventType.choices)
    status = django_filters.ChoiceFilter(choices=EventStatus.choices)
    cart = django_filters.UUIDFilter(field_name="cart_id")
    created_after = UTCDateTimeFilter(field_name="created", lookup_expr="gte")

    class Meta:
        model = Event
        fields = ("type", "status", "cart", "created_after")
