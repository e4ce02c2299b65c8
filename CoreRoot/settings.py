"""Settings for the cart, discount and payment service: one module, driven by the environment.

Every variable is listed in `.env.example` and in the README's configuration table.
`python-dotenv` reads a `.env` file beside `manage.py` if there is one; real environment
variables win over it. `ENV=DEV` (the default) is for local development and tests: open
API, SQLite, the fake payment provider, DEBUG off unless `DEBUG=true`. `ENV=PROD` locks
the service down and refuses to start without the secrets a deployment must provide.
"""

import ipaddress
import math
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from observability.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)
# Empty means unset, as for every variable here (.env.example and Compose pass it empty);
# prometheus_client takes its mere presence for multiprocess mode, and would write its
# files into the working directory. gunicorn (CoreRoot/gunicorn.py) makes one.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if not value:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def env_number(name: str, default, cast, *, positive: bool = False):
    """A number of the environment: finite and not negative (every one here is a count,
    a size or a time), above 0 with `positive` (where 0 would mean a busy loop or no
    time at all)."""
    value = env_str(name)
    try:
        number = cast(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        least = "above 0" if positive else "0 or more"
        raise ImproperlyConfigured(f"{name} must be a finite number {least}, not {value!r}.")
    return number


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def env_list(name: str, default: str = "") -> list[str]:
    # Empty means the default, as for the other kinds (Compose passes unset ones empty).
    return split_list(env_str(name) or default)


def env_required(name: str) -> str:
    value = env_str(name)
    if not value:
        raise ImproperlyConfigured(
            f"{name} is required when ENV=PROD. Set it in the environment or in .env "
            "(see .env.example)."
        )
    return value


ENV = env_str("ENV", "DEV").upper()
if ENV not in {"DEV", "PROD"}:
    raise ImproperlyConfigured(f"ENV must be DEV or PROD, not {ENV!r}.")
IS_PROD = ENV == "PROD"

DEV_SECRET_KEY = "django-insecure-local-development-key-not-for-production"
# Values that appear in this repository's files (examples, the image's build step) or in
# tutorials: a deployment that copied one has no secret at all.
KNOWN_EXAMPLE_SECRET_KEYS = {
    DEV_SECRET_KEY,
    "changeme",
    "change-me",
    "secret",
    "collectstatic-only",
    "your-secret-key",
    "insecure",
}
SECRET_KEY_MIN_LENGTH = 50


def check_secret_key(value: str) -> str:
    """A production SECRET_KEY: long, varied, and not one anybody else has seen."""
    if (
        len(value) < SECRET_KEY_MIN_LENGTH
        or len(set(value)) < 5
        or value.lower() in KNOWN_EXAMPLE_SECRET_KEYS
        or value.startswith("django-insecure")
    ):
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for ENV=PROD: use at least {SECRET_KEY_MIN_LENGTH} "
            'random characters that appear nowhere else, e.g. python -c "import secrets; '
            'print(secrets.token_urlsafe(50))"'
        )
    return value


def check_allowed_hosts(hosts: list[str]) -> list[str]:
    if "*" in hosts:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must name the service's host names with ENV=PROD, not '*': any "
            "Host header would be accepted (and used in absolute URLs)."
        )
    return hosts


if IS_PROD:
    SECRET_KEY = check_secret_key(env_required("SECRET_KEY"))
    ALLOWED_HOSTS = check_allowed_hosts(split_list(env_required("ALLOWED_HOSTS")))
    DEBUG = False
else:
    SECRET_KEY = env_str("SECRET_KEY") or DEV_SECRET_KEY
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
    # Off by default even in DEV: with DEBUG on, Django answers unknown URLs with HTML
    # debug pages instead of the API's JSON errors. Turn it on to see tracebacks.
    DEBUG = env_bool("DEBUG", False)

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "common.views.csrf_failure"

# In production, discount management and the list of every cart need a staff user; a
# single cart stays reachable by whoever holds its (unguessable) id.
REQUIRE_STAFF_FOR_MANAGEMENT = IS_PROD
# Creating a cart needs a storefront key (X-Storefront-Key, issued in the admin) or a
# staff user, so carts cannot be created in bulk anonymously. DEV stays open.
REQUIRE_STOREFRONT_KEY = env_bool("REQUIRE_STOREFRONT_KEY", IS_PROD)

