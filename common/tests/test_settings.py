"""ENV=PROD refuses to start without its secrets and passes Django's deployment checks.

Each case runs `manage.py` in a fresh process, because settings are read once at start.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import gunicorn_setting, pay_worst_case_seconds
from fake_payment_server import (
    BALANCE_ENV_VAR,
    CARD_LIMIT_ENV_VAR,
    WEBHOOK_RETRY_ENV_VAR,
    WEBHOOK_SECRET_ENV_VAR,
    WEBHOOK_URL_ENV_VAR,
)

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "ENV": "PROD",
    "SECRET_KEY": "x7#kq2!v9Lm$3pZr8Wt&cN5yB1fHj6Dg0sQa4Ue+Rk=Xo-Pi_wYe",
    "ALLOWED_HOSTS": "shop.example.com",
    "REAL_PAYMENT_API": "https://payments.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PROD_ENV and k != "DEBUG"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_prod_passes_check_deploy_with_nothing_reported():
    result = manage("check", "--deploy", "--fail-level", "DEBUG", **PROD_ENV)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_dev_defaults_fail_check_deploy():
    # Shows the check above is a real check: the DEV defaults are not deployable.
    result = manage("check", "--deploy", "--fail-level", "WARNING", ENV="DEV")

    assert result.returncode != 0
    assert "security.W009" in result.stderr  # the insecure development SECRET_KEY


@pytest.mark.parametrize(
    "missing", ["SECRET_KEY", "ALLOWED_HOSTS", "REAL_PAYMENT_API", "REDIS_URL"]
)
def test_prod_refuses_to_start_without_a_required_variable(missing):
    env = {k: v for k, v in PROD_ENV.items() if k != missing}

    result = manage("check", **env)

    assert result.returncode != 0
    assert f"{missing} is required when ENV=PROD" in result.stderr


@pytest.mark.parametrize(
    "secret_key",
    [
        "changeme",
        "django-insecure-local-development-key-not-for-production",
        "collectstatic-only",
        "a" * 60,  # long but not random
        "Sh0rt-but-random-Kq2v9Lm3pZr8WtcN5yB1fHj6",  # 41 characters
        "django-insecure-" + "x7#kq2!v9Lm$3pZr8Wt&cN5yB1fHj6Dg0sQa4Ue+Rk",
    ],
)
def test_prod_refuses_to_start_with_a_weak_secret_key(secret_key):
    result = manage("check", **{**PROD_ENV, "SECRET_KEY": secret_key})

    assert result.returncode != 0
    assert "SECRET_KEY is too weak for ENV=PROD" in result.stderr


@pytest.mark.parametrize("hosts", ["*", "shop.example.com,*"])
def test_prod_refuses_to_start_with_any_host_allowed(hosts):
    result = manage("check", **{**PROD_ENV, "ALLOWED_HOSTS": hosts})

    assert result.returncode != 0
    assert "ALLOWED_HOSTS must name the service's host names" in result.stderr


@pytest.mark.parametrize("url", ["http://payments.example.com", "payments.internal:8080"])
def test_prod_refuses_a_payment_provider_over_plain_http(url):
    result = manage("check", **{**PROD_ENV, "REAL_PAYMENT_API": url})

    assert result.returncode != 0
    assert "REAL_PAYMENT_API must be an https:// URL" in result.stderr


def test_plain_http_to_the_provider_is_an_explicit_opt_out():
    code = "from django.conf import settings as s; print(s.PAYMENT_API_BASE_URL)"
    env = {**PROD_ENV, "REAL_PAYMENT_API": "http://payments.internal:8080"}

    result = manage("shell", "--no-imports", "-c", code, PAYMENT_API_ALLOW_HTTP="true", **env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["http://payments.internal:8080"]


def test_prod_shares_rate_limit_counters_through_redis():
    code = "from django.conf import settings as s; print(s.CACHES['ratelimit']['BACKEND'])"
    result = manage("shell", "--no-imports", "-c", code, **PROD_ENV)
    assert result.stdout.split() == ["django_redis.cache.RedisCache"]


@pytest.mark.parametrize(
    ("value", "expected"), [("", "ratelimit"), ("shop-staging", "shop-staging")]
)
def test_rate_limit_counters_count_under_the_key_prefix_the_environment_names(value, expected):
    # Several deployments on one Redis (or the API servers the tests start) each count
    # under their own prefix; by default under `ratelimit`, as before the variable.
    code = "from django.conf import settings as s; print(s.CACHES['ratelimit']['KEY_PREFIX'])"
    result = manage("shell", "--no-imports", "-c", code, **PROD_ENV, RATELIMIT_KEY_PREFIX=value)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [expected]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRUSTED_PROXIES", "10.0.0.0/8,proxy local", "'proxy local' is not an IP address"),
        ("RATELIMIT_PAY_PER_CART", "ten a minute", "RATELIMIT_PAY_PER_CART must be N/period"),
        ("RATELIMIT_TOKEN_PER_IP", "5/0m", "RATELIMIT_TOKEN_PER_IP must be N/period"),
    ],
)
def test_bad_edge_settings_are_start_up_errors(variable, value, message):
    result = manage("check", ENV="DEV", **{variable: value})

    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(("env", "on"), [("PROD", "True"), ("DEV", "False")])
def test_prod_needs_storefront_keys_and_hides_refusal_reasons(env, on):
    code = (
        "from django.conf import settings as s;"
        "print(s.REQUIRE_STOREFRONT_KEY, s.DISCOUNT_HIDE_REFUSAL_REASONS)"
    )
    result = manage("shell", "--no-imports", "-c", code, **{**PROD_ENV, "ENV": env})

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [on, on]


def test_prod_forces_debug_off_and_staff_only_management():
    code = (
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.REQUIRE_STAFF_FOR_MANAGEMENT, s.PAYMENT_API_BASE_URL,"
        " s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'])"
    )
    result = manage("shell", "--no-imports", "-c", code, DEBUG="true", **PROD_ENV)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["False", "True", "https://payments.example.com"]
    assert "BrowsableAPIRenderer" not in result.stdout


def test_dev_reads_fake_provider_and_database_url():
    code = (
        "from django.conf import settings as s;"
        "print(s.PAYMENT_API_BASE_URL, s.DATABASES['default']['ENGINE'],"
        " s.DATABASES['default']['CONN_MAX_AGE'])"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        ENV="DEV",
        FAKE_PAYMENT_API="fake_payment_api:5005",
        DATABASE_URL="postgres://shop:pw@db:5432/shop",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "http://fake_payment_api:5005",
        "django.db.backends.postgresql",
        "600",
    ]


def test_dev_keeps_debug_off_unless_asked():
    code = "from django.conf import settings as s; print(s.DEBUG)"
    assert manage("shell", "--no-imports", "-c", code, ENV="DEV").stdout.split() == ["False"]
    on = manage("shell", "--no-imports", "-c", code, ENV="DEV", DEBUG="true")
    assert on.stdout.split() == ["True"]
    bad = manage("check", ENV="DEV", DEBUG="perhaps")
    assert "DEBUG must be true or false" in bad.stderr


def test_bad_env_value_is_a_clear_start_up_error():
    result = manage("check", ENV="STAGING")

    assert result.returncode != 0
    assert "ENV must be DEV or PROD" in result.stderr


def test_default_database_is_sqlite_tuned_for_several_workers():
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['ENGINE'], d['OPTIONS']['transaction_mode'], d['OPTIONS']['init_command'])"
    )
    result = manage("shell", "--no-imports", "-c", code, ENV="DEV")  # no DATABASE_URL

    engine, mode, pragmas = result.stdout.split(maxsplit=2)
    assert engine == "common.sqlite"  # Django's, with its writers queued
    assert mode == "IMMEDIATE"
    assert "journal_mode=WAL" in pragmas
    assert "busy_timeout=20000" in pragmas


# Where each file reads the environment, and how.
ENV_READS = {
    "CoreRoot/settings.py": r'env_(?:str|bool|number|list|required)\("([A-Z_]+)"',
    "CoreRoot/gunicorn.py": r'environ\.get\("([A-Z_]+)"',
    "docker-compose.yml": r"\$\{([A-Z_]+)",
}


def configured_variables() -> set[str]:
    """Every variable the settings, gunicorn, Compose and the fake provider read."""
    found = {
        BALANCE_ENV_VAR,
        CARD_LIMIT_ENV_VAR,
        WEBHOOK_URL_ENV_VAR,
        WEBHOOK_SECRET_ENV_VAR,
        WEBHOOK_RETRY_ENV_VAR,
    }
    for path, pattern in ENV_READS.items():
        found |= set(re.findall(pattern, (ROOT / path).read_text()))
    return found


def test_env_example_and_readme_list_every_variable():
    variables = configured_variables()
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()

    assert {"SECRET_KEY", "GUNICORN_WORKERS", "API_PORT", "FAKE_PAYMENT_BALANCE"} <= variables
    assert {v for v in variables if not re.search(rf"^{v}=", example, re.M)} == set()
    assert {v for v in variables if f"`{v}`" not in readme} == set()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVENTS_SWEEP_SECONDS": "0"}, "EVENTS_SWEEP_SECONDS"),  # a sweep without a pause
        ({"EVENTS_SWEEP_SECONDS": "nan"}, "EVENTS_SWEEP_SECONDS"),
        ({"PAYMENT_API_READ_TIMEOUT": "-1"}, "PAYMENT_API_READ_TIMEOUT"),
        ({"PAYMENT_API_CONNECT_TIMEOUT": "inf"}, "PAYMENT_API_CONNECT_TIMEOUT"),
        ({"PAYMENT_API_MAX_RETRIES": "-1"}, "PAYMENT_API_MAX_RETRIES"),
        ({"DISCOUNT_RESERVATION_TTL": "0"}, "DISCOUNT_RESERVATION_TTL"),
        # An attempt closed as abandoned while its request may still land: a second card.
        ({"PAYMENT_ATTEMPT_STALE_SECONDS": "20"}, "PAYMENT_ATTEMPT_STALE_SECONDS"),
        # Above one call's worst case (21.6 s), not a charge's and its lookup's (43.2 s).
        ({"PAYMENT_ATTEMPT_STALE_SECONDS": "25"}, "PAYMENT_ATTEMPT_STALE_SECONDS"),
        (
            {"PAYMENT_API_READ_TIMEOUT": "30", "PAYMENT_ATTEMPT_STALE_SECONDS": "60"},
            "PAYMENT_ATTEMPT_STALE_SECONDS",
        ),
    ],
)
def test_numbers_the_service_cannot_run_with_are_refused_at_start(env, named):
    result = manage("check", ENV="DEV", **env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {
            "PAYMENT_API_CONNECT_TIMEOUT": "0.5",
            "PAYMENT_API_READ_TIMEOUT": "1.5",
            "PAYMENT_API_MAX_RETRIES": "3",
            "PAYMENT_API_RETRY_BACKOFF": "0.1",
        },
    ],
)
def test_the_start_up_check_uses_the_clients_own_worst_case(env):
    # The settings cannot import the client, so they compute the bound themselves
    # (PAYMENT_ATTEMPT_STALE_SECONDS must be above twice it): the two stay equal.
    code = (
        "from django.conf import settings as s; import CoreRoot.settings as c;"
        "from utils import PaymentAPI;"
        "api = PaymentAPI('http://127.0.0.1:9', connect_timeout=s.PAYMENT_API_CONNECT_TIMEOUT,"
        " read_timeout=s.PAYMENT_API_READ_TIMEOUT, max_retries=s.PAYMENT_API_MAX_RETRIES,"
        " backoff=s.PAYMENT_API_RETRY_BACKOFF);"
        "print(repr(c._PAYMENT_API_WORST_CASE), repr(api.worst_case_seconds))"
    )
    result = manage("shell", "--no-imports", "-c", code, ENV="DEV", **env)

    assert result.returncode == 0, result.stderr
    checked, client = (float(value) for value in result.stdout.split())
    assert checked == pytest.approx(client)
    assert client > 0


def test_zero_where_it_means_something_is_taken():
    # No retries, no pause between them, no limit on pays in flight, no persistent
    # connections, one try per shop event: each is a choice an operator may make.
    result = manage(
        "check",
        ENV="DEV",
        PAYMENT_API_MAX_RETRIES="0",
        PAYMENT_API_RETRY_BACKOFF="0",
        PAYMENT_MAX_IN_FLIGHT="0",
        DB_CONN_MAX_AGE="0",
        EVENTS_RETRY_FOR_SECONDS="0",
    )
    assert result.returncode == 0, result.stderr


def _settings_seen_with(env: dict) -> dict:
    code = (
        "import json; from django.conf import settings as s;"
        "print(json.dumps({k: repr(getattr(s, k)) for k in dir(s) if k.isupper()}))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_copying_env_example_changes_no_default():
    """The quickstart says `cp .env.example .env`: every value it holds must be the
    default, or empty (the default), or a copied file pins what the docs say follows
    something else (PAYMENT_MAX_IN_FLIGHT: half of GUNICORN_THREADS) and replaces what
    Compose passes when the variable is unset or empty (ALLOWED_HOSTS: Compose adds api
    and nginx, the names its containers call the API by)."""
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    outside = {k: v for k, v in os.environ.items() if k not in configured_variables()}
    outside.pop("DEBUG", None)
    outside["PYTHONHASHSEED"] = "0"  # settings holding sets print in one order
    # One variable set for real, which wins over the file (load_dotenv(override=False)).
    outside["GUNICORN_THREADS"] = "8"
    defaults = _settings_seen_with(outside)
    copied = _settings_seen_with({**example, **outside})

    changed = {k: (defaults[k], copied.get(k)) for k in defaults if copied.get(k) != defaults[k]}
    assert changed == {}


def test_env_example_leaves_composes_defaults_alone():
    """Compose reads .env to fill `${NAME:-default}`: a value there replaces Compose's
    default, so each must be empty or that default."""
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    compose = (ROOT / "docker-compose.yml").read_text()
    defaults = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", compose))
    assert {"ALLOWED_HOSTS", "API_PORT"} <= set(defaults)
    replaced = {
        name: (example[name], default)
        for name, default in defaults.items()
        if example.get(name) and example[name] != default
    }
    assert replaced == {}


@pytest.mark.parametrize(("value", "expected"), [("true", "True"), ("", "False")])
def test_server_side_cursors_can_be_turned_off_for_pgbouncer(value, expected):
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['DISABLE_SERVER_SIDE_CURSORS'])"
    )
    result = manage(
        "shell", "--no-imports", "-c", code, ENV="DEV", DB_DISABLE_SERVER_SIDE_CURSORS=value
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_prod_serves_health_and_metrics_over_plain_http_inside_the_cluster():
    code = "from django.conf import settings as s;print(s.SECURE_REDIRECT_EXEMPT)"
    result = manage("shell", "--no-imports", "-c", code, **PROD_ENV)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == r"['^health/', '^metrics$']"


def test_the_docs_say_what_debug_and_prod_do():
    """DEBUG is off by default in DEV too (the code above); PROD forces it off and turns
    the HTTPS hardening on. The README and .env.example say so, not the opposite."""
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    settings_doc = (ROOT / "CoreRoot/settings.py").read_text().split('"""')[1]
    env_row = next(line for line in readme.splitlines() if line.startswith("| `ENV` |"))

    for text in (env_row, example, settings_doc):
        assert "DEBUG on" not in text
    assert "DEBUG off" in env_row
    hardening = readme[readme.index("### Production mode") :]
    for promise in ("`DEBUG=true` is ignored", "HSTS", "secure cookies", "`/health/`"):
        assert promise in hardening


