"""Schemathesis against the service's own OpenAPI schema, in process.

The schema is the one `/api/schema/` serves (drf-spectacular plus `common.schema`'s
`Error` component and error statuses). Every operation in it is called through
`CoreRoot.wsgi.application` (no network) inside pytest-django's test database, with the
real fake payment provider process behind `/pay/`, and every response must:

- not be a 5xx, except the provider faults `/pay/` and `/refund/` document (502, 503, 504);
- use a status code the schema documents for the operation;
- use a content type the schema documents for that status;
- have a body (errors included) and headers that match the schema.

`test_operation` generates valid (positive) and invalid (negative) requests for each
operation: Schemathesis' coverage phase (boundary values, missing and wrong-typed
fields, unexpected methods) and its fuzzing phase. `test_stateful` follows the links
Schemathesis infers from the schema (POST /api/cart/ -> GET, apply_discount, pay with the
new cart's id; POST /api/discount/ -> GET, PUT, PATCH with the new code's id), so those
operations are also called on resources that exist.

Random strings are almost never ISO-4217 codes and random numbers rarely fit a
currency's decimals, so valid carts, existing ids and usable codes would hardly ever be
generated. Dictionaries mix such values into half of the generated fields (the other
half stay random), and `known_objects` creates the cart and the discount they name.

Runs are reproducible: a fixed seed and no Hypothesis example database.
"""

import time
from contextlib import contextmanager
from decimal import Decimal

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cart.models import Cart
from common.testing import FakeProvider
from CoreRoot.wsgi import application
from discount.models import Discount, DiscountKind

SEED = 20_240_501
# Ids of the objects `known_objects` creates. The discount's id is far above what the
# database sequence hands out during a test run, so a discount created through the API
# never collides with it.
KNOWN_CART_ID = "6f1c2b7e-5d4a-4c3b-9a8f-0e1d2c3b4a59"
KNOWN_DISCOUNT_ID = 2_000_000_001
KNOWN_CODE = "FUZZ5"
KNOWN_USERNAME = "fuzzer"
KNOWN_PASSWORD = "a-long-fuzzer-password"

# Statuses `/pay/` and `/refund/` document for provider trouble: not server errors of ours.
PROVIDER_FAULTS = ["502", "503", "504"]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": 25, "database": "none"},
        "dictionaries": {
            "currencies": {"values": ["USD", "EUR", "JPY", "usd", "XXX"]},
            "amounts": {"values": [0, 1, 5, 10, 12.5, 19.99, 20, 99.99, 1000]},
            "cart_ids": {"values": [KNOWN_CART_ID, KNOWN_CART_ID.upper()]},
            "discount_ids": {"values": [KNOWN_DISCOUNT_ID]},
            "codes": {"values": [KNOWN_CODE, KNOWN_CODE.lower()]},
            "usernames": {"values": [KNOWN_USERNAME]},
            "passwords": {"values": [KNOWN_PASSWORD]},
        },
        "parameters": {
            "body.currency": {"dictionary": "currencies", "probability": 0.5},
            "body.total": {"dictionary": "amounts", "probability": 0.5},
            "body.value": {"dictionary": "amounts", "probability": 0.5},
        },
        "operations": [
            # `parameters` is not merged across entries: the first entry that sets it wins.
            {
                "include-path": [
                    "/api/cart/{id}/",
                    "/api/cart/{id}/pay/",
                    "/api/cart/{id}/refund/",
                ],
                "parameters": {"path.id": {"dictionary": "cart_ids", "probability": 0.5}},
            },
            {
                "include-path": "/api/cart/{id}/apply_discount/",
                "parameters": {
                    "path.id": {"dictionary": "cart_ids", "probability": 0.5},
                    "body.code": {"dictionary": "codes", "probability": 0.5},
                },
            },
            {
                "include-path": "/api/auth/token/",
                "parameters": {
                    "body.username": {"dictionary": "usernames", "probability": 0.5},
                    "body.password": {"dictionary": "passwords", "probability": 0.5},
                },
            },
            {
                "include-path": "/api/discount/{id}/",
                "parameters": {"path.id": {"dictionary": "discount_ids", "probability": 0.5}},
            },
            {
                "include-path": ["/api/cart/{id}/pay/", "/api/cart/{id}/refund/"],
                "checks": {
                    "not_a_server_error": {
                        "expected-statuses": ["2XX", "3XX", "4XX", *PROVIDER_FAULTS]
                    }
                },
            },
        ],
    }
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def load_schema():
    return schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)


