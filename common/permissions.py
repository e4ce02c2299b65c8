"""Who may call what.

With ENV=DEV (local development and tests, as in the tutorial) everything is open. With
ENV=PROD, `settings.REQUIRE_STAFF_FOR_MANAGEMENT` is on and endpoints guarded by
`IsStaffForManagement` need an authenticated staff user (token or session): discount
management and the list of every cart. A single cart is reached through its UUID, which
only its storefront knows, so cart creation, reading one cart and its actions stay open.

    class DiscountViewSet(viewsets.ModelViewSet):
        permission_classes = [IsStaffForManagement]
"""

from django.conf import settings
from rest_framework.permissions import BasePermission


class IsStaffForManagement(BasePermission):
    """Anyone with ENV=DEV; only authenticated staff when management is locked down."""

    message = "Staff authentication is required for this endpoint."

    def has_permission(self, request, view) -> bool:
        if not settings.REQUIRE_STAFF_FOR_MANAGEMENT:
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)
