"""Endpoints that are not about carts or discounts: health checks, API tokens and JSON
error pages.

    GET /health/          liveness: the process answers (no database touched)
    GET /health/ready/    readiness: the database answers too; 503 when it does not
    POST /api/auth/token/ a staff user's username and password in, their API token out
    GET /api/schema/      the OpenAPI schema, YAML or JSON (drf-spectacular's view)
    GET /api/docs/        Swagger UI, an HTML page (drf-spectacular's view)

They are DRF views with no authentication, so a wrong method or a CSRF-less POST still
gets a JSON answer; the schema's and the docs' errors are JSON too (`JSONErrorsMixin`).
Django's own error pages (URLs outside the API, CSRF failures) are JSON in the service's
error shape as well: no client ever has to parse HTML.
"""

import logging

from django.contrib.auth import authenticate
from django.db import DatabaseError, connection
from django.http import JsonResponse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import DecimalJSONParser, DecimalJSONRenderer
from common.errors import json_error_response
from common.ratelimit import rate_limit
from common.schema import documented, field_error

logger = logging.getLogger(__name__)


class HealthView(APIView):
    authentication_classes = []
    permission_classes = []
    schema = None  # operational endpoints, not part of the public API


class LivenessView(HealthView):
    def get(self, request) -> Response:
        return Response({"status": "ok"})


class ReadinessView(HealthView):
    def get(self, request) -> Response:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError:
            logger.exception("Readiness check: database unavailable")
            return Response({"status": "unavailable", "database": "unavailable"}, status=503)
        return Response({"status": "ok", "database": "ok"})


class StringField(serializers.CharField):
    """A CharField that takes a JSON string only: DRF's would read `12345` as "12345",
    and a username sent as a number would escape its rate limit (counted per string)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class CredentialsSerializer(serializers.Serializer):
    username = StringField(max_length=150)
    password = StringField(max_length=128, trim_whitespace=False)

    def validate(self, attrs: dict) -> dict:
        user = authenticate(
            request=self.context.get("request"),
            username=attrs["username"],
            password=attrs["password"],
        )
        # Only staff get a token (it unlocks management with ENV=PROD). Anyone else gets
        # word for word the answer of a wrong password: no account is revealed.
        if user is None or not user.is_staff:
            raise serializers.ValidationError(
                INVALID_CREDENTIALS.message, code=INVALID_CREDENTIALS.code
            )
        return {**attrs, "user": user}


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True, help_text="Send it as `Authorization: Token …`.")


INVALID_CREDENTIALS = field_error(
    None, "invalid_credentials", "No active user has these credentials."
)


class ObtainTokenView(ObtainAuthToken):
    """DRF's token view, JSON only like every endpoint, and with no authentication: a
    token is what a caller without one comes for (and a session must not demand CSRF)."""

    authentication_classes = []
    parser_classes = [DecimalJSONParser]
    renderer_classes = [DecimalJSONRenderer]
    serializer_class = CredentialsSerializer
    # Checked before any password is hashed: guesses cannot tie up the workers either.
    # Without the shared store no guess is counted: refuse (503) rather than allow them.
    throttle_classes = [
        rate_limit("token_per_ip", fail_closed=True),
        rate_limit("token_per_username", fail_closed=True),
    ]

    @documented(
        summary="Get an API token",
        description=(
            "Exchanges a staff user's username and password for their API token (the same "
            "token every time); anyone else gets the answer of a wrong password. Send it as "
            "`Authorization: Token <token>`: in production, discount management and the "
            "cart list need it. Create a staff user with `make superuser` first. Attempts "
            "are rate limited per client address and per username."
        ),
        request=CredentialsSerializer,
        request_example={"username": "staff", "password": "a-long-staff-password"},
        responses={200: (TokenSerializer, {"token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"})},
        errors=[INVALID_CREDENTIALS],
        auth=[],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class JSONErrorsMixin:
    """For a view whose own answer is not JSON (an HTML page, a YAML document): its errors
    and its OPTIONS answer are JSON like every other view's. drf-spectacular's views render
    them with their one renderer instead: a 405 as text/html or YAML, and OPTIONS on the
    docs page was a 500 (TemplateHTMLRenderer has no template for the metadata)."""

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response) and (response.exception or request.method == "OPTIONS"):
            # Chosen here, after the view: a 406 has no renderer negotiated at all.
            request.accepted_renderer = DecimalJSONRenderer()
            request.accepted_media_type = request.accepted_renderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class SchemaView(JSONErrorsMixin, SpectacularAPIView):
    """The OpenAPI 3 schema of this API (JSON: `Accept: application/vnd.oai.openapi+json`)."""


class DocsView(JSONErrorsMixin, SpectacularSwaggerView):
    """Interactive docs of this API (Swagger UI)."""


def not_found(request, exception=None) -> JsonResponse:
    return json_error_response("not_found", "No such resource.", 404)


def server_error(request) -> JsonResponse:
    return json_error_response("server_error", "Internal error; it has been logged.", 500)


def bad_request(request, exception=None) -> JsonResponse:
    return json_error_response("bad_request", "Bad request.", 400)


def permission_denied(request, exception=None) -> JsonResponse:
    return json_error_response("permission_denied", "Permission denied.", 403)


def csrf_failure(request, reason="") -> JsonResponse:
    return json_error_response("csrf_failed", f"CSRF check failed: {reason}", 403)
