"""API tokens, for staff only: `POST /api/auth/token/ {"username", "password"}`.

    path("api/auth/token/", StaffTokenView.as_view(), name="api-token")

A token is what unlocks discount management and the cart list with ENV=PROD, so only an
active staff user gets one. Anyone else (a wrong password, an unknown or inactive user,
a customer account) gets the same 400, so the endpoint says nothing about which
accounts exist. Guesses are rate limited per client IP and per username
(`token_per_ip`, `token_per_username` in `settings.RATE_LIMITS`) before any password is
hashed, so a burst of guesses cannot tie up the workers either.
"""

from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.settings import api_settings

from common.ratelimit import rate_limit

CREDENTIALS_REFUSED = "Unable to log in with provided credentials."


class StaffAuthTokenSerializer(AuthTokenSerializer):
    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        if not attrs["user"].is_staff:
            # Word for word what a wrong password gets.
            raise serializers.ValidationError(CREDENTIALS_REFUSED, code="authorization")
        return attrs


class StaffTokenView(ObtainAuthToken):
    """Exchange a staff user's username and password for their API token."""

    serializer_class = StaffAuthTokenSerializer
    # JSON in and out like every other endpoint (DRF's view also takes forms).
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES
    renderer_classes = api_settings.DEFAULT_RENDERER_CLASSES
    throttle_classes = [rate_limit("token_per_ip"), rate_limit("token_per_username")]
