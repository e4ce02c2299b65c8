"""Endpoints that are not about carts or discounts: health checks and JSON error pages.

    GET /health/        liveness: the process answers (no database touched)
    GET /health/ready/  readiness: the database answers too; 503 when it does not

Django's own 404/500 pages (for URLs outside the API) are JSON in the service's error
shape as well, so no client ever has to parse HTML.
"""

import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from common.errors import json_error_response

logger = logging.getLogger(__name__)


@require_GET
def health_live(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def health_ready(request) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        logger.exception("Readiness check: database unavailable")
        return JsonResponse({"status": "unavailable", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def not_found(request, exception=None) -> JsonResponse:
    return json_error_response(request, "not_found", "No such resource.", 404)


def server_error(request) -> JsonResponse:
    return json_error_response(request, "server_error", "Internal error; it has been logged.", 500)


def bad_request(request, exception=None) -> JsonResponse:
    return json_error_response(request, "bad_request", "Bad request.", 400)


def permission_denied(request, exception=None) -> JsonResponse:
    return json_error_response(request, "permission_denied", "Permission denied.", 403)
