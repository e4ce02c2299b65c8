"""The API docs: what each operation says to its caller, and every error it can answer.

An operation is documented with one declaration on its view method:

    @documented(
        summary="Pay the cart through the payment provider",
        description="Charges the cart's total once…",
        request_example={"payment_method": "pm_card_visa"},
        responses={200: (CartPaymentSerializer, PAID_EXAMPLE)},
        errors=[CartPaidError, CardDeclinedError, field_error("Idempotency-Key", "invalid", …)],
    )

(or `extend_schema_view(create=documented(…))` for the methods a viewset inherits).
`errors` names the domain errors the operation answers: `ApplicationError` subclasses
and DRF exceptions, which already know their status, code and message, and
`field_error`s for validation codes raised as Django `ValidationError`s (a model's
`clean()`). `AutoSchema` adds what any operation of its kind can answer: 400 for each
field of the request body, filter or cursor; 401/403 from its authentication and
permissions (and the errors they declare in `documented_errors`); 404 for a path id;
406; 413, 415 and `malformed_json` with a body; 429 where a rate limit applies.

Per status, the schema then holds a response whose `error.code` is an enum of exactly
those codes, with one named example per code, and the extra members (`payment_taken`,
`cart`, …) only where an error of that status has them (`ApplicationError.extra_schema`).
`error_table()` renders the same declarations as the README's error table. Docstrings are
never used as descriptions (DISABLE_DOCSTRING_DESCRIPTIONS): they speak to developers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http
import string
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django import forms
from drf_spectacular import openapi
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, serializers
from rest_framework.authentication import SessionAuthentication

from common.errors import ApplicationError
from common.exception_handler import RENAMED_CODES
from common.ratelimit import RateLimitUnavailableError

ERROR_REF = {"$ref": "#/components/schemas/Error"}

_PROBLEM = {
    "type": "object",
    "required": ["field", "code", "message"],
    "properties": {
        "field": {
            "type": "string",
            "nullable": True,
            "description": "The request field at fault (dotted for nested ones), or null.",
        },
        "code": {"type": "string", "description": "Machine-readable reason."},
        "message": {"type": "string", "description": "For people."},
    },
}

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer. `error` repeats the first of `error.details`. Each "
    "operation lists, per status, the codes it can answer.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field", "details"],
            "properties": {
                **_PROBLEM["properties"],
                "details": {"type": "array", "items": _PROBLEM},
            },
        },
    },
}

_DESCRIPTIONS = {
    400: "Invalid input; `error.field` names the field.",
    401: "Authentication required or failed.",
    402: "Declined: the card (pay) or the refund; the answer holds the cart and the "
    "payment or the refund.",
    403: "Not allowed.",
    404: "No such resource.",
    406: "The Accept header asks for something other than JSON.",
    409: "The resource's state forbids this now (e.g. a paid cart, a refund above what was "
    "charged, an earlier payment whose outcome is not known yet).",
    413: "The request body is too large.",
    415: "The body is not JSON.",
    429: "Too many requests: wait the seconds the Retry-After header says.",
    502: "The payment provider refused the request: nothing done (`payment_taken` / "
    "`refund_made`: false).",
    503: "The payment provider is unavailable (proven: nothing done), or this server already "
    "waits on it for as many calls as it allows (`payment_provider_busy`, `Retry-After`).",
    504: "The payment provider did not confirm what it did (`payment_taken` / `refund_made`: "
    "null): retry with the same Idempotency-Key.",
}


# What DRF's messages name, in the examples ("Unsupported media type "{media_type}"…").
_EXAMPLE_REQUEST = types.SimpleNamespace(media_type="text/plain", method="DELETE")


@dataclasses.dataclass(frozen=True)
class ErrorDoc:
    """One error an operation can answer, as the docs show it."""

    status: int
    code: str
    message: str
    field: str | None = None
    extra_schema: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extra_example: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, error: type[Exception] | ErrorDoc, /, **example: Any) -> ErrorDoc:
        """Describe an `ApplicationError` or DRF exception class; `example` adds values
        of its extra members to its example (e.g. the cart after a decline)."""
        if isinstance(error, ErrorDoc):
            return error
        if issubclass(error, ApplicationError):
            members = error.extra_members()
            return cls(
                status=error.status_code,
                code=error.code,
                message=error.message,
                field=error.field,
                extra_schema=error.extra_schema,
                extra_example=_merge(members, example),
            )
        if issubclass(error, exceptions.APIException):
            code = RENAMED_CODES.get(error.default_code, error.default_code)
            message = _format(error.default_detail, _EXAMPLE_REQUEST)
            return cls(status=error.status_code, code=code, message=message)
        raise TypeError(f"{error!r} is neither an ApplicationError nor a DRF exception")

    def example(self) -> dict[str, Any]:
        problem = {"field": self.field, "code": self.code, "message": self.message}
        body: dict[str, Any] = {"error": {**problem, "details": [problem]}}
        return _merge(body, self.extra_example)


def field_error(field: str | None, code: str, message: str, status: int = 400) -> ErrorDoc:
    """A validation code raised as a Django/DRF `ValidationError` (e.g. in a model's
    `clean()`), with the field it names."""
    return ErrorDoc(status=status, code=code, message=message, field=field)


def documented(
    *,
    summary: str,
    description: str,
    responses: Mapping[int, tuple[Any, Any]],
    request: Any = None,
    request_example: Any = None,
    errors: Sequence[type[Exception] | ErrorDoc] = (),
    **extend_schema_kwargs: Any,
):
    """`extend_schema` with this service's conventions (see the module docstring).

    `responses` maps each success status to `(serializer, example value)`. A request body
    must have an example: Swagger UI would otherwise offer invented values ("string")
    that fail. Returns a decorator for a view method.
    """
    examples = list(extend_schema_kwargs.pop("examples", []))
    if request_example is not None:
        examples.insert(0, OpenApiExample("Example", value=request_example, request_only=True))
    schema_kwargs = {
        "summary": summary,
        "description": description,
        "responses": {
            status: OpenApiResponse(
                serializer,
                description=http.HTTPStatus(status).phrase,
                examples=[OpenApiExample("Example", value=example, status_codes=[status])],
            )
            for status, (serializer, example) in responses.items()
        },
        "examples": examples,
        **extend_schema_kwargs,
    }
    if request is not None:
        schema_kwargs["request"] = request

    def decorator(view_method):
        view_method = extend_schema(**schema_kwargs)(view_method)
        view_method.documented_errors = tuple(ErrorDoc.of(error) for error in errors)
        return view_method

    return decorator


MALFORMED_JSON = field_error(
    None, "malformed_json", "Malformed JSON: Expecting value: line 1 column 12 (char 11)"
)
PAYLOAD_TOO_LARGE = field_error(
    None, "payload_too_large", "The request body is larger than 262144 bytes.", status=413
)
TOO_MANY_REQUESTS = field_error(
    None, "too_many_requests", "Too many requests: retry in 42 seconds.", status=429
)


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema plus the errors each operation can answer."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        by_status: dict[int, list[ErrorDoc]] = {}
        for error in (*self.generic_errors(), *self.declared_errors()):
            same_status = by_status.setdefault(error.status, [])
            if error.code not in {e.code for e in same_status}:
                same_status.append(error)
        for status, errors in sorted(by_status.items()):
            responses[str(status)] = self._get_response_for_code(
                error_response(status, errors), str(status)
            )
        return responses

    def get_auth(self):
        # An operation open to anyone shows no lock: it needs no token (a token sent is
        # still checked, hence its 401 `authentication_failed`).
        if self._open_to_all():
            return []
        return super().get_auth()

    def _open_to_all(self) -> bool:
        return all(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())

    def declared_errors(self) -> tuple[ErrorDoc, ...]:
        method = getattr(self.view, getattr(self.view, "action", None) or self.method.lower())
        return getattr(method, "documented_errors", ())

    def generic_errors(self) -> list[ErrorDoc]:
        """What any operation like this one can answer, whatever it does."""
        errors = []
        if self._has_body():
            errors.append(MALFORMED_JSON)
            serializer = force_instance(self.get_request_serializer())
            errors.extend(serializer_errors(serializer, partial=self.method == "PATCH"))
        if self._is_list_view():
            errors.extend(self._query_errors())
        authenticators = self.view.get_authenticators()
        if authenticators:
            errors.append(ErrorDoc.of(exceptions.AuthenticationFailed))
        open_to_all = self._open_to_all()
        if not open_to_all:
            errors.append(ErrorDoc.of(exceptions.NotAuthenticated))
        csrf_checked = self.method not in ("GET", "HEAD", "OPTIONS") and any(
            isinstance(a, SessionAuthentication) for a in authenticators
        )
        if csrf_checked or not open_to_all:
            errors.append(ErrorDoc.of(exceptions.PermissionDenied))
        if "{" in self.path:
            errors.append(ErrorDoc.of(exceptions.NotFound))
        errors.append(ErrorDoc.of(exceptions.NotAcceptable))
        if self._has_body():
            errors.append(ErrorDoc.of(exceptions.UnsupportedMediaType))
            errors.append(PAYLOAD_TOO_LARGE)
        if self.view.get_throttles():  # the limits of common.ratelimit it applies
            errors.append(TOO_MANY_REQUESTS)
            errors.append(ErrorDoc.of(RateLimitUnavailableError))
        # What an authentication or permission class says it answers (storefront keys).
        for part in (*authenticators, *self.view.get_permissions()):
            errors.extend(getattr(part, "documented_errors", ()))
        return errors

    def _has_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH")

    def _query_errors(self) -> list[ErrorDoc]:
        errors = []
        filterset_class = getattr(self.view, "filterset_class", None)
        for name, query_filter in (
            filterset_class.base_filters if filterset_class else {}
        ).items():
            errors.extend(form_field_errors(name, query_filter.field))
        paginator = self._get_paginator()
        if paginator is not None and hasattr(paginator, "cursor_query_param"):
            errors.append(
                field_error(
                    paginator.cursor_query_param,
                    "invalid_cursor",
                    "This cursor was not handed out by this list.",
                )
            )
        return errors


def error_response(status: int, errors: Sequence[ErrorDoc]) -> OpenApiResponse:
    """One status's response: `error.code` restricted to `errors`' codes, their extra
    members, and one example per code."""
    codes = [error.code for error in errors]
    narrowed: dict[str, Any] = {
        "type": "object",
        "properties": {
            "error": {"type": "object", "properties": {"code": {"type": "string", "enum": codes}}}
        },
    }
    for error in errors:
        for name, schema in error.extra_schema.items():
            if name == "error":
                narrowed["properties"]["error"]["properties"].update(schema)
            else:
                narrowed["properties"][name] = schema
    description = _DESCRIPTIONS.get(status) or http.HTTPStatus(status).phrase
    return OpenApiResponse(
        {"allOf": [ERROR_REF, narrowed]},
        description=f"{description} Codes: {', '.join(f'`{c}`' for c in codes)}.",
        examples=[
            OpenApiExample(
                error.code, value=error.example(), summary=error.code, description=error.message
            )
            for error in errors
        ],
    )


# --- Validation codes of the request's fields ----------------------------------------

# What each kind of DRF field refuses on its own, beyond its validators' codes.
_FIELD_CODES: list[tuple[type, tuple[str, ...]]] = [
    (serializers.ChoiceField, ("invalid_choice",)),
    (serializers.BooleanField, ("invalid",)),
    (serializers.DateTimeField, ("invalid", "overflow")),
    (
        serializers.DecimalField,
        ("invalid", "max_string_length", "max_digits", "max_decimal_places", "max_whole_digits"),
    ),
    (serializers.IntegerField, ("invalid", "max_string_length")),
    (serializers.CharField, ("invalid",)),
]


def serializer_errors(serializer, *, partial: bool = False) -> list[ErrorDoc]:
    """The 400 codes a request serializer answers (`partial`: a PATCH, nothing required)."""
    if serializer is None or not isinstance(serializer, serializers.BaseSerializer):
        return []
    errors = [
        field_error(
            None, "invalid", "Invalid data. Expected a dictionary, but got list."
        )  # a body that is not an object
    ]
    for name, drf_field in serializer.fields.items():
        if not drf_field.read_only:
            errors.extend(_drf_field_errors(name, drf_field, partial=partial))
    return errors


def _drf_field_errors(name: str, drf_field, *, partial: bool) -> Iterable[ErrorDoc]:
    codes: list[str] = []
    if drf_field.required and not partial:
        codes.append("required")
    if not drf_field.allow_null:
        codes.append("null")
    if isinstance(drf_field, serializers.CharField) and not drf_field.allow_blank:
        codes.append("blank")
    for kind, kind_codes in _FIELD_CODES:
        if isinstance(drf_field, kind):
            codes.extend(kind_codes)
            break
    if isinstance(drf_field, (serializers.ListField, serializers.ListSerializer)):
        # A list, and what each of its items answers (`lines.0.sku`).
        codes.extend(("not_a_list", "empty"))
        if isinstance(drf_field, serializers.ListSerializer):
            codes.extend(("min_length", "max_length"))
        child = drf_field.child
        if isinstance(child, serializers.BaseSerializer):
            yield field_error(f"{name}.0", "invalid", "Invalid data. Expected a dictionary.")
            for child_name, child_field in child.fields.items():
                if not child_field.read_only:
                    yield from _drf_field_errors(
                        f"{name}.0.{child_name}", child_field, partial=False
                    )
        elif child is not None:
            yield from _drf_field_errors(f"{name}.0", child, partial=False)
    for code in codes:
        yield field_error(name, code, _format(drf_field.error_messages.get(code, code), drf_field))
    yield from _validator_errors(name, drf_field.validators)


def form_field_errors(name: str, form_field: forms.Field) -> list[ErrorDoc]:
    """The 400 codes of a query filter (a Django form field)."""
    codes = ["invalid_choice"] if isinstance(form_field, forms.ChoiceField) else []
    if not isinstance(form_field, (forms.ChoiceField, forms.CharField)):
        codes.append("invalid")
    if "overflow" in form_field.error_messages:  # common.api.UTCDateTimeField
        codes.append("overflow")
    errors = [
        field_error(name, code, _format(form_field.error_messages[code], form_field))
        for code in codes
    ]
    return errors + list(_validator_errors(name, form_field.validators))


def _validator_errors(name: str, validators) -> Iterable[ErrorDoc]:
    for validator in validators:
        code = getattr(validator, "code", None)
        if code:
            yield field_error(name, code, _format(str(validator.message), validator))


class _Placeholders(dict):
    def __init__(self, source):
        super().__init__()
        self.source = source

    def __missing__(self, key):
        value = getattr(self.source, key, None)
        return "…" if value is None else value


def _format(message: Any, source) -> str:
    """A field's message with its placeholders filled in from the field where it can."""
    text = str(message)
    values = _Placeholders(source)
    with contextlib.suppress(ValueError, IndexError, KeyError):
        text = string.Formatter().vformat(text, (), values)
    try:
        return text % values
    except (TypeError, ValueError, KeyError):
        return text


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


