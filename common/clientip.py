"""Who is calling: the client's IP address, believed only where a trusted proxy says it.

    client_ip(request)           # "203.0.113.7"; the key of every per-IP rate limit
    is_trusted_proxy("10.0.3.4")  # True when 10.0.0.0/8 is in settings.TRUSTED_PROXIES

`REMOTE_ADDR` is the peer of the TCP connection and cannot be forged. When that peer is a
trusted proxy (`TRUSTED_PROXIES`: addresses, CIDRs, or host names such as Compose's
`nginx`, looked up again every `RESOLVE_EVERY` seconds so a restarted proxy is found), the
client is the right-most address of `X-Forwarded-For` that is not itself a trusted
proxy: each proxy appends the peer it saw, so everything left of that entry was written
by the client and is ignored. Without trusted proxies (`make run`), forwarded headers
are never read; `common.middleware.TrustedProxyMiddleware` even removes them, so
`X-Forwarded-Proto` (`SECURE_PROXY_SSL_HEADER`) cannot be forged either.

IPv6 clients are keyed by their /64 network: one host usually holds a whole /64, and
per-address limits would be no limits at all.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from functools import lru_cache

from django.conf import settings

IPV6_PREFIX = 64
FORWARDED_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


RESOLVE_EVERY = 30.0  # seconds


def _network(entry: str):
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None  # a host name


@lru_cache(maxsize=8)
def _static_networks(entries: tuple[str, ...]) -> tuple:
    return tuple(n for n in map(_network, entries) if n is not None)


_resolved: dict[str, tuple[float, tuple]] = {}
_resolving = threading.Lock()


def _host_networks(entries: tuple[str, ...]) -> tuple:
    hosts = [entry for entry in entries if _network(entry) is None]
    found = []
    now = time.monotonic()
    for host in hosts:
        when, networks = _resolved.get(host, (-RESOLVE_EVERY, ()))
        if now - when >= RESOLVE_EVERY:
            with _resolving:
                try:
                    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
                    networks = tuple({ipaddress.ip_network(info[4][0]) for info in infos})
                except (OSError, ValueError):
                    networks = ()  # not up yet: trusted once it resolves
                _resolved[host] = (now, networks)
        found.extend(networks)
    return tuple(found)


def _networks(entries: tuple[str, ...]) -> tuple:
    return _static_networks(entries) + _host_networks(entries)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def is_trusted_proxy(text: str) -> bool:
    address = _address(text)
    if address is None:
        return False
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def _resolve(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    if not is_trusted_proxy(remote):
        return remote
    hops = [
        hop.strip()
        for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not is_trusted_proxy(hop):
            return hop
    return hops[0] if hops else remote  # every hop is ours: the first one is the client


def client_ip(request) -> str:
    """The caller's address (an IPv6 one as its /64 network), computed once per request."""
    request = getattr(request, "_request", request)  # DRF's Request wraps Django's
    cached = getattr(request, "_client_ip", None)
    if cached is None:
        raw = _resolve(request)
        address = _address(raw)
        if address is None:
            cached = raw[:64]  # not an address: still a stable key, never trusted
        elif address.version == 6 and not address.ipv4_mapped:
            cached = str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
        else:
            cached = str(address.ipv4_mapped or address) if address.version == 6 else str(address)
        request._client_ip = cached
    return cached
