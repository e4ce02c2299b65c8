"""Settings for the cart, discount and payment service: one module, driven by the environment.

Every variable is listed in `.env.example` and in the README's configuration table.
`python-dotenv` reads a `.env` file beside `manage.py` if there is one; real environment
variables win over it. `ENV=DEV` (the default) is for local development and tests: open
API, DEBUG on, SQLite, the fake payment provider. `ENV=PROD` locks the service down and
refuses to start without the secrets a deployment must provide.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env", override=False)


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


def env_number(name: str, default, cast):
    value = env_str(name)
    try:
        return cast(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def env_list(name: str, default: str = "") -> list[str]:
    return split_list(env_str(name, default))


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

if IS_PROD:
    SECRET_KEY = env_required("SECRET_KEY")
    ALLOWED_HOSTS = split_list(env_required("ALLOWED_HOSTS"))
    DEBUG = False
else:
    SECRET_KEY = (
        env_str("SECRET_KEY") or "django-insecure-local-development-key-not-for-production"
    )
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
    # Off by default even in DEV: with DEBUG on, Django answers unknown URLs with HTML
    # debug pages instead of the API's JSON errors. Turn it on to see tracebacks.
    DEBUG = env_bool("DEBUG", False)

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "common.views.csrf_failure"

# In production, discount management and the list of every cart need a staff user; a
# single cart stays reachable by whoever holds its (unguessable) id.
REQUIRE_STAFF_FOR_MANAGEMENT = IS_PROD

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
]

MIDDLEWARE = [
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
# or postgres://user:password@host:5432/name (psycopg 3).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_number("DB_CONN_MAX_AGE", 600, int),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
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
    # and a gunicorn process can share it; one per test run, so two runs don't collide.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db_{os.getpid()}.sqlite3")}

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

# --- Payment provider -----------------------------------------------------------------
# FAKE_PAYMENT_API is host:port of the fake provider (fake_payment_server.py), used in
# DEV; REAL_PAYMENT_API is the real provider's base URL, required with ENV=PROD.
FAKE_PAYMENT_API = env_str("FAKE_PAYMENT_API", "127.0.0.1:5005")
REAL_PAYMENT_API = env_required("REAL_PAYMENT_API") if IS_PROD else env_str("REAL_PAYMENT_API")
_payment_api = REAL_PAYMENT_API if IS_PROD else FAKE_PAYMENT_API
PAYMENT_API_BASE_URL = (
    _payment_api if "://" in _payment_api else f"http://{_payment_api}"
).rstrip("/")
PAYMENT_API_CONNECT_TIMEOUT = env_number("PAYMENT_API_CONNECT_TIMEOUT", 2.0, float)
PAYMENT_API_READ_TIMEOUT = env_number("PAYMENT_API_READ_TIMEOUT", 5.0, float)
PAYMENT_API_MAX_RETRIES = env_number("PAYMENT_API_MAX_RETRIES", 2, int)
PAYMENT_API_RETRY_BACKOFF = env_number("PAYMENT_API_RETRY_BACKOFF", 0.2, float)
# A payment attempt untouched for this long is no longer being sent (its worker died):
# the next pay request or `manage.py reconcile_payments` may settle it. Keep it above the
# client's worst case: (connect + read timeout) x (retries + 1) plus the backoff.
PAYMENT_ATTEMPT_STALE_SECONDS = env_number("PAYMENT_ATTEMPT_STALE_SECONDS", 60, int)
# Pays and refunds that may wait on the provider at once in one process; one more is
# answered 503 payment_provider_busy (Retry-After) at once, before anything is sent. The
# default keeps half of the gunicorn threads (GUNICORN_THREADS, CoreRoot/gunicorn.py) for
# everything else, so reads and carts go on while the provider is slow. 0: no limit.
PAYMENT_MAX_IN_FLIGHT = env_number(
    "PAYMENT_MAX_IN_FLIGHT", max(1, env_number("GUNICORN_THREADS", 4, int) // 2), int
)

# --- Production hardening (`manage.py check --deploy` reports nothing with ENV=PROD) --
if IS_PROD:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Health checks come from the orchestrator over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health/"]
    SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 31536000, int)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
}