schema = load_schema()


@pytest.fixture
def wsgi_in_test_transaction():
    """Let requests through the real WSGI handler run inside the test's transaction.

    Django closes the database connection after each request when it is not in
    autocommit mode, which a test transaction never is; Django's own test client
    disconnects the same signal handler for the same reason.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fast_password_hashing(settings):
    """Every failed token request hashes the password once; PBKDF2 would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def known_objects(db, fast_password_hashing):
    """A pending cart that can be discounted and paid, a discount code for it, and a staff
    user who can get a token."""
    get_user_model().objects.create_user(
        username=KNOWN_USERNAME, password=KNOWN_PASSWORD, is_staff=True
    )
    Cart.objects.create(
        id=KNOWN_CART_ID,
        subtotal=Decimal("15.00"),
        total=Decimal("15.00"),
        currency="USD",
        items_number=3,
    )
    Discount.objects.create(
        id=KNOWN_DISCOUNT_ID,
        code=KNOWN_CODE,
        kind=DiscountKind.AMOUNT,
        value=Decimal("5"),
        currency="USD",
    )


@contextmanager
def fresh_state(provider, fault=None):
    """Run one generated request (or one stateful scenario) from the same starting state.

    The database changes are rolled back afterwards and the provider is reset (full
    balance, no idempotency keys) before, so the outcome of a request depends on the
    request alone. Hypothesis needs that to replay and shrink what it finds, and stateful
    scenarios need it to draw the same steps from the same choices.
    """
    provider.reset()
    if fault is not None:
        provider.fault(**fault)
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


pytestmark = [
    pytest.mark.django_db,
    pytest.mark.integration,
    # Thousands of requests from one address: the limits are tested in common/tests.
    pytest.mark.usefixtures("wsgi_in_test_transaction", "known_objects", "no_rate_limits"),
]


@schema.parametrize()
# The fixtures are set up once per operation; `fresh_state` undoes each request's changes.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_operation(case, fake_provider):
    with fresh_state(fake_provider):
        case.call_and_validate(checks=CHECKS)


LATENCY_MS = 300


@pytest.fixture(params=["http_500", "http_503", "malformed", "reset", "empty_reply", "latency"])
def provider_fault(request, settings):
    """How the provider breaks every charge request during the test."""
    if request.param != "latency":
        yield {"kind": request.param, "count": None}
        return
    # Slower than the service waits, so the service times out and finds no charge in the
    # ledger yet: 504. One attempt per request keeps the late charges few.
    settings.PAYMENT_API_READ_TIMEOUT = 0.1
    settings.PAYMENT_API_MAX_RETRIES = 0
    yield {"kind": "latency", "count": None, "delay_ms": LATENCY_MS}
    # Let the last late charge land now rather than during the next test.
    time.sleep(2 * LATENCY_MS / 1000)


# `include()` would not narrow this schema: the `operations` entries of CONFIG already
# add an include filter, and include filters are alternatives. Exclude the rest instead.
@schema.exclude(path_regex=r"^(?!/api/cart/\{id\}/pay/$)").parametrize()
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_pay_during_provider_fault(case, fake_provider, provider_fault):
    with fresh_state(fake_provider, provider_fault):
        case.call_and_validate(checks=CHECKS)


class Workflow(load_schema().as_state_machine()):
    """Scenarios of up to `stateful_step_count` calls chained by the schema's links."""

    provider: FakeProvider

    def setup(self):
        self._state = fresh_state(self.provider)
        self._state.__enter__()

    def teardown(self):
        try:
            super().teardown()
        finally:
            self._state.__exit__(None, None, None)

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        case.validate_response(
            response,
            # A resource a POST just created must be there for the link that follows.
            checks=[*CHECKS, ensure_resource_availability],
            transport_kwargs=kwargs or None,
            recorder=self.recorder,
        )


def test_stateful(fake_provider):
    Workflow.provider = fake_provider
    Workflow.run(
        settings=settings(
            max_examples=30,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
