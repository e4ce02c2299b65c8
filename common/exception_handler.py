"""DRF's EXCEPTION_HANDLER: every exception raised in a view becomes the one error shape.

`ApplicationError`s carry their own status and code; DRF's exceptions (validation, 404,
405, 406, 415, malformed JSON, authentication, permission) keep their status and get
their code and message moved into the shape described in `common.errors`. Anything else
is a bug: it is logged and Django answers with the JSON 500 of `common.views`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.fields import get_error_detail
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.errors import ApplicationError, error_body

logger = logging.getLogger(__name__)

# DRF's codes, renamed where a client would not guess them.
RENAMED_CODES = {"parse_error": "malformed_json"}


def _flatten(detail: Any, path: str | None = None) -> list[dict]:
    """Turn DRF's nested {field: [ErrorDetail]} into a flat list of field problems."""
    if isinstance(detail, dict):
        problems = []
        for key, value in detail.items():
            if key == "non_field_errors":
                child = path
            else:
                child = f"{path}.{key}" if path else str(key)
            problems.extend(_flatten(value, child))
        return problems
    if isinstance(detail, list):
        problems = []
        for index, value in enumerate(detail):
            nested = isinstance(value, (dict, list))
            problems.extend(_flatten(value, f"{path}.{index}" if nested and path else path))
        return problems
    code = getattr(detail, "code", None) or "invalid"
    return [{"field": path, "code": RENAMED_CODES.get(code, code), "message": str(detail)}]


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.body(), status=exc.status_code, headers=exc.headers or None)

    if isinstance(exc, RequestDataTooBig):
        # Normally answered by common.middleware before a view runs; this is the fallback.
        body = error_body("payload_too_large", "The request body is too large.")
        return Response(body, status=413)

    if isinstance(exc, DjangoValidationError):
        # A model rule enforced below the serializer (e.g. re-checked under a row lock).
        exc = exceptions.ValidationError(get_error_detail(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    # DRF sets the status, and the WWW-Authenticate and Allow headers.
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view"))
        return None

    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail) or [
            {"field": None, "code": "invalid", "message": "Invalid input."}
        ]
        first = details[0]
        response.data = error_body(first["code"], first["message"], first["field"], details)
    elif isinstance(exc, exceptions.Throttled):
        # A rate limit of common.ratelimit; DRF has set the Retry-After header.
        message = f"Too many requests: retry in {exc.wait} seconds."
        response.data = error_body("too_many_requests", message)
    else:
        code = getattr(exc.detail, "code", None) or exc.default_code
        response.data = error_body(RENAMED_CODES.get(code, code), str(exc.detail))
    return response
