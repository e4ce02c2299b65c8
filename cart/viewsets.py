"""HTTP endpoints for carts: /api/cart/ and /api/cart/{id}/apply_discount/.

Thin by design: validate with a serializer, call `cart.services`, serialize the cart.
With ENV=PROD, listing every cart needs a staff user; one cart is reached by its UUID.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from cart.filters import CartFilter
from cart.models import Cart
from cart.serializers import CartSerializer
from cart.services import cart_apply_discount, cart_create
from common.permissions import IsStaffForManagement
from discount.serializers import ApplyDiscountSerializer


@extend_schema_view(
    list=extend_schema(summary="List carts, newest first"),
    create=extend_schema(summary="Create a cart"),
    retrieve=extend_schema(summary="Get one cart"),
)
class CartViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Cart.objects.select_related("discount")
    serializer_class = CartSerializer
    filterset_class = CartFilter
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    def get_permissions(self):
        if self.action == "list":
            return [IsStaffForManagement()]
        return [AllowAny()]

    def perform_create(self, serializer):
        serializer.instance = cart_create(**serializer.validated_data)

    @extend_schema(
        summary="Apply a discount code to the cart",
        request=ApplyDiscountSerializer,
        responses={200: CartSerializer},
    )
    @action(detail=True, methods=["post"])
    def apply_discount(self, request, pk=None):
        cart = self.get_object()
        serializer = ApplyDiscountSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cart_apply_discount(cart=cart, discount=serializer.validated_data["discount"])
        return Response(CartSerializer(cart).data)
