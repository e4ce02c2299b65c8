"""URL map of the service.

/api/cart/ …            carts (cart.viewsets)
/api/discount/ …        discount codes (discount.viewsets)
/api/events/ …          events recorded for the shop (events.viewsets, staff)
/api/webhooks/payment-provider/   the payment provider's signed events (events.views)
/api/auth/token/        exchange a staff username and password for an API token
/api/schema/, /api/docs/  OpenAPI 3 schema and interactive docs (served offline)
/health/, /health/ready/  liveness and readiness
/metrics                Prometheus metrics (observability.views)
/admin/                 Django admin
"""

from django.contrib import admin
from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from cart.viewsets import CartViewSet
from common import views as common_views
from discount.viewsets import DiscountViewSet
from events.views import payment_provider_webhook
from events.viewsets import EventViewSet
from observability.views import MetricsView


class OptionalSlashRouter(DefaultRouter):
    """The trailing slash is optional: "POST /api/cart" must not become a redirect that
    clients follow as a GET, losing the body."""

    include_root_view = False
    # The API speaks JSON only, so a suffix (`/api/cart/{id}.json`) would choose nothing;
    # and the actions' handlers take no `format` argument: such a URL was a 500. Without
    # the suffix routes it is simply no route, a JSON 404.
    include_format_suffixes = False

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("cart", CartViewSet, basename="cart")
router.register("discount", DiscountViewSet, basename="discount")
router.register("events", EventViewSet, basename="event")

urlpatterns = [
    path("api/", include(router.urls)),
    # POST endpoints take the optional slash of the router's routes: without it Django
    # (APPEND_SLASH) would answer a 301 that clients follow as a GET, losing the body.
    # The GET-only paths below keep that redirect: followed, it is the same request.
    re_path(
        r"^api/webhooks/payment-provider/?$",
        payment_provider_webhook,
        name="payment-provider-webhook",
    ),
    re_path(r"^api/auth/token/?$", common_views.ObtainTokenView.as_view(), name="api-token"),
    path("api/schema/", common_views.SchemaView.as_view(), name="schema"),
    path("api/docs/", common_views.DocsView.as_view(url_name="schema"), name="docs"),
    path("health/", common_views.LivenessView.as_view(), name="health-live"),
    path("health/ready/", common_views.ReadinessView.as_view(), name="health-ready"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("admin/", admin.site.urls),
]

handler400 = common_views.bad_request
handler403 = common_views.permission_denied
handler404 = common_views.not_found
handler500 = common_views.server_error
