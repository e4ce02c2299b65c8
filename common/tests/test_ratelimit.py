"""Rate limits: atomic counters shared by every process, 429 with Retry-After."""

import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import caches

from cart.tests.factories import CartFactory
from common.ratelimit import Rate, rate_limit, rate_limit_hit, rate_of, window
from common.testing import error_of
from conftest import ROOT
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/m", Rate(20, 60)),
        ("10/15m", Rate(10, 900)),
        ("5/s", Rate(5, 1)),
        ("1/d", Rate(1, 86400)),
    ],
)
def test_rates_read_as_count_per_period(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["off", "OFF", ""])
def test_off_is_no_limit(text):
    assert Rate.parse(text) is None


@pytest.mark.parametrize("text", ["20", "20/x", "m/20", "5/0m", "-1/m"])
def test_a_malformed_rate_is_refused(text):
    with pytest.raises(ValueError, match="is not a rate"):
        Rate.parse(text)


def test_counts_within_one_window_and_says_when_it_ends():
    rate = Rate(3, 60)
    usages = [rate_limit_hit(name="t_per_ip", key="k", rate=rate) for _ in range(4)]

    assert [u.count for u in usages] == [1, 2, 3, 4]
    assert [u.allowed for u in usages] == [True, True, True, False]
    assert all(1 <= u.retry_after <= 60 for u in usages)


def test_a_request_in_an_open_window_costs_one_operation_on_the_store(monkeypatch):
    # With Redis each operation is a round trip on every limited request.
    cache = caches["ratelimit"]
    calls = []
    for name in ("add", "incr", "get", "set"):
        original = getattr(cache, name)
        monkeypatch.setattr(
            cache, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k)
        )
    rate = Rate(10, 60)
    rate_limit_hit(name="ops_per_ip", key="k", rate=rate)  # opens the window
    calls.clear()

    counts = [rate_limit_hit(name="ops_per_ip", key="k", rate=rate).count for _ in range(3)]

    assert counts == [2, 3, 4]
    assert calls == ["incr", "incr", "incr"]


def test_each_limit_is_one_throttle_class_whatever_the_requests():
    assert rate_limit("apply_discount_per_ip") is rate_limit("apply_discount_per_ip")
    assert rate_limit("pay_per_cart") is not rate_limit("pay_per_cart", fail_closed=True)


def test_keys_are_hashed_and_separate():
    rate = Rate(1, 60)
    assert rate_limit_hit(name="t_per_ip", key="10.0.0.1", rate=rate).allowed
    assert rate_limit_hit(name="t_per_ip", key="10.0.0.2", rate=rate).allowed
    assert rate_limit_hit(name="u_per_ip", key="10.0.0.1", rate=rate).allowed
    cache_key, _ = window(name="t_per_ip", key="10.0.0.1", rate=rate, at=time.time())
    assert "10.0.0.1" not in cache_key


def test_a_new_window_starts_from_zero(monkeypatch):
    rate = Rate(1, 10)
    now = 1_000_000.0
    monkeypatch.setattr(time, "time", lambda: now)
    _, end = window(name="t_per_ip", key="k", rate=rate, at=now)

    assert rate_limit_hit(name="t_per_ip", key="k", rate=rate).allowed
    assert not rate_limit_hit(name="t_per_ip", key="k", rate=rate).allowed
    now = end + 0.01
    assert rate_limit_hit(name="t_per_ip", key="k", rate=rate).allowed


