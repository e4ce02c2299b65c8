"""HTTP endpoints for discount codes: /api/discount/.

Thin by design: validate with the serializer, call a service, serialize the result.
With ENV=PROD every endpoint here needs a staff user. Discounts are not deleted (carts
keep referring to them): switch one off with `PATCH {"active": false}`.
"""

from django.utils import timezone
from drf_spectacular.utils import extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from common.api import ListFiltersOnlyMixin
from common.permissions import IsStaffForManagement
from discount import api_docs
from discount.filters import DiscountFilter
from discount.models import Discount
from discount.serializers import DiscountSerializer, GenerateCodesSerializer
from discount.services import discount_create, discount_generate_codes, discount_update


@extend_schema_view(
    list=api_docs.LIST,
    create=api_docs.CREATE,
    retrieve=api_docs.RETRIEVE,
    update=api_docs.UPDATE,
    partial_update=api_docs.PARTIAL_UPDATE,
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
    # ASCII digits (Python's int() reads "١" as 1) within a bigint; anything else is a 404.
    lookup_value_regex = "[0-9]{1,18}"
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

    @api_docs.GENERATE_CODES
    @action(detail=True, methods=["post"])
    def codes(self, request, pk=None):
        discount = self.get_object()
        serializer = GenerateCodesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        made = discount_generate_codes(discount=discount, **serializer.validated_data)
        body = {"discount": discount.pk, "count": len(made), "codes": [c.code for c in made]}
        return Response(body, status=201)
