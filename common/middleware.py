"""What every request meets first, before any view or middleware reads it.

- `TrustedProxyMiddleware` removes forwarded headers (`X-Forwarded-For`, `-Proto`, …)
  that did not come from a trusted proxy (`settings.TRUSTED_PROXIES`, see
  `common.clientip`), so `request.is_secure()` and client addresses cannot be forged.
- `RequestBodyGuardMiddleware` answers, in the JSON error shape, a body larger than
  `DATA_UPLOAD_MAX_MEMORY_SIZE` with `413 payload_too_large` (Django would log an ERROR
  traceback and answer 400), and a body sent without `Content-Length` (chunked) straight
  to the application server with `411 length_required`: Django reads a body only up to
  its declared length, so it would see an empty body. The reverse proxy buffers chunked
  bodies and sends them with a length, so behind it this never happens.

    MIDDLEWARE = ["common.middleware.TrustedProxyMiddleware",
                  "common.middleware.RequestBodyGuardMiddleware", ...]
"""

from django.conf import settings

from common.clientip import FORWARDED_HEADERS, is_trusted_proxy
from common.errors import json_error_response


class TrustedProxyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            for name in FORWARDED_HEADERS:
                request.META.pop(name, None)
        return self.get_response(request)


class RequestBodyGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        declared = request.META.get("CONTENT_LENGTH")
        if declared:
            try:
                too_big = limit is not None and int(declared) > limit
            except ValueError:
                too_big = False  # Django reads such a body as empty, like no body
            if too_big:
                return json_error_response(
                    "payload_too_large",
                    f"The request body is larger than {limit} bytes.",
                    413,
                )
        elif request.META.get("HTTP_TRANSFER_ENCODING"):
            return json_error_response(
                "length_required",
                "Send the request body with a Content-Length header (not chunked).",
                411,
            )
        return self.get_response(request)
