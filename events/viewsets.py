"""`GET /api/events/`: the outbox, read by staff (a shop that missed some deliveries)."""

from drf_spectacular.utils import extend_schema_view
from rest_framework import mixins, viewsets

from common.api import ListFiltersOnlyMixin
from common.permissions import IsStaffForManagement
from events import api_docs
from events.filters import EventFilter
from events.models import Event
from events.serializers import EventSerializer


@extend_schema_view(list=api_docs.LIST, retrieve=api_docs.RETRIEVE)
class EventViewSet(
    ListFiltersOnlyMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    queryset = Event.objects.all()
    serializer_class = EventSerializer
    filterset_class = EventFilter
    permission_classes = [IsStaffForManagement]
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"