INSTALLED_APPS = [
    "common",  # first: its admin templates extend Django's
    "common.apps.ServiceAdminConfig",  # django.contrib.admin with the service's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "discount",
    "cart",
    "payments",
    "storefront",
    "observability",
    "django_tasks",
    "django_tasks_db",
    "events",
]

MIDDLEWARE = [
    # Outermost: every answer, even one refused by the middleware below, gets a request
    # id, a log line and its metrics (observability.middleware).
    "observability.middleware.RequestObservabilityMiddleware",
    # First: forwarded headers are dropped unless a trusted proxy sent them, and bodies
    # too large (413) or without a length (411) are answered before anything reads them.
    "common.middleware.TrustedProxyMiddleware",
    "common.middleware.RequestBodyGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "CoreRoot.urls"
WSGI_APPLICATION = "CoreRoot.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# DATABASE_URL picks the database: sqlite:///path (default: db.sqlite3 beside manage.py)
# or postgres://user:password@host:5432/name (psycopg 3), with libpq's options as its
# query (?sslmode=verify-full&connect_timeout=3).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_number("DB_CONN_MAX_AGE", 600, int),
        # Django's `SELECT 1` before each request's first query: off, because
        # `common.connections` notices a connection the server closed without a query.
        conn_health_checks=env_bool("DB_CONN_HEALTH_CHECKS", False),
    )
}
# Behind PgBouncer in transaction pooling mode a server-side cursor (QuerySet.iterator())
# may meet another client's transaction: turn them off there. CONN_MAX_AGE then keeps the
# connection to PgBouncer, which shares the server connections.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool(
    "DB_DISABLE_SERVER_SIDE_CURSORS", False
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Server-side prepared statements: a query run 5 times on a connection is parsed and
    # planned once. They need server-side parameter binding (with Django's default,
    # client-side binding, every query text carries its values and none repeats).
    # PgBouncer in transaction pooling mode (before 1.21) mixes prepared statements up
    # between clients: DB_PREPARED_STATEMENTS=false there.
    prepared = env_bool("DB_PREPARED_STATEMENTS", True)
    DATABASES["default"]["OPTIONS"] = {
        # libpq waits for a host that drops packets as long as the system lets it (two
        # minutes and more): a bounded connect, unless the URL says otherwise.
        "connect_timeout": 5,
        # What the URL's query asks for (?sslmode=verify-full&connect_timeout=3).
        **DATABASES["default"].get("OPTIONS", {}),
        "server_side_binding": prepared,
        "prepare_threshold": 5 if prepared else None,
    }
    if env_bool("DB_POOL", False):
        # psycopg's pool, one per worker process (opened on the first query, so after
        # gunicorn forks): each thread takes a connection for a request and gives it
        # back. It replaces persistent connections (CONN_MAX_AGE must be 0). With
        # health checks on, the pool checks a connection as it hands it out (an empty
        # query: Django passes no other check to the pool).
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": env_number("DB_POOL_MAX_SIZE", 4, int, positive=True),
            "timeout": 10,
        }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, whose writers wait their turn in one queue instead of polling
    # for SQLite's write lock (common/sqlite: why, and what it changes).
    DATABASES["default"]["ENGINE"] = "common.sqlite"
    DATABASES["default"]["WRITERS_QUEUE"] = env_bool("DB_SQLITE_WRITERS_QUEUE", True)
    DATABASES["default"]["OPTIONS"] = {
        # Several gunicorn workers share one file: WAL lets readers run beside the
        # writer, IMMEDIATE takes the write lock when a transaction starts (so two
        # writers queue instead of deadlocking on lock upgrade), and busy_timeout makes
        # them wait for it instead of failing with "database is locked".
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=20000"
        ),
    }
    # Tests use a file, not memory, so concurrency tests get one connection per thread
    # and a gunicorn process can share it. conftest.py names one per test process when its
    # session starts (two runs, xdist workers and forked mutation runs never share one).
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files: served by the app itself (whitenoise), so the admin and the API docs
# work under gunicorn with no web server in front and no CDN.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PROD
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not IS_PROD
WHITENOISE_AUTOREFRESH = not IS_PROD

