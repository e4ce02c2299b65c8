"""HTTP endpoints for carts: /api/cart/, /api/cart/{id}/apply_discount/, /pay/, /refund/,
/lines/ and /lines/{line_id}/.

Thin by design: validate with a serializer, call `cart.services` or `payments.services`,
serialize the cart. With ENV=PROD, listing every cart and refunding need a staff user;
one cart is reached by its UUID.
"""

from django.http import Http404
from drf_spectacular.utils import extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings

from cart import api_docs
from cart.errors import CartDiscountAlreadyAppliedError
from cart.filters import CartFilter
from cart.models import Cart
from cart.selectors import (
    cart_as_shown,
    cart_get,
    carts_newest,
    with_related_in_one_statement,
)
from cart.serializers import (
    CartLineSerializer,
    CartSerializer,
    PayCartSerializer,
    UpdateCartLineSerializer,
    cart_representation,
    line_representation,
)
from cart.services import (
    LineChange,
    LineInput,
    cart_apply_discount,
    cart_create,
    cart_line_add,
    cart_line_remove,
    cart_line_update,
    cart_pay,
)
from common.api import ListFiltersOnlyMixin
from common.permissions import IsStaffForManagement
from common.ratelimit import RateLimitedMixin
from discount.errors import DiscountReservationExpiredError
from discount.serializers import ApplyDiscountSerializer
from discount.services import discount_refusal_reasons, discount_reveals_reasons
from payments.errors import CardDeclinedError, RefundDeclinedError
from payments.models import PaymentAttemptStatus, RefundStatus, check_request_key
from payments.serializers import (
    RefundCartSerializer,
    RefundSerializer,
    payment_representation,
)
from payments.services import refund_create
from storefront.access import StorefrontKeyAuthentication, StorefrontKeyRequired


