"""Who is calling: the client's IP address, believed only where a trusted proxy says it.

    client_ip(request)           # "203.0.113.7"; the key of every per-IP rate limit
    is_trusted_proxy("10.0.3.4")  # True when 10.0.0.0/8 is in settings.TRUSTED_PROXIES

`REMOTE_ADDR` is the peer of the TCP connection and cannot be forged. When that peer is a
trusted proxy (`TRUSTED_PROXIES`: addresses, CIDRs, host names such as Compose's `nginx`,
or `unix:` for a proxy that talks to the application server over a unix socket), the
client is the right-most address of `X-Forwarded-For` that is not itself a trusted
proxy: each proxy appends the peer it saw, so everything left of that entry was written
by the client and is ignored. Without trusted proxies (`make run`), forwarded headers
are never read; `common.middleware.TrustedProxyMiddleware` even removes them, so
`X-Forwarded-Proto` (`SECURE_PROXY_SSL_HEADER`) cannot be forged either.

Fail closed: a port is stripped (`203.0.113.7:5555`, `[2001:db8::1]:443`), so it never
makes a new budget; a caller whose address cannot be read (no `REMOTE_ADDR`, a unix
socket peer not declared trusted, an unreadable forwarded entry) is `UNKNOWN_CLIENT`:
all such callers share one budget, which is limited like any other.

Host names are looked up again every `RESOLVE_EVERY` seconds, so a restarted proxy is
found; when a lookup fails the last good answer is kept (a resolver hiccup neither
trusts nothing, which would put every client in the proxy's one budget, nor anything
new).

IPv6 clients are keyed by their /64 network: one host usually holds a whole /64, and
per-address limits would be no limits at all.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from functools import lru_cache

from django.conf import settings

logger = logging.getLogger(__name__)

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
UNIX_SOCKET = "unix:"  # the TRUSTED_PROXIES entry for a proxy on a unix socket
UNKNOWN_CLIENT = "unknown"  # the one shared budget of callers whose address is unreadable


def _network(entry: str):
    if entry == UNIX_SOCKET:
        return UNIX_SOCKET
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None  # a host name


@lru_cache(maxsize=8)
def _static_networks(entries: tuple[str, ...]) -> tuple:
    return tuple(n for n in map(_network, entries) if n is not None and n != UNIX_SOCKET)


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
                except (OSError, ValueError) as exc:
                    # Keep the last good answer (none yet: trusted once it resolves).
                    logger.warning("Trusted proxy %s not resolved: %s", host, exc)
                _resolved[host] = (now, networks)
        found.extend(networks)
    return tuple(found)


def _networks(entries: tuple[str, ...]) -> tuple:
    return _static_networks(entries) + _host_networks(entries)


_PORT = re.compile(r":\d{1,5}")


def _address(text: str):
    """The IP address in `text`, without a port (`1.2.3.4:80`, `[::1]:443`), or None."""
    text = text.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not _PORT.fullmatch(rest)):
            return None
        text = host
    elif text.count(":") == 1:  # IPv4 and a port (an IPv6 address has two colons or more)
        host, _, port = text.partition(":")
        if not _PORT.fullmatch(f":{port}"):
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def _is_unix_peer(remote: str) -> bool:
    # gunicorn leaves REMOTE_ADDR empty for a unix socket peer; other servers write
    # "unix:..." or the socket's path.
    remote = remote.strip()
    return remote == "" or remote.startswith(("unix:", "/"))


def is_trusted_proxy(text: str) -> bool:
    """Whether the peer `text` (a REMOTE_ADDR) is one of `settings.TRUSTED_PROXIES`."""
    entries = tuple(settings.TRUSTED_PROXIES)
    if _is_unix_peer(text):
        return UNIX_SOCKET in entries
    address = _address(text)
    return address is not None and _trusted(address, entries)


def _trusted(address, entries: tuple[str, ...]) -> bool:
    return any(
        address.version == network.version and address in network for network in _networks(entries)
    )


def _resolve(request):
    """The client's address, or None when it cannot be read."""
    remote = request.META.get("REMOTE_ADDR", "")
    if not is_trusted_proxy(remote):
        return _address(remote)
    entries = tuple(settings.TRUSTED_PROXIES)
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None or not _trusted(address, entries):
            return address  # None: unreadable, and nothing left of it can be believed
    if hops:
        return _address(hops[0])  # every hop is ours: the first one is the client
    return _address(remote)  # the proxy itself (a unix socket peer: unknown)


def client_ip(request) -> str:
    """The caller's address (an IPv6 one as its /64 network, `UNKNOWN_CLIENT` when it
    cannot be read), computed once per request."""
    request = getattr(request, "_request", request)  # DRF's Request wraps Django's
    cached = getattr(request, "_client_ip", None)
    if cached is None:
        address = _resolve(request)
        if address is None:
            cached = UNKNOWN_CLIENT
        elif address.version == 6:
            cached = str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
        else:
            cached = str(address)
        request._client_ip = cached
    return cached
