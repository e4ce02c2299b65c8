"""The error side of the OpenAPI schema: one `Error` component and the statuses that use it.

drf-spectacular describes each endpoint's success answer from its serializer. This
post-processing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]) adds the `Error`
shape of `common.errors` and, to every operation, the error statuses it can answer:

    400 bad input · 401/403 access · 404 unknown id · 406 Accept · 413/415 body size/type
    409 frozen cart · 402 declined · 429 rate limited · 502/503/504 provider trouble (pay)
"""

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
    "description": "Every error answer. `error` repeats the first of `error.details`.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field", "details"],
            "properties": {
                **_PROBLEM["properties"],
                "details": {"type": "array", "items": _PROBLEM},
                "decline_code": {
                    "type": "string",
                    "description": "402 only: why the card was declined.",
                },
            },
        },
        "payment_taken": {
            "type": "boolean",
            "nullable": True,
            "description": "Provider trouble: false = nothing charged; null = not known yet.",
        },
        "retryable": {"type": "boolean"},
        "cart": {"$ref": "#/components/schemas/Cart"},
        "payment": {"$ref": "#/components/schemas/Payment"},
    },
}

_DESCRIPTIONS = {
    "400": "Invalid input; `error.field` names the field.",
    "401": "Authentication required or failed.",
    "402": "The card was declined; the answer holds the cart and the payment.",
    "403": "Not allowed.",
    "404": "No such resource.",
    "406": "The Accept header asks for something other than JSON.",
    "409": "The resource's state forbids this now (e.g. a paid cart).",
    "413": "The request body is too large.",
    "415": "The body is not JSON.",
    "429": "Too many requests: wait the seconds the Retry-After header says.",
    "502": "The payment provider answered nonsense; nothing was charged.",
    "503": "The payment provider is unavailable; nothing was charged.",
    "504": "The payment provider was too slow.",
}


# Operations with a limit of settings.RATE_LIMITS besides apply_discount and pay.
_RATE_LIMITED_POSTS = ("/api/cart/", "/api/auth/token/")


def _statuses(path: str, method: str, operation: dict) -> list[str]:
    statuses = ["400", "401", "403", "406"]
    if "{" in path:
        statuses.append("404")
    if "requestBody" in operation:
        statuses += ["413", "415"]
    if method == "post" and (
        path.endswith(("/apply_discount/", "/pay/")) or path in _RATE_LIMITED_POSTS
    ):
        statuses.append("429")
    if path.endswith(("/apply_discount/", "/pay/")) or method in ("put", "patch"):
        statuses.append("409")
    if path.endswith("/pay/"):
        statuses += ["402", "502", "503", "504"]
    return statuses


def add_error_responses(result: dict, generator, request, public) -> dict:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                responses[status] = {
                    "description": _DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ERROR_REF}},
                }
    return result
