"""The one error type of the service and the JSON shape every error is answered with.

Domain code raises an `ApplicationError` subclass (`DiscountExpiredError`, `CartFrozenError`,
…) that names its HTTP status, a machine-readable `code` and, where there is one, the
request `field` at fault. `common.exception_handler` turns those, DRF's own exceptions and
Django's error pages into a single JSON shape:

    {"error": {"code": "discount_expired", "message": "This discount code has expired.",
               "field": "code", "details": [{"field": "code", "code": "discount_expired",
                                              "message": "This discount code has expired."}]}}

`details` lists every problem (several for a form with several bad fields); `code`,
`message` and `field` repeat the first one so simple clients can read one place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import JsonResponse
from rest_framework import status


class ApplicationError(Exception):
    """Base of every domain error. Subclasses set `status_code`, `code` and `message`.

    An error whose answer carries more than `error` (the cart after a decline, whether a
    payment was taken) says so in `extra_schema`: the OpenAPI schema of those members,
    which the API docs show on exactly the statuses where the error occurs
    (`common.schema`). A key `"error"` there describes members added inside `error`.
    """

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid_request"
    message = "The request cannot be processed."
    field: str | None = None
    extra_schema: ClassVar[dict[str, dict]] = {}

    def __init__(
        self, message: str | None = None, *, field: str | None = None, extra: dict | None = None
    ):
        self.message = message or self.message
        self.field = field or self.field
        # Extra top-level members of the error response (e.g. the cart after a decline).
        self.extra = {**self.extra_members(), **(extra or {})}
        super().__init__(self.message)

    @classmethod
    def extra_members(cls) -> dict[str, Any]:
        """Members every answer of this error carries beside `error` (docs example too)."""
        return {}

    def body(self) -> dict[str, Any]:
        """The JSON answer: the one error shape plus this error's extra members."""
        body = error_body(self.code, self.message, self.field)
        for name, value in self.extra.items():
            if name == "error":
                body["error"].update(value)
            else:
                body[name] = value
        return body


class ConflictError(ApplicationError):
    """The request is valid but the resource's state forbids it right now."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


def error_body(
    code: str, message: str, field: str | None = None, details: list[dict] | None = None
) -> dict[str, Any]:
    if details is None:
        details = [{"field": field, "code": code, "message": message}]
    return {"error": {"code": code, "message": message, "field": field, "details": details}}


def json_error_response(code: str, message: str, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)