def test_windows_of_two_periods_never_share_a_counter(monkeypatch):
    # A limit's rate changed from 2/m to 1/h: the hour's window can start within the
    # current minute's (both are shifted by the same key's offset, so a window of an hour
    # starting less than a minute ago starts when the minute's did). Were they keyed by
    # their start alone, the new rate would inherit the old one's count (the test
    # below over HTTP, whose rate is changed, failed one minute in sixty).
    minute, hour = Rate(2, 60), Rate(1, 3600)
    _, hour_end = window(name="t_per_ip", key="k", rate=hour, at=1_000_000.0)
    at = hour_end - 3600 + 5.0  # the hour's window began 5 s ago, and so did the minute's
    monkeypatch.setattr(time, "time", lambda: at)
    minute_key, minute_end = window(name="t_per_ip", key="k", rate=minute, at=at)
    hour_key, hour_end = window(name="t_per_ip", key="k", rate=hour, at=at)

    assert minute_end - 60 == hour_end - 3600  # the same start
    assert minute_key != hour_key
    assert rate_limit_hit(name="t_per_ip", key="k", rate=minute).count == 1
    assert rate_limit_hit(name="t_per_ip", key="k", rate=minute).count == 2
    assert rate_limit_hit(name="t_per_ip", key="k", rate=hour).count == 1


# --- Over HTTP: every limit of the task, 429 in the error shape with Retry-After -----


def assert_too_many(response):
    assert response.status_code == 429, response.content
    error = error_of(response)
    assert error["code"] == "too_many_requests"
    assert error["message"].startswith("Too many requests: retry in ")
    assert 1 <= int(response["Retry-After"]) <= 3600
    return error


def limits(settings, **rates):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, **rates}


def apply(client, cart, code, ip="203.0.113.1"):
    return client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code}, REMOTE_ADDR=ip)


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_a_rate_is_parsed_once_per_text_and_a_changed_one_is_read(
    api_client, settings, monkeypatch
):
    parsed = []
    parse = Rate.parse.__func__
    monkeypatch.setattr(
        Rate, "parse", classmethod(lambda cls, t: parsed.append(t) or parse(cls, t))
    )
    rate_of.cache_clear()
    limits(settings, apply_discount_per_ip="2/m", apply_discount_per_cart="off")

    statuses = [apply(api_client, CartFactory(), "NOPE").status_code for _ in range(3)]

    assert statuses == [400, 400, 429]
    assert sorted(parsed) == ["2/m", "off"]  # two limits, each parsed once
    limits(settings, apply_discount_per_ip="1/h")  # a new rate, its own window
    statuses = [apply(api_client, CartFactory(), "NOPE").status_code for _ in range(2)]
    assert statuses == [400, 429]
    assert sorted(parsed) == ["1/h", "2/m", "off"]
    rate_of.cache_clear()


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_guessing_codes_from_one_ip_is_limited(api_client, settings):
    limits(settings, apply_discount_per_ip="5/m", apply_discount_per_cart="off")
    carts = [CartFactory() for _ in range(6)]

    statuses = [apply(api_client, cart, f"GUESS{n}").status_code for n, cart in enumerate(carts)]

    assert statuses == [400] * 5 + [429]
    assert_too_many(apply(api_client, CartFactory(), "GUESS9"))
    assert apply(api_client, CartFactory(), "GUESS9", ip="203.0.113.2").status_code == 400


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_guessing_codes_on_one_cart_is_limited_whatever_the_ip(api_client, settings):
    limits(settings, apply_discount_per_ip="off", apply_discount_per_cart="3/15m")
    cart = CartFactory()
    DiscountFactory(code="REAL")

    for n in range(3):
        assert apply(api_client, cart, f"NOPE{n}", ip=f"198.51.100.{n}").status_code == 400
    assert_too_many(apply(api_client, cart, "REAL", ip="198.51.100.9"))
    # The same cart spelt another way is the same budget.
    spelt = str(cart.pk).replace("-", "").upper()
    response = api_client.post(f"/api/cart/{spelt}/apply_discount/", {"code": "REAL"})
    assert_too_many(response)
    assert apply(api_client, CartFactory(), "REAL").status_code == 200


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_creating_carts_is_limited_per_ip(api_client, settings):
    limits(settings, cart_create_per_ip="3/m")
    body = {"total": 10, "currency": "USD", "items_number": 1}

    statuses = [
        api_client.post("/api/cart/", body, REMOTE_ADDR="192.0.2.1").status_code for _ in range(4)
    ]

    assert statuses == [201, 201, 201, 429]
    assert api_client.post("/api/cart/", body, REMOTE_ADDR="192.0.2.2").status_code == 201


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_paying_one_cart_is_limited(api_client, settings):
    limits(settings, pay_per_cart="2/10m")
    cart = CartFactory(payment_status="success")

    statuses = [api_client.post(f"/api/cart/{cart.pk}/pay/", {}).status_code for _ in range(3)]

    assert statuses == [409, 409, 429]


