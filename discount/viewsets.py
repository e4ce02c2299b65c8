"""HTTP endpoints for discount codes: /api/discount/.

Thin by design: validate with the serializer, call a service, serialize the result.
With ENV=PROD every endpoint here needs a staff user. Discounts are not deleted (carts
keep referring to them): switch one off with `PATCH {"active": false}`.
"""

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets

from common.api import ListFiltersOnlyMixin
from common.permissions import IsStaffForManagement
from discount.filters import DiscountFilter
from discount.models import Discount
from discount.serializers import DiscountSerializer
from discount.services import discount_create, discount_update


@extend_schema_view(
    list=extend_schema(summary="List discount codes, newest first"),
    create=extend_schema(summary="Create a discount code"),
    retrieve=extend_schema(summary="Get one discount code"),
    update=extend_schema(summary="Replace a discount code's settings"),
    partial_update=extend_schema(summary="Change some of a discount code's settings"),
)
class DiscountViewSet(
    ListFiltersOnlyMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Discount.objects.all()
    serializer_class = DiscountSerializer
    permission_classes = [IsStaffForManagement]
    filterset_class = DiscountFilter

    def get_queryset(self):
        # `reserved_uses` of every listed code in the same query.
        return Discount.objects.with_reserved_uses(at=timezone.now())

    def perform_create(self, serializer):
        serializer.instance = discount_create(**serializer.validated_data)
        serializer.instance.reserved_uses_now = 0  # a new code: no cart holds it yet

    def perform_update(self, serializer):
        serializer.instance = discount_update(
            discount=serializer.instance, data=serializer.validated_data
        )