# --- API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PARSER_CLASSES": ["common.api.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["common.api.DecimalJSONRenderer"]
    + ([] if IS_PROD else ["rest_framework.renderers.BrowsableAPIRenderer"]),
    "DEFAULT_PAGINATION_CLASS": "common.api.NewestFirstCursorPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "common.schema.AutoSchema",
    "EXCEPTION_HANDLER": "common.exception_handler.api_exception_handler",
    "COERCE_DECIMAL_TO_STRING": False,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Cart, discount and payment service",
    "DESCRIPTION": (
        "Carts, discount codes and payments for a shop. Amounts are JSON numbers in the "
        "cart's currency, with its decimals. Every error has the shape of the `Error` "
        "component; each operation lists, per status, the codes it can answer.\n\n"
        "Trying it on a fresh development server: *Create a discount code*, *Create a "
        "cart*, then *Apply a discount code* and *Pay* with the cart's `id`: each "
        "offered example works as it is."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Three models have a status with its own values: name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "CartPaymentStatusEnum": "cart.models.PaymentStatus",
        "PaymentAttemptStatusEnum": "payments.models.PaymentAttemptStatus",
        "RefundStatusEnum": "payments.models.RefundStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "common.schema.add_error_component",
    ],
    # Docstrings are for developers; each operation has its own text for callers
    # (`common.schema.documented`).
    "DISABLE_DOCSTRING_DESCRIPTIONS": True,
    # Interactive docs from our own static files: they work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Discount codes ---------------------------------------------------------------------
# Seconds a cart holds its reserved use of a code before paying; then the use is no
# longer counted against usage_limit and `release_discount_reservations` takes the
# discount off the cart (it is reserved again at payment if the code still allows).
DISCOUNT_RESERVATION_TTL = env_number("DISCOUNT_RESERVATION_TTL", 1800, int, positive=True)
# Anonymous callers get one `discount_invalid` for unknown, inactive, not started,
# expired and used-up codes, so guessing tells nothing (staff always see the reason).
DISCOUNT_HIDE_REFUSAL_REASONS = env_bool("DISCOUNT_HIDE_REFUSAL_REASONS", IS_PROD)

# --- Payment provider -----------------------------------------------------------------
# FAKE_PAYMENT_API is host:port of the fake provider (fake_payment_server.py), used in
# DEV; REAL_PAYMENT_API is the real provider's base URL, required with ENV=PROD.
FAKE_PAYMENT_API = env_str("FAKE_PAYMENT_API", "127.0.0.1:5005")
REAL_PAYMENT_API = env_required("REAL_PAYMENT_API") if IS_PROD else env_str("REAL_PAYMENT_API")
_payment_api = REAL_PAYMENT_API if IS_PROD else FAKE_PAYMENT_API
PAYMENT_API_BASE_URL = (
    _payment_api if "://" in _payment_api else f"http://{_payment_api}"
).rstrip("/")
# Card data and amounts travel to the provider: plain HTTP only where it is a private
# network the operator vouches for.
PAYMENT_API_ALLOW_HTTP = env_bool("PAYMENT_API_ALLOW_HTTP", False)
if IS_PROD and not PAYMENT_API_BASE_URL.startswith("https://") and not PAYMENT_API_ALLOW_HTTP:
    raise ImproperlyConfigured(
        f"REAL_PAYMENT_API must be an https:// URL with ENV=PROD, not {REAL_PAYMENT_API!r}. "
        "Set PAYMENT_API_ALLOW_HTTP=true only for a provider on a private network."
    )
PAYMENT_API_CONNECT_TIMEOUT = env_number("PAYMENT_API_CONNECT_TIMEOUT", 2.0, float, positive=True)
PAYMENT_API_READ_TIMEOUT = env_number("PAYMENT_API_READ_TIMEOUT", 5.0, float, positive=True)
PAYMENT_API_MAX_RETRIES = env_number("PAYMENT_API_MAX_RETRIES", 2, int)
PAYMENT_API_RETRY_BACKOFF = env_number("PAYMENT_API_RETRY_BACKOFF", 0.2, float)
# A payment attempt untouched for this long is no longer being sent (its worker died):
# the next pay request or `manage.py reconcile_payments` may settle it. It must be above
# twice the client's worst case, (connect + read timeout) x (retries + 1) plus the
# backoffs (utils.PaymentAPI): a failed charge is followed by a ledger lookup before the
# attempt is written again. Below it, an attempt still being sent could be closed as not
# charged and another card charged beside it.
PAYMENT_ATTEMPT_STALE_SECONDS = env_number("PAYMENT_ATTEMPT_STALE_SECONDS", 60, int, positive=True)
_PAYMENT_API_WORST_CASE = (PAYMENT_API_CONNECT_TIMEOUT + PAYMENT_API_READ_TIMEOUT) * (
    PAYMENT_API_MAX_RETRIES + 1
) + PAYMENT_API_RETRY_BACKOFF * (2**PAYMENT_API_MAX_RETRIES - 1)
if PAYMENT_ATTEMPT_STALE_SECONDS <= 2 * _PAYMENT_API_WORST_CASE:
    raise ImproperlyConfigured(
        f"PAYMENT_ATTEMPT_STALE_SECONDS ({PAYMENT_ATTEMPT_STALE_SECONDS}) must be above twice "
        f"the payment client's worst case, 2 x {_PAYMENT_API_WORST_CASE:g} s: (connect + "
        "read timeout) x (retries + 1) plus the backoffs, for a charge and the ledger "
        "lookup after it."
    )
