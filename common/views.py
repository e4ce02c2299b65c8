"""Endpoints that are not about carts or discounts: health checks and JSON error pages.

    GET /health/        liveness: the process answers (no database touched)
    GET /health/ready/  readiness: the database answers too; 503 when it does not

They are DRF views with no authentication, so a wrong method or a CSRF-less POST still
gets a JSON answer. Django's own error pages (URLs outside the API, CSRF failures) are
JSON in the service's error shape as well: no client ever has to parse HTML.
"""

import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import json_error_response

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