def postgres_settings(**env: str) -> list[str]:
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], d['OPTIONS'].get('prepare_threshold'),"
        " d['OPTIONS']['server_side_binding'], d['OPTIONS'].get('pool'))"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        ENV="DEV",
        DATABASE_URL="postgres://shop:pw@db:5432/shop",
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(" ", 4)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # TLS and a connect timeout asked for in the URL reach psycopg (they were dropped:
        # no TLS to a managed database, and a connect to a silent host hung for minutes).
        (
            "?sslmode=verify-full&connect_timeout=3",
            {"sslmode": "verify-full", "connect_timeout": 3},
        ),
        ("", {"connect_timeout": 5}),  # never the system's unbounded default
    ],
)
def test_postgres_takes_the_urls_connection_options(query, expected):
    code = (
        "import json; from django.conf import settings as s;"
        "print(json.dumps(s.DATABASES['default']['OPTIONS'], default=str))"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        ENV="DEV",
        DATABASE_URL=f"postgres://shop:pw@db:5432/shop{query}",
    )

    assert result.returncode == 0, result.stderr
    options = json.loads(result.stdout)
    assert options.items() >= expected.items()
    assert options["server_side_binding"] is True


def test_postgres_prepares_statements_and_sends_no_select_1_per_request():
    assert postgres_settings() == ["600", "False", "5", "True", "None"]
    # Behind PgBouncer in transaction pooling mode; Django's own check back.
    assert postgres_settings(DB_PREPARED_STATEMENTS="false", DB_CONN_HEALTH_CHECKS="true") == [
        "600",
        "True",
        "None",
        "False",
        "None",
    ]