# Pays and refunds that may wait on the provider at once in one process; one more is
# answered 503 payment_provider_busy (Retry-After) at once, before anything is sent. The
# default keeps half of the gunicorn threads (GUNICORN_THREADS, CoreRoot/gunicorn.py) for
# everything else, so reads and carts go on while the provider is slow. 0: no limit.
PAYMENT_MAX_IN_FLIGHT = env_number(
    "PAYMENT_MAX_IN_FLIGHT", max(1, env_number("GUNICORN_THREADS", 4, int) // 2), int
)

# --- Events: background tasks, provider webhooks in, shop webhooks out -----------------
# Django's task framework (django-tasks) on its database backend: tasks are rows in this
# database, run by `python manage.py run_worker` (Procfile: worker). Its RQ backend
# (django-tasks-rq, Redis) is the way to scale workers out without changing a task.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# A fixed secret for local development and tests only: the fake provider and the service
# share it unless PAYMENT_WEBHOOK_SECRET / SHOP_WEBHOOK_SECRET say otherwise.
DEV_WEBHOOK_SECRET = "whsec_ZGV2ZWxvcG1lbnQtd2ViaG9vay1zZWNyZXQtbm90LWZvci1wcm9k"
# Shared with the provider: POST /api/webhooks/payment-provider/ accepts only events
# signed with it (Standard Webhooks). Empty with ENV=PROD: every provider event is
# refused (503), so the provider keeps it and retries once it is set.
PAYMENT_WEBHOOK_SECRET = env_str("PAYMENT_WEBHOOK_SECRET") or (
    "" if IS_PROD else DEV_WEBHOOK_SECRET
)
# Where the shop wants its events (cart.paid, cart.payment_failed, cart.refunded), and the
# secret they are signed with. No URL: events are only recorded (GET /api/events/).
SHOP_WEBHOOK_URL = env_str("SHOP_WEBHOOK_URL")
SHOP_WEBHOOK_SECRET = env_str("SHOP_WEBHOOK_SECRET") or ("" if IS_PROD else DEV_WEBHOOK_SECRET)
if SHOP_WEBHOOK_URL and not SHOP_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "SHOP_WEBHOOK_SECRET is required with SHOP_WEBHOOK_URL: events are always signed. "
        'Generate one: python -c "import base64, secrets; '
        "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\""
    )
# A delivery the shop does not answer 2xx is retried with exponential backoff: after
# EVENTS_RETRY_FIRST_SECONDS, doubling, at most EVENTS_RETRY_MAX_INTERVAL_SECONDS apart,
# until EVENTS_RETRY_FOR_SECONDS (3 days) after the event; then it is marked failed (the
# admin's "redeliver now" and GET /api/events/ still have it).
EVENTS_RETRY_FIRST_SECONDS = env_number("EVENTS_RETRY_FIRST_SECONDS", 10.0, float)
EVENTS_RETRY_MAX_INTERVAL_SECONDS = env_number(
    "EVENTS_RETRY_MAX_INTERVAL_SECONDS", 21600.0, float, positive=True
)
EVENTS_RETRY_FOR_SECONDS = env_number("EVENTS_RETRY_FOR_SECONDS", 259200.0, float)
EVENTS_DELIVERY_TIMEOUT = env_number("EVENTS_DELIVERY_TIMEOUT", 10.0, float, positive=True)
# A delivery started this long ago and never recorded (its worker died) is started again
# by the worker's sweep; keep it above EVENTS_DELIVERY_TIMEOUT.
EVENTS_DELIVERY_LEASE_SECONDS = env_number(
    "EVENTS_DELIVERY_LEASE_SECONDS", 60.0, float, positive=True
)
EVENTS_SWEEP_SECONDS = env_number("EVENTS_SWEEP_SECONDS", 30.0, float, positive=True)

