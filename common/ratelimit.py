"""Rate limits that hold across processes: atomic counters in a shared cache.

`settings.RATE_LIMITS` declares every limit once, by name (`<what>_per_<key>`) and rate
(`"20/m"`, `"10/15m"`, `"off"`); the name's last part says what is counted per:
`ip` (the client address, `common.clientip`), `cart` (the object the URL names) or
`username` (the `username` of the body). Views name the limits they apply:

    class CartViewSet(RateLimitedMixin, viewsets.GenericViewSet):
        rate_limits = {"create": ["cart_create_per_ip"], "pay": ["pay_per_cart"]}

    class StaffTokenView(APIView):
        throttle_classes = [rate_limit("token_per_ip", fail_closed=True)]

They plug into DRF's throttling hook (checked after authentication and permissions,
before the view runs), but DRF's own throttles keep a list of timestamps that
concurrent requests read and write without a lock ("not a security feature", says its
documentation). Here every request is one atomic increment: `cache.add` creates the
window's counter, `cache.incr` (Redis INCRBY, or LocMemCache under its lock) counts,
so N concurrent requests see N distinct counts and exactly `limit` of them pass.
Windows are fixed, `period` seconds long, each key's shifted by a stable offset so they
do not all end together. Over the limit: `429 too_many_requests` with `Retry-After` (the
seconds until the window ends), in the error shape.

The counters live in `caches["ratelimit"]`: Redis through django-redis when `REDIS_URL`
is set (Compose, production: shared by every process), local memory otherwise (`make
run`: one process, nothing to install). Keys are hashes: no address or username is
stored in clear. If the store is unreachable, a limit made with `fail_closed=True` (the
token endpoint's: unlimited password guesses are worse than no tokens for a while)
refuses the request with `503 rate_limit_unavailable`; the others let it through with a
warning logged (`RATELIMIT_FAIL_OPEN`, default true: the shop keeps selling, and what
they protect has other guards: codes give no oracle and reservations bound their use,
a cart is paid once) or refuse it too when `RATELIMIT_FAIL_OPEN` is false.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

from common.clientip import client_ip
from common.errors import ApplicationError

logger = logging.getLogger(__name__)

CACHE_ALIAS = "ratelimit"
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"(\d+)/(\d*)([smhd])")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """`"20/m"` → Rate(20, 60); `"10/15m"` → Rate(10, 900); `"off"` → None."""
        text = text.strip().lower()
        if text in {"off", "none", ""}:
            return None
        match = _RATE.fullmatch(text)
        if not match or match.group(2) == "0":
            raise ValueError(
                f"{text!r} is not a rate: use N/period such as 20/m, 10/15m, 100/h or off."
            )
        count, multiple, unit = match.groups()
        return cls(int(count), int(multiple or 1) * _PERIODS[unit])


@functools.lru_cache(maxsize=64)
def rate_of(text: str) -> Rate | None:
    """`Rate.parse(text)`, parsed once per text (a Rate is immutable, so shared): every
    limited request reads its rate from settings, and parsing it (strip, lower, a regex)
    each time was ~1 % of an apply's CPU. Keyed by the text, not read once per process:
    a changed `RATE_LIMITS` (tests' `settings` fixture, override_settings) is read anew."""
    return Rate.parse(text)


@dataclass(frozen=True)
class Usage:
    count: int
    limit: int
    retry_after: int  # seconds until this window ends

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit


class RateLimitUnavailableError(ApplicationError):
    status_code = 503
    code = "rate_limit_unavailable"
    message = "The service cannot check its rate limits right now; retry shortly."


def rate_limit_hit(*, name: str, key: str, rate: Rate) -> Usage:
    """Count one request for `key` under the limit `name`, atomically, and say whether it
    is within `rate`. Raises whatever the cache raises when it is unreachable."""
    now = time.time()
    cache_key, end = window(name=name, key=key, rate=rate, at=now)
    cache = caches[CACHE_ALIAS]
    # Counting first: every request but a window's first finds its counter, so one
    # operation (one Redis round trip) instead of two.
    try:
        count = cache.incr(cache_key)
    except ValueError:  # no counter yet: this request opens the window
        count = 1 if cache.add(cache_key, 1, timeout=rate.period + 1) else cache.incr(cache_key)
    return Usage(count=count, limit=rate.limit, retry_after=max(1, math.ceil(end - now)))


def window(*, name: str, key: str, rate: Rate, at: float) -> tuple[str, float]:
    """The counter's cache key for the window holding `at`, and when that window ends."""
    digest = hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()[:32]
    offset = int(digest[:8], 16) % rate.period
    start = math.floor((at - offset) / rate.period) * rate.period + offset
    # Keyed by its length too: a limit's period changed (2/m to 1/h) opens a window that
    # may start when the old one did, and must not count on from the old one's requests.
    return f"{name}:{digest}:{rate.period}:{start}", start + rate.period


# --- What a limit counts per -----------------------------------------------------------


def _per_ip(request, view) -> str:
    return client_ip(request)


def _per_url_object(request, view) -> str:
    lookup = getattr(view, "lookup_url_kwarg", None) or getattr(view, "lookup_field", "pk")
    value = str(view.kwargs.get(lookup, ""))
    try:  # one budget per object, however its id is spelled (case, dashes)
        return str(uuid.UUID(value))
    except ValueError:
        return value.lower()


def _per_username(request, view) -> str | None:
    data = request.data
    username = data.get("username") if isinstance(data, dict) else None
    if not isinstance(username, str):
        return None
    # As the login form reads it (surrounding spaces dropped), and case-folded: "Admin"
    # and " admin" share one budget whatever the user model says.
    return username.strip().casefold()[:150] or None


KEY_FUNCTIONS = {"ip": _per_ip, "cart": _per_url_object, "username": _per_username}


def key_kind(name: str) -> str:
    kind = name.rpartition("_per_")[2]
    if kind not in KEY_FUNCTIONS:
        raise ValueError(f"Rate limit {name!r} must end with _per_<{'|'.join(KEY_FUNCTIONS)}>.")
    return kind


# --- How views apply them --------------------------------------------------------------


class RateLimit(BaseThrottle):
    """One limit of `settings.RATE_LIMITS` as a DRF throttle (see `rate_limit`)."""

    name = ""
    fail_closed = False

    def allow_request(self, request, view) -> bool:
        rate = rate_of(settings.RATE_LIMITS[self.name])
        if rate is None:
            return True
        key = KEY_FUNCTIONS[key_kind(self.name)](request, view)
        if not key:
            return True  # nothing to count on (no username sent: the view refuses it)
        try:
            self.usage = rate_limit_hit(name=self.name, key=key, rate=rate)
        except Exception as exc:  # the shared store is down: no limit can be known
            logger.warning("Rate limit %s not checked: %s: %s", self.name, type(exc).__name__, exc)
            if settings.RATELIMIT_FAIL_OPEN and not self.fail_closed:
                return True
            raise RateLimitUnavailableError() from None
        return self.usage.allowed

    def wait(self) -> int:
        return self.usage.retry_after


@functools.cache  # one class per limit, not one per request
def rate_limit(name: str, *, fail_closed: bool = False) -> type[RateLimit]:
    """The throttle class applying `settings.RATE_LIMITS[name]`; `fail_closed`: refuse
    (503) rather than let through when the store is unreachable, whatever
    `RATELIMIT_FAIL_OPEN` says."""
    key_kind(name)
    attrs = {"name": name, "fail_closed": fail_closed}
    return type(f"RateLimit_{name}", (RateLimit,), attrs)


class RateLimitedMixin:
    """For viewsets: `rate_limits` maps an action to the names of the limits it applies."""

    rate_limits: dict[str, list[str]] = {}

    def get_throttles(self):
        return [rate_limit(name)() for name in self.rate_limits.get(self.action, ())]