@pytest.fixture
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def token(client, username, password, ip="203.0.113.50"):
    return client.post(
        "/api/auth/token/", {"username": username, "password": password}, REMOTE_ADDR=ip
    )


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_password_guesses_from_one_ip_are_limited(api_client, settings, fast_hashing):
    limits(settings, token_per_ip="3/m", token_per_username="off")

    statuses = [token(api_client, f"user{n}", "guess").status_code for n in range(4)]

    assert statuses == [400, 400, 400, 429]


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_password_guesses_for_one_user_are_limited_across_ips(
    api_client, settings, fast_hashing, staff_user
):
    limits(settings, token_per_ip="off", token_per_username="3/h")

    for n in range(3):
        assert token(api_client, "staff", f"guess{n}", ip=f"192.0.2.{n}").status_code == 400
    # Case or spaces do not make a new budget; the right password waits as well.
    assert_too_many(token(api_client, " STAFF ", "a-long-staff-password", ip="192.0.2.9"))
    assert token(api_client, "other", "guess", ip="192.0.2.9").status_code == 400


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_a_limited_token_request_never_hashes_the_password(
    api_client, settings, fast_hashing, monkeypatch
):
    limits(settings, token_per_ip="1/m")
    token(api_client, "someone", "guess")
    calls = []
    from django.contrib.auth import backends

    monkeypatch.setattr(backends.ModelBackend, "authenticate", lambda *a, **k: calls.append(1))

    assert_too_many(token(api_client, "someone", "guess"))
    assert calls == []


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_the_client_behind_a_trusted_proxy_is_limited_not_the_proxy(api_client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    limits(settings, cart_create_per_ip="1/m")
    body = {"total": 10, "currency": "USD", "items_number": 1}

    def create(forwarded):
        return api_client.post(
            "/api/cart/", body, REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR=forwarded
        ).status_code

    assert create("198.51.100.7") == 201
    assert create("198.51.100.8") == 201
    assert create("198.51.100.7") == 429
    # A client cannot pick a new address by sending its own X-Forwarded-For first.
    assert create("192.0.2.99, 198.51.100.7") == 429


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_forwarded_headers_from_an_untrusted_peer_are_ignored(api_client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    limits(settings, cart_create_per_ip="1/m")
    body = {"total": 10, "currency": "USD", "items_number": 1}

    def create(forwarded):
        return api_client.post(
            "/api/cart/", body, REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR=forwarded
        ).status_code

    assert create("192.0.2.1") == 201
    assert create("192.0.2.2") == 429


# --- A real Redis: many threads and processes on one key ------------------------------


@pytest.fixture
def redis_limits(settings, redis_url):
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"ratelimit-test-{uuid.uuid4().hex}",
        },
    }
    yield redis_url
    caches["ratelimit"].delete_pattern("*")


def fresh_key(rate: Rate) -> str:
    """A key whose window has at least a minute left: the race stays in one window."""
    while True:
        key = uuid.uuid4().hex
        _, end = window(name="race_per_ip", key=key, rate=rate, at=time.time())
        if end - time.time() > 60:
            return key


