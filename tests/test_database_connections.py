"""A PostgreSQL backend that goes away (a restart, `pg_terminate_backend`) costs no client
a 500: the next request of each API worker gets a new connection.

Django's `SELECT 1` health check is off (`DB_CONN_HEALTH_CHECKS`); `common.connections`
notices a closed connection without a query, for persistent connections and for the pool
(`DB_POOL`). Each case runs the API under gunicorn (2 sync workers) on the test database,
ends every backend it holds, then asks again.
"""

import pytest
import requests
from django.db import connection

from cart.models import Cart
from cart.tests.factories import CartFactory
from conftest import stop_process, wait_until_answers
from tests.test_e2e import start_api, subprocess_database_url

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="server-side connections: PostgreSQL only"
    ),
]

REQUESTS = 8


def terminate_api_backends() -> int:
    """End every other backend of the test database (the API workers'), waiting up to
    5 s for each to be gone (the next request comes after it, as after a restart); how
    many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def read_cart_again_and_again(url: str, cart: Cart) -> list[int]:
    return [
        requests.get(f"{url}/api/cart/{cart.pk}/", timeout=10).status_code for _ in range(REQUESTS)
    ]


@pytest.mark.parametrize(
    "settings_env",
    [
        pytest.param({}, id="persistent connections, no SELECT 1"),
        pytest.param({"DB_POOL": "true"}, id="pool"),
        pytest.param({"DB_CONN_HEALTH_CHECKS": "true"}, id="Django's SELECT 1"),
        pytest.param({"DB_PREPARED_STATEMENTS": "false"}, id="no prepared statements"),
    ],
)
def test_a_terminated_backend_costs_no_client_an_error(tmp_path, settings_env):
    cart = CartFactory()
    env = {"DATABASE_URL": subprocess_database_url(), "ENV": "DEV", **settings_env}
    api = start_api(env, tmp_path / "api.log")
    try:
        wait_until_answers(f"{api.url}/health/ready/", api.process)
        assert read_cart_again_and_again(api.url, cart) == [200] * REQUESTS

        assert terminate_api_backends() >= 1
        statuses = read_cart_again_and_again(api.url, cart)
    finally:
        stop_process(api.process)

    assert statuses == [200] * REQUESTS, api.log.read_text()


def test_a_query_run_again_and_again_is_prepared_on_the_server():
    """DB_PREPARED_STATEMENTS (the default): server-side binding, so the query text
    repeats, and psycopg prepares it from its 5th run on the connection."""
    for _ in range(6):
        assert list(Cart.objects.filter(currency="PREPARE")) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]

    assert any('"cart_cart"."currency" = $1' in statement for statement in prepared), prepared