@extend_schema_view(
    list=api_docs.LIST,
    create=api_docs.CREATE,
    retrieve=api_docs.RETRIEVE,
)
class CartViewSet(
    RateLimitedMixin,
    ListFiltersOnlyMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Cart.objects.select_related("discount", "discount_code")
    serializer_class = CartSerializer
    filterset_class = CartFilter
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"
    authentication_classes = [
        *api_settings.DEFAULT_AUTHENTICATION_CLASSES,
        StorefrontKeyAuthentication,
    ]
    # settings.RATE_LIMITS: carts cannot be created, codes guessed or cards tried in bulk.
    rate_limits = {
        "create": ["cart_create_per_ip"],
        "apply_discount": ["apply_discount_per_ip", "apply_discount_per_cart"],
        "pay": ["pay_per_cart"],
    }

    def get_queryset(self):
        if self.action == "list":
            # A page of carts is read with their discounts, lines, payments and refunds
            # in one statement, which sees one moment of them: no transaction.
            return with_related_in_one_statement(Cart.objects.all())
        return super().get_queryset()

    def first_page(self, limit: int) -> list[Cart] | None:
        # The page of a list without filters, compiled once (NewestFirstCursorPagination).
        if self._has_filter_parameters():
            return None
        return carts_newest(limit)

    def retrieve(self, request, pk=None):
        # The same one statement for one cart, built once rather than compiled per request.
        cart = cart_as_shown(pk)
        if cart is None:
            raise Http404
        self.check_object_permissions(request, cart)
        return Response(self.get_serializer(cart).data)

    def _cart(self, pk) -> Cart:
        # The cart's row alone, by a query compiled once (its discount is read only
        # when it holds one): what a write path needs before it locks the row.
        cart = cart_get(pk)
        if cart is None:
            raise Http404
        self.check_object_permissions(self.request, cart)
        return cart

    def get_permissions(self):
        if self.action in ("list", "refund"):
            return [IsStaffForManagement()]
        if self.action == "create":
            return [StorefrontKeyRequired()]
        return [AllowAny()]

    def perform_create(self, serializer):
        serializer.instance = cart_create(**serializer.validated_data)

    @api_docs.APPLY_DISCOUNT
    @action(detail=True, methods=["post"])
    def apply_discount(self, request, pk=None):
        cart = self._cart(pk)
        # The cart's own refusals come first, whatever code is sent: they must not tell
        # a caller anything about the code.
        cart.check_can_change()
        if cart.discount_id is not None and not cart.discount.automatic:
            raise CartDiscountAlreadyAppliedError()
        reveal = discount_reveals_reasons(user=request.user)
        serializer = ApplyDiscountSerializer(data=request.data, context={"reveal_reasons": reveal})
        serializer.is_valid(raise_exception=True)
        with discount_refusal_reasons(reveal=reveal):
            cart_apply_discount(
                cart=cart,
                discount=serializer.validated_data["discount"],
                code=serializer.validated_data["generated_code"],
            )
        # The answer is CartSerializer's, built directly as pay's is: the same JSON
        # without a serializer instance and its ReturnDict.
        return Response(cart_representation(cart))

    @api_docs.PAY
    @action(detail=True, methods=["post"])
    def pay(self, request, pk=None):
        cart = self._cart(pk)
        key = check_request_key(request.headers.get("Idempotency-Key"))
        serializer = PayCartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            payment = cart_pay(cart=cart, idempotency_key=key, **serializer.validated_data)
        except DiscountReservationExpiredError as exc:
            exc.extra["cart"] = cart_representation(cart)  # its new total, to show
            raise
        # The answer's shapes, built directly (without a serializer instance each).
        body = {"cart": cart_representation(cart), "payment": payment_representation(payment)}
        if payment.status == PaymentAttemptStatus.FAILED:
            raise CardDeclinedError(decline_code=payment.decline_code, **body)
        return Response(body)

    @api_docs.REFUND
    @action(detail=True, methods=["post"])
    def refund(self, request, pk=None):
        cart = self.get_object()
        key = check_request_key(request.headers.get("Idempotency-Key"))
        serializer = RefundCartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        refund = refund_create(cart=cart, idempotency_key=key, **serializer.validated_data)
        body = {"cart": CartSerializer(cart).data, "refund": RefundSerializer(refund).data}
        if refund.status == RefundStatus.FAILED:
            raise RefundDeclinedError(**body)
        return Response(body)

    @api_docs.ADD_LINE
    @action(detail=True, methods=["post"], url_path="lines")
    def add_line(self, request, pk=None):
        cart = self.get_object()
        serializer = CartLineSerializer(data=request.data, context={"currency": cart.currency})
        serializer.is_valid(raise_exception=True)
        change = cart_line_add(cart=cart, line=LineInput(**serializer.validated_data))
        return Response(_line_change_body(change), status=201)

    @api_docs.UPDATE_LINE
    @action(detail=True, methods=["patch"], url_path=r"lines/(?P<line_id>[0-9]{1,18})")
    def update_line(self, request, pk=None, line_id=None):
        cart = self.get_object()
        serializer = UpdateCartLineSerializer(
            data=request.data, partial=True, context={"currency": cart.currency}
        )
        serializer.is_valid(raise_exception=True)
        change = cart_line_update(cart=cart, line_id=int(line_id), **serializer.validated_data)
        return Response(_line_change_body(change))

    @api_docs.REMOVE_LINE
    @update_line.mapping.delete
    def remove_line(self, request, pk=None, line_id=None):
        cart = self.get_object()
        change = cart_line_remove(cart=cart, line_id=int(line_id))
        return Response(_line_change_body(change))


def _line_change_body(change: LineChange) -> dict:
    removed = change.discount_removed
    return {
        "cart": CartSerializer(change.cart).data,
        "line": line_representation(change.line, change.cart.currency),
        "discount_removed": removed
        and {
            "code": change.discount_code,
            "error": {"code": removed.code, "message": removed.message},
        },
    }