# --- The edge: proxies and request size ------------------------------------------------
# The reverse proxies in front of the service: addresses, CIDRs, host names (Compose:
# `nginx`, resolved again every 30 s) or `unix:` (a proxy on a unix socket).
# Only a request whose TCP peer is in one of them has its X-Forwarded-For / -Proto read;
# the client is then the right-most untrusted X-Forwarded-For entry (common.clientip).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
for _entry in TRUSTED_PROXIES:
    if _entry == "unix:":  # the peer of a unix socket (nginx -> gunicorn over a socket)
        continue
    try:
        ipaddress.ip_network(_entry, strict=False)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", _entry):
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {_entry!r} is not an IP address, CIDR network or host name."
            ) from None
if TRUSTED_PROXIES:
    # Believed only from a trusted proxy: common.middleware drops it from anyone else.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Largest request body accepted (413 payload_too_large above it). The API's bodies are a
# few hundred bytes; the proxy's client_max_body_size is set to the same value.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_number("REQUEST_BODY_MAX_BYTES", 262144, int, positive=True)

# --- Rate limits (common.ratelimit) ----------------------------------------------------
# Counters live in a cache every process shares: Redis when REDIS_URL is set (required
# with ENV=PROD; Compose runs one), local memory otherwise (make run: one process).
REDIS_URL = env_required("REDIS_URL") if IS_PROD else env_str("REDIS_URL")
# Prefix of the counters' Redis keys: deployments sharing one Redis, or the API servers
# the tests start, each count under their own.
RATELIMIT_KEY_PREFIX = env_str("RATELIMIT_KEY_PREFIX") or "ratelimit"
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": (
        {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": RATELIMIT_KEY_PREFIX,
            # A slow or absent Redis must not stall requests (see RATELIMIT_FAIL_OPEN).
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ratelimit"}
    ),
}
# name: rate, as N/period (s, m, h, d; "10/15m" = 10 per 15 minutes) or "off". The name's
# end says what is counted per: the client IP, the cart in the URL, the username sent.
RATE_LIMITS = {
    "cart_create_per_ip": env_str("RATELIMIT_CART_CREATE_PER_IP", "60/m"),
    "apply_discount_per_ip": env_str("RATELIMIT_APPLY_DISCOUNT_PER_IP", "20/m"),
    "apply_discount_per_cart": env_str("RATELIMIT_APPLY_DISCOUNT_PER_CART", "10/15m"),
    "pay_per_cart": env_str("RATELIMIT_PAY_PER_CART", "10/10m"),
    "token_per_ip": env_str("RATELIMIT_TOKEN_PER_IP", "10/m"),
    "token_per_username": env_str("RATELIMIT_TOKEN_PER_USERNAME", "10/h"),
}
for _name, _rate in RATE_LIMITS.items():
    if _rate.strip().lower() not in {"off", "none", ""} and not re.fullmatch(
        r"\d+/(?:[1-9]\d*)?[smhd]", _rate.strip().lower()
    ):
        raise ImproperlyConfigured(
            f"RATELIMIT_{_name.upper()} must be N/period such as 20/m, 10/15m or off, "
            f"not {_rate!r}."
        )
# When Redis cannot be reached: true lets requests through (logged), false answers 503.
RATELIMIT_FAIL_OPEN = env_bool("RATELIMIT_FAIL_OPEN", True)

# --- Production hardening (`manage.py check --deploy` reports nothing with ENV=PROD) --
if IS_PROD:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Health checks come from the orchestrator over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]  # and the metrics scrapes
    SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 31536000, int)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Logs and metrics (observability) ---------------------------------------------------
# LOG_FORMAT: json (one JSON object per line, for a log collector; the default with
# ENV=PROD) or text (for a person; the default in DEV). Every line has the request id.
# Empty (as Compose and .env.example pass them) means the default.
LOG_FORMAT = (env_str("LOG_FORMAT") or ("json" if IS_PROD else "text")).lower()
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")
LOGGING = logging_config(
    json_lines=LOG_FORMAT == "json", level=(env_str("LOG_LEVEL") or "INFO").upper()
)
# GET /metrics (Prometheus): staff only with ENV=PROD, unless only the monitoring network
# can reach the service's port.
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", not IS_PROD)