# --- Post-processing -------------------------------------------------------------------


def add_error_component(result: dict, generator, request, public) -> dict:
    """POSTPROCESSING_HOOKS: the `Error` component every error response refers to."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    return result


# Codes any operation may answer because of what it is (a body, a path id, filters, who
# may call it), not because of what it does: the README lists them once.
GENERIC_CODES = frozenset(
    {
        "required",
        "null",
        "blank",
        "malformed_json",
        "payload_too_large",
        "invalid_cursor",
        "max_length",
        "min_length",
        "max_value",
        "min_value",
        "null_characters_not_allowed",
        "surrogate_characters_not_allowed",
        *(code for _, codes in _FIELD_CODES for code in codes),
        *(
            ErrorDoc.of(error).code
            for error in (
                exceptions.AuthenticationFailed,
                exceptions.NotAuthenticated,
                exceptions.PermissionDenied,
                exceptions.NotFound,
                exceptions.NotAcceptable,
                exceptions.UnsupportedMediaType,
            )
        ),
    }
)

_GENERIC_WHEN = {
    "400": "a field of the body, a filter or the cursor is invalid (`error.field` names it)",
    "401": "a token is wrong, or missing where one is needed",
    "403": "not staff where staff is needed, or a session without its CSRF token",
    "404": "no such id",
    "406": "the Accept header asks for something other than JSON",
    "413": "the body is larger than `REQUEST_BODY_MAX_BYTES`",
    "415": "the body is not JSON",
}


def error_table(schema: dict) -> str:
    """The README's error table, from the schema: the codes any operation may answer for
    what it is, then per operation the ones it answers for what it does.

    Generated, so the README cannot drift from the declarations
    (`python manage.py error_table --write` rewrites it; a test checks it).
    """
    generic: dict[str, list[str]] = {}
    rows = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            specific = {}
            for status, codes in _codes_by_status(operation).items():
                for code in codes:
                    if code in GENERIC_CODES:
                        if code not in generic.setdefault(status, []):
                            generic[status].append(code)
                    else:
                        specific.setdefault(status, []).append(code)
            rows.append(f"| `{method.upper()} {path}` | {_cells(specific) or '-'} |")
    lines = ["| status | codes | when |", "|---|---|---|"]
    for status, codes in sorted(generic.items()):
        lines.append(f"| {status} | {_codes(codes)} | {_GENERIC_WHEN.get(status, '')} |")
    lines += ["", "| operation | and for what it does |", "|---|---|", *rows]
    return "\n".join(lines) + "\n"


def _codes_by_status(operation: dict) -> dict[str, list[str]]:
    codes = {}
    for status, response in sorted(operation["responses"].items()):
        if status < "400":
            continue
        schema = response["content"]["application/json"]["schema"]
        narrowed = schema["allOf"][1]["properties"]["error"]["properties"]["code"]
        codes[status] = narrowed["enum"]
    return codes


def _codes(codes: Iterable[str]) -> str:
    return ", ".join(f"`{code}`" for code in codes)


def _cells(codes: Mapping[str, list[str]]) -> str:
    return "<br>".join(f"{status}: {_codes(cs)}" for status, cs in codes.items())