def test_threads_hammering_one_key_in_redis_never_pass_more_than_the_limit(redis_limits):
    rate = Rate(50, 3600)
    key = fresh_key(rate)
    barrier = threading.Barrier(16)

    def hammer(_):
        barrier.wait()
        return sum(
            rate_limit_hit(name="race_per_ip", key=key, rate=rate).allowed for _ in range(10)
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        allowed = sum(pool.map(hammer, range(16)))

    assert allowed == 50  # of 160 requests


HAMMER = """
import os, sys, time
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "CoreRoot.settings"
django.setup()
from common.ratelimit import Rate, rate_limit_hit
key, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0, start - time.time()))
rate = Rate(100, 3600)
print(sum(rate_limit_hit(name="race_per_ip", key=key, rate=rate).allowed for _ in range(60)))
"""


def test_processes_hammering_one_key_in_redis_never_pass_more_than_the_limit(redis_limits):
    key = fresh_key(Rate(100, 3600))
    start = time.time() + 3  # every process is ready, then all start together
    env = {"REDIS_URL": redis_limits, "ENV": "DEV", "PATH": "/usr/bin:/bin"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, key, str(start)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) for p in processes]

    assert all(p.returncode == 0 for p in processes), [err for _, err in results]
    allowed = [int(out) for out, _ in results]
    assert sum(allowed) == 100  # of 240 requests, whichever process sent them
    import redis

    client = redis.Redis.from_url(redis_limits)
    for name in client.scan_iter("ratelimit:*race_per_ip*"):
        client.delete(name)


def test_an_unreachable_store_lets_requests_through_and_warns(api_client, settings, caplog):
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    body = {"total": 10, "currency": "USD", "items_number": 1}

    assert api_client.post("/api/cart/", body).status_code == 201
    assert "Rate limit cart_create_per_ip not checked" in caplog.text


def test_an_unreachable_store_is_a_503_when_failing_closed(api_client, settings):
    settings.RATELIMIT_FAIL_OPEN = False
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }

    response = api_client.post("/api/cart/", {"total": 10, "currency": "USD", "items_number": 1})

    assert response.status_code == 503
    assert error_of(response)["code"] == "rate_limit_unavailable"


@pytest.mark.usefixtures("frozen_limiter_clock")
@pytest.mark.parametrize(
    ("remote", "forwarded"),
    [
        ("", None),  # no peer address at all
        ("not-an-address", None),
        ("10.0.0.2", "garbage"),  # a proxy of ours forwarded something unreadable
    ],
)
def test_a_caller_whose_address_cannot_be_read_is_limited_not_let_through(
    api_client, settings, remote, forwarded
):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    limits(settings, cart_create_per_ip="2/m")
    body = {"total": 10, "currency": "USD", "items_number": 1}
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}

    statuses = [
        api_client.post("/api/cart/", body, REMOTE_ADDR=remote, **extra).status_code
        for _ in range(3)
    ]

    assert statuses == [201, 201, 429]


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_a_client_port_does_not_make_a_new_budget(api_client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    limits(settings, cart_create_per_ip="2/m")
    body = {"total": 10, "currency": "USD", "items_number": 1}

    statuses = [
        api_client.post(
            "/api/cart/", body, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"203.0.113.5:{port}"
        ).status_code
        for port in (40001, 40002, 40003)
    ]

    assert statuses == [201, 201, 429]


def test_the_token_endpoint_fails_closed_when_the_store_is_down(api_client, settings):
    settings.RATELIMIT_FAIL_OPEN = True  # the other limits let requests through
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }

    response = token(api_client, "staff", "guess")

    assert response.status_code == 503
    assert error_of(response)["code"] == "rate_limit_unavailable"
    assert (
        api_client.post(
            "/api/cart/", {"total": 10, "currency": "USD", "items_number": 1}
        ).status_code
        == 201
    )


def test_retry_after_never_exceeds_the_period_and_counts_down(monkeypatch):
    from common import ratelimit

    rate = ratelimit.Rate.parse("3/m")
    clock = [1_000_000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: clock[0])
    usages = []
    for _ in range(5):
        usages.append(ratelimit.rate_limit_hit(name="countdown_per_ip", key="k", rate=rate))
        clock[0] += 1
    waits = [usage.retry_after for usage in usages]

    assert all(1 <= wait <= 60 for wait in waits)
    assert waits[4] == waits[3] - 1
