"""Who may create carts: with `REQUIRE_STOREFRONT_KEY` (default with ENV=PROD), a caller
that sends a valid `X-Storefront-Key`, or a staff user. DEV stays open, as the tutorial is.

    class CartViewSet(viewsets.GenericViewSet):
        authentication_classes = [..., StorefrontKeyAuthentication]
        def get_permissions(self): ... [StorefrontKeyRequired()] for "create"

A key that is sent is checked wherever it is sent: an unknown or revoked one is
`401 storefront_key_invalid`; none at all where one is required is
`401 storefront_key_required`.
"""

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from common.schema import field_error
from storefront.models import StorefrontKey

HEADER = "X-Storefront-Key"
INVALID_MESSAGE = "This storefront key is unknown or revoked."
REQUIRED_MESSAGE = f"Send the storefront's key in the {HEADER} header (issued in the admin)."


class StorefrontKeyAuthentication(BaseAuthentication):
    """`request.auth` is the `StorefrontKey` of a valid `X-Storefront-Key`."""

    documented_errors = (field_error(None, "storefront_key_invalid", INVALID_MESSAGE, status=401),)

    def authenticate(self, request):
        secret = request.headers.get(HEADER)
        if secret is None:
            return None
        key = StorefrontKey.objects.verify(secret.strip())
        if key is None:
            raise exceptions.AuthenticationFailed(INVALID_MESSAGE, code="storefront_key_invalid")
        return AnonymousUser(), key

    def authenticate_header(self, request) -> str:
        return HEADER


class StorefrontKeyRequired(BasePermission):
    documented_errors = (
        field_error(None, "storefront_key_required", REQUIRED_MESSAGE, status=401),
    )

    def has_permission(self, request, view) -> bool:
        if not settings.REQUIRE_STOREFRONT_KEY or isinstance(request.auth, StorefrontKey):
            return True
        user = request.user
        if user and user.is_authenticated and user.is_staff:
            return True
        raise exceptions.NotAuthenticated(REQUIRED_MESSAGE, code="storefront_key_required")


class StorefrontKeyScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the key (drf-spectacular finds it by its target)."""

    target_class = StorefrontKeyAuthentication
    name = "storefrontKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": HEADER,
            "description": "A storefront key, issued in the admin. Creating a cart needs "
            "one in production (or a staff token).",
        }
