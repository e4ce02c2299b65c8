"""The app's URLs plus the benchmark's own: `/bench/bare/`, the baseline every scenario is
compared with, and `/bench/limit/...`, the limit rows (bench/limits.py).

`BareView` is a DRF APIView that keeps the project's DEFAULT authentication, permission,
renderer and parser classes (nothing is overridden) and returns a constant: the same
stack as the real endpoints, minus the database and the serializers. Its rate under the
same gunicorn is what "1.0" means in the benchmark's ratios. The limit views are plain
Django views doing each scenario's minimal SQL by hand: what the stack allows at best.
"""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from bench import limits
from CoreRoot.urls import handler400, handler403, handler404, handler500, urlpatterns

BARE_BODY = {"status": "ok", "bench": "bare"}
CART_ID = "<str:pk>"


class BareView(APIView):
    schema = None  # not part of the API

    def get(self, request) -> Response:
        return Response(BARE_BODY)


urlpatterns = [
    *urlpatterns,
    path("bench/bare/", BareView.as_view(), name="bench-bare"),
    path("bench/limit/api/cart/", limits.carts, name="bench-limit-carts"),
    path(f"bench/limit/api/cart/{CART_ID}/", limits.cart, name="bench-limit-cart"),
    path(
        f"bench/limit/api/cart/{CART_ID}/apply_discount/",
        limits.apply_discount,
        name="bench-limit-apply-discount",
    ),
    path(f"bench/limit/api/cart/{CART_ID}/pay/", limits.pay, name="bench-limit-pay"),
    path("bench/limit/api/discount/", limits.discounts, name="bench-limit-discounts"),
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
