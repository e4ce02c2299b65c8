"""The client's address: REMOTE_ADDR, or the right-most untrusted X-Forwarded-For entry
when the peer is a trusted proxy; forwarded headers from anyone else are dropped."""

import pytest
from django.test import RequestFactory

from common.clientip import client_ip
from common.middleware import TrustedProxyMiddleware


@pytest.fixture(autouse=True)
def proxies(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]


def ip(remote, forwarded=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **extra))


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("198.51.100.1", "203.0.113.9", "198.51.100.1"),  # not a proxy: header ignored
        ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client wrote 6.6.6.6
        ("10.0.0.2", "203.0.113.9, 10.0.0.7", "203.0.113.9"),  # two proxies of ours
        ("10.0.0.2", "10.0.0.9, 10.0.0.7", "10.0.0.9"),  # all ours: the first one
        ("10.0.0.2", "", "10.0.0.2"),
        ("10.0.0.2", None, "10.0.0.2"),
        ("::ffff:198.51.100.1", None, "198.51.100.1"),
        ("2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),  # a host holds its /64
        ("fd00::1", "[2001:db8::1]", "2001:db8::/64"),
    ],
)
def test_the_client_address(remote, forwarded, client):
    assert ip(remote, forwarded) == client


def test_forwarded_headers_of_an_untrusted_peer_are_removed():
    request = RequestFactory().get(
        "/",
        REMOTE_ADDR="198.51.100.1",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_FOR="1.1.1.1",
    )
    seen = []

    TrustedProxyMiddleware(seen.append)(request)

    assert "HTTP_X_FORWARDED_PROTO" not in seen[0].META
    assert "HTTP_X_FORWARDED_FOR" not in seen[0].META
    assert not seen[0].is_secure()


def test_a_trusted_proxy_says_the_request_came_over_https(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_PROTO="https")
    seen = []

    TrustedProxyMiddleware(seen.append)(request)

    assert seen[0].is_secure()


class FakeResolver:
    """`proxy.internal` resolves to `answers` (none: the lookup fails); `tick()` moves
    the clock on by one lookup interval."""

    def __init__(self, monkeypatch):
        from common import clientip

        self.clientip = clientip
        self.answers = {"proxy.internal": ["10.9.0.5"]}
        self.now = 1000.0
        monkeypatch.setattr(clientip.socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(clientip, "_resolved", {})
        monkeypatch.setattr(clientip.time, "monotonic", lambda: self.now)

    def getaddrinfo(self, host, *args, **kwargs):
        if host not in self.answers:
            raise OSError("temporary failure in name resolution")
        return [(2, 1, 6, "", (ip, 0)) for ip in self.answers[host]]

    def tick(self) -> None:
        self.now += self.clientip.RESOLVE_EVERY


@pytest.fixture
def resolver(settings, monkeypatch) -> FakeResolver:
    settings.TRUSTED_PROXIES = ["proxy.internal"]
    return FakeResolver(monkeypatch)


def test_a_proxy_named_by_host_is_trusted_at_the_addresses_it_resolves_to(resolver):
    assert ip("10.9.0.5", "203.0.113.9") == "203.0.113.9"
    assert ip("10.9.0.6", "203.0.113.9") == "10.9.0.6"
    resolver.answers["proxy.internal"] = ["10.9.0.6"]  # the proxy restarted elsewhere
    assert ip("10.9.0.6", "203.0.113.9") == "10.9.0.6"  # until the next lookup
    resolver.tick()
    assert ip("10.9.0.6", "203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("198.51.100.1:5555", None, "198.51.100.1"),  # a server that kept the port
        ("10.0.0.2", "203.0.113.9:443", "203.0.113.9"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::/64"),
        ("10.0.0.2", "203.0.113.9:443, 10.0.0.7:80", "203.0.113.9"),
        ("10.0.0.2", "garbage", "unknown"),  # unreadable: one limited bucket, never a key
        ("10.0.0.2", "6.6.6.6, garbage", "unknown"),  # nothing left of it is believed
        ("", None, "unknown"),
        ("garbage", None, "unknown"),
    ],
)
def test_addresses_lose_their_port_and_unreadable_ones_share_one_bucket(remote, forwarded, client):
    assert ip(remote, forwarded) == client


@pytest.mark.parametrize("remote", ["", "unix:/run/gunicorn.sock", "/run/gunicorn.sock"])
def test_a_unix_socket_peer_is_the_proxy_only_when_trusted_explicitly(settings, remote):
    settings.TRUSTED_PROXIES = ["unix:"]
    assert ip(remote, "203.0.113.9") == "203.0.113.9"

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert ip(remote, "203.0.113.9") == "unknown"
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR="1.1.1.1")
    seen = []
    TrustedProxyMiddleware(seen.append)(request)
    assert "HTTP_X_FORWARDED_FOR" not in seen[0].META


def test_a_dns_failure_keeps_the_last_good_answer(resolver):
    assert ip("10.9.0.5", "203.0.113.9") == "203.0.113.9"
    del resolver.answers["proxy.internal"]  # the resolver fails for a while
    resolver.tick()
    assert ip("10.9.0.5", "203.0.113.9") == "203.0.113.9"  # the last good answer
    assert ip("10.9.0.6", "203.0.113.9") == "10.9.0.6"  # and nothing more
    resolver.answers["proxy.internal"] = ["10.9.0.6"]  # back, with a new address
    resolver.tick()
    assert ip("10.9.0.6", "203.0.113.9") == "203.0.113.9"
    assert ip("10.9.0.5", "203.0.113.9") == "10.9.0.5"