def test_postgres_pool_replaces_persistent_connections_and_checks_what_it_hands_out():
    assert postgres_settings(DB_POOL="true", DB_POOL_MAX_SIZE="8") == [
        "0",
        "True",
        "5",
        "True",
        "{'min_size': 1, 'max_size': 8, 'timeout': 10}",
    ]


@pytest.mark.parametrize(
    ("value", "expected"), [(None, "100000 10000"), ("5000", "5000 500"), ("0", "0 0")]
)
def test_gunicorn_replaces_a_worker_after_max_requests(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "GUNICORN_MAX_REQUESTS"}
    if value is not None:
        env["GUNICORN_MAX_REQUESTS"] = value
    code = "import CoreRoot.gunicorn as g; print(g.max_requests, g.max_requests_jitter)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize(("value", "expected"), [(None, 70), ("", 70), ("120", 120)])
def test_a_stopping_gunicorn_waits_for_requests_in_progress_as_long_as_the_slowest_pay(
    value, expected
):
    """On SIGTERM (a rollout, a scale-down) gunicorn stops accepting and gives the
    requests in progress GUNICORN_GRACEFUL_TIMEOUT seconds: by default more than a pay
    may take (three provider calls at their worst, conftest.pay_worst_case_seconds),
    so a stopping replica never cuts a pay off while it waits on the provider."""
    env = {} if value is None else {"GUNICORN_GRACEFUL_TIMEOUT": value}

    assert gunicorn_setting("graceful_timeout", **env) == expected
    assert gunicorn_setting("graceful_timeout") > pay_worst_case_seconds()
