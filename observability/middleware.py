"""The first and last thing every request meets: its request id, its log line, its metrics.

    MIDDLEWARE = ["observability.middleware.RequestObservabilityMiddleware", ...]

- The request id is the caller's `X-Request-ID` when it is usable (`context`), or a new
  one; it is bound for the whole request (every log line carries it, the provider
  receives it, new ledger rows keep it) and returned on every answer, errors included.
- One log line per request on the `service.request` logger: method, route template,
  status, duration, request id and the cart id when the URL names one or the answer
  created one. Its level says who has to act: INFO for answers the API documents
  (4xx included), WARNING for 502/503/504 with the JSON error shape (the provider is in
  trouble and the caller was told so), ERROR for a 500 (a bug). Django's own
  `django.request` line for the same answer is suppressed: it would log a documented
  503 at ERROR.
- Request count and latency per route template, and every error code answered
  (`observability.metrics`).
"""

from __future__ import annotations

import json
import logging
import re
import time

from observability import metrics
from observability.context import HEADER, accepted_request_id, new_request_id, request_id_bound

logger = logging.getLogger("service.request")

_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")
UNMATCHED_ROUTE = "<unmatched>"


def route_template(request) -> str:
    """`/api/cart/{pk}/pay/` for a router's regex route: few distinct values, so it can
    label a metric (the path itself would make one series per cart)."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return UNMATCHED_ROUTE
    route = _GROUP.sub(lambda group: "{" + group.group(1) + "}", match.route)
    route = route.replace("^", "").replace("$", "").replace("/?", "/").replace("\\", "")
    return "/" + route


def error_code(response) -> str | None:
    """The `error.code` of an answer in the service's error shape."""
    data = getattr(response, "data", None)
    if data is None and response.get("Content-Type", "").startswith("application/json"):
        try:
            data = json.loads(response.content)
        except (ValueError, AttributeError):
            return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = data["error"].get("code")
        return code if isinstance(code, str) else None
    return None


def cart_id(request, response) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None or not (match.url_name or "").startswith("cart-"):
        return None
    if "pk" in match.kwargs:
        return str(match.kwargs["pk"])
    data = getattr(response, "data", None)
    if response.status_code == 201 and isinstance(data, dict) and "id" in data:
        return str(data["id"])
    return None


def log_level(status: int, code: str | None) -> int:
    if status in (502, 503, 504) and code:
        return logging.WARNING
    if status >= 500:
        return logging.ERROR
    return logging.INFO


class RequestObservabilityMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accepted_request_id(request.META.get("HTTP_X_REQUEST_ID")) or new_request_id()
        request.request_id = request_id
        started = time.perf_counter()
        with request_id_bound(request_id):
            response = self.get_response(request)
            duration = time.perf_counter() - started
            response[HEADER] = request_id
            self._record(request, response, duration)
        return response

    def _record(self, request, response, duration: float) -> None:
        route = route_template(request)
        status = response.status_code
        code = error_code(response) if status >= 400 else None
        cart = cart_id(request, response)
        metrics.observe_request(
            method=request.method, route=route, status=status, seconds=duration, code=code
        )
        logger.log(
            log_level(status, code),
            "%s %s %s %.1fms%s",
            request.method,
            route,
            status,
            duration * 1000,
            f" {code}" if code else "",
            extra={
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": status,
                "duration_ms": round(duration * 1000, 1),
                "cart_id": cart,
                "error_code": code,
            },
        )
        # This line replaces django.request's, which logs every 5xx at ERROR.
        response._has_been_logged = True
