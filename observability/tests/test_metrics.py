"""GET /metrics: who may read it, and the counters moving as the shop works (in this
process; test_metrics_gunicorn.py checks several gunicorn workers add up)."""

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from cart.tests.factories import CartFactory
from common.testing import WebhookReceiver
from conftest import ROOT
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before, after, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_are_open_in_dev(api_client):
    assert api_client.get("/metrics").status_code == 200


def test_metrics_need_a_staff_token_in_prod(api_client, staff_user, settings):
    settings.METRICS_PUBLIC = False

    anonymous = api_client.get("/metrics")
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user)}")
    staff = api_client.get("/metrics")

    assert anonymous.status_code in (401, 403)
    assert staff.status_code == 200
    assert b"http_requests_total" in staff.content


def test_the_readme_overview_says_metrics_need_staff_with_prod():
    # METRICS_PUBLIC is false with ENV=PROD (the configuration table says so): the API
    # overview's column for PROD must not call the endpoint open.
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `GET /metrics` |"))
    with_prod = row.split(" | ")[-1]

    assert with_prod.startswith("staff")
    assert "`METRICS_PUBLIC=true`" in with_prod


def test_requests_are_counted_by_route_template_not_by_path(api_client):
    carts = [CartFactory(total="10.00") for _ in range(3)]
    before = scrape(api_client)

    for cart in carts:
        api_client.get(f"/api/cart/{cart.pk}/")
    after = scrape(api_client)

    route = {"method": "GET", "route": "/api/cart/{pk}/"}
    assert moved(before, after, "http_requests_total", **route, status="200") == 3
    assert moved(before, after, "http_request_duration_seconds_count", **route) == 3
    assert not any(str(carts[0].pk) in str(key) for key in after)


def test_invented_methods_are_counted_as_one_other_method(api_client):
    # Any caller can send any method: each one a series of its own would let anyone grow
    # /metrics (and Prometheus) without end.
    before = scrape(api_client)

    for n in range(5):
        api_client.generic(f"Q{n:05}", "/nope")
        api_client.generic(f"Q{n:05}", "/api/cart/")
    after = scrape(api_client)

    methods = {dict(labels)["method"] for _, labels in after if "method" in dict(labels)}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}
    other = {"method": "OTHER", "route": "<unmatched>", "status": "404"}
    assert moved(before, after, "http_requests_total", **other) == 5
    cart = {"method": "OTHER", "route": "/api/cart/", "status": "405"}
    assert moved(before, after, "http_requests_total", **cart) == 5


@pytest.mark.usefixtures("frozen_limiter_clock")
def test_discount_uses_refusals_and_rate_limits_are_counted(api_client, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "apply_discount_per_cart": "2/m"}
    discount = DiscountFactory(code="SAVE5")
    cart = CartFactory(total="20.00")
    before = scrape(api_client)

    url = f"/api/cart/{cart.pk}/apply_discount/"
    api_client.post(url, {"code": "NOPE"})
    api_client.post(url, {"code": discount.code})
    limited = api_client.post(url, {"code": discount.code})
    after = scrape(api_client)

    assert limited.status_code == 429
    refused = value(after, "discount_applications_total", outcome="discount_not_found") - value(
        before, "discount_applications_total", outcome="discount_not_found"
    )
    assert refused == 1
    assert moved(before, after, "discount_applications_total", outcome="applied") == 1
    route = "/api/cart/{pk}/apply_discount/"
    assert moved(before, after, "rate_limited_requests_total", route=route) == 1
    assert (
        moved(
            before, after, "http_errors_total", route=route, status="429", code="too_many_requests"
        )
        == 1
    )


@pytest.mark.integration
def test_payments_provider_calls_retries_and_refunds_are_counted(api_client, fake_provider):
    paid, declined = CartFactory(total="10.00"), CartFactory(total="25.00")
    before = scrape(api_client)

    fake_provider.fault("http_503", count=1)  # the first attempt fails, the retry charges
    assert api_client.post(f"/api/cart/{paid.pk}/pay/", {}).status_code == 200
    assert api_client.post(f"/api/cart/{declined.pk}/pay/", {}).status_code == 402
    refund = api_client.post(f"/api/cart/{paid.pk}/refund/", {"amount": Decimal("3.00")})
    assert refund.status_code == 200, refund.content
    after = scrape(api_client)

    assert moved(before, after, "payment_attempts_started_total") == 2
    outcome = {"decline_code": "", "error_code": ""}
    assert moved(before, after, "payment_outcomes_total", status="success", **outcome) == 1
    assert (
        moved(
            before,
            after,
            "payment_outcomes_total",
            status="failed",
            decline_code="insufficient_funds",
            error_code="",
        )
        == 1
    )
    charge = "POST /request_payment"
    assert (
        moved(before, after, "payment_provider_requests_total", operation=charge, outcome="503")
        == 1
    )
    assert (
        moved(before, after, "payment_provider_errors_total", operation=charge, outcome="503") == 1
    )
    assert moved(before, after, "payment_provider_retries_total", operation=charge) == 1
    assert (
        moved(before, after, "payment_provider_request_duration_seconds_count", operation=charge)
        == 3
    )
    reason = {"reason": "requested_by_customer"}
    assert moved(before, after, "refunds_total", status="processing", **reason) == 1
    assert moved(before, after, "refunds_total", status="success", **reason) == 1


@pytest.mark.integration
def test_attempts_open_right_now_are_read_from_the_database(api_client, fake_provider, settings):
    settings.PAYMENT_API_MAX_RETRIES = 0
    cart = CartFactory(total="10.00")
    fake_provider.fault("latency", delay_ms=1500)  # charges after our 1 s timeout

    response = api_client.post(f"/api/cart/{cart.pk}/pay/", {})
    samples = scrape(api_client)

    assert response.status_code == 504, response.content
    assert value(samples, "payment_attempts_open", status="unknown") == 1
    assert value(samples, "payment_attempts_open", status="processing") == 0
    assert value(samples, "refunds_open", status="unknown") == 0


def test_every_dashboard_query_names_a_metric_the_service_exports(api_client):
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "shop.json").read_text())
    exported = {
        family.name
        for family in text_string_to_metric_families(api_client.get("/metrics").content.decode())
    }
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    # Histograms and counters are queried by their series names (_bucket, _total).
    named = set()
    for query in queries:
        # Leave the metric names: no label matchers, ranges, grouping labels or functions.
        bare = re.sub(r"\{[^}]*\}|\[[^]]*\]|\bby\s*\([^)]*\)|[0-9.]+", " ", query)
        for name in re.findall(r"\b([a-z_]+)\b(?!\s*\()", bare):
            named.add(re.sub(r"_(bucket|total|count|sum)$", "", name))

    assert len(dashboard["panels"]) >= 10
    assert "payment_attempts_open" in named
    assert named <= exported, named - exported


def test_the_outbox_backlog_and_failing_deliveries_are_read_from_the_database(
    api_client, settings
):
    from django.utils import timezone

    from events import services
    from events.models import Event, EventType

    settings.EVENTS_RETRY_FIRST_SECONDS = 10
    with WebhookReceiver(settings.SHOP_WEBHOOK_SECRET, answers=[500]) as shop:
        settings.SHOP_WEBHOOK_URL = shop.url
        cart = CartFactory(total="12.50")
        event = services.event_record(type=EventType.CART_PAID, cart=cart, data={})
        Event.objects.filter(pk=event.pk).update(created=timezone.now() - timedelta(seconds=90))
        waiting = scrape(api_client)

        failed_try = services.event_deliver(event_id=event.pk)
        failing = scrape(api_client)

        Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        delivered = services.event_deliver(event_id=event.pk)
        after = scrape(api_client)

    assert (failed_try.status_code, delivered.status_code) == (500, 200)
    assert value(waiting, "events_outbox_backlog", status="pending") == 1
    assert value(waiting, "events_outbox_failing") == 0
    assert 90 <= value(waiting, "events_outbox_oldest_pending_age_seconds") < 120
    assert value(failing, "events_outbox_backlog", status="pending") == 1
    assert value(failing, "events_outbox_failing") == 1
    assert value(after, "events_outbox_backlog", status="pending") == 0
    assert value(after, "events_outbox_failing") == 0
    assert value(after, "events_outbox_oldest_pending_age_seconds") == 0


def test_events_whose_retries_ran_out_are_counted_until_redelivered(api_client, settings):
    from events import services
    from events.models import EventType

    settings.EVENTS_RETRY_FOR_SECONDS = 0  # the first failed try is the last
    with WebhookReceiver(settings.SHOP_WEBHOOK_SECRET, answers=[503]) as shop:
        settings.SHOP_WEBHOOK_URL = shop.url
        event = services.event_record(
            type=EventType.CART_PAID, cart=CartFactory(total="5.00"), data={}
        )
        services.event_deliver(event_id=event.pk)
        given_up = scrape(api_client)

        services.event_redeliver(event=event)
        services.event_deliver(event_id=event.pk)
        after = scrape(api_client)

    assert value(given_up, "events_outbox_backlog", status="failed") == 1
    assert value(given_up, "events_outbox_backlog", status="pending") == 0
    assert value(after, "events_outbox_backlog", status="failed") == 0


def test_the_database_gauges_cost_one_query_each_scrape(api_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from observability import metrics

    with CaptureQueriesContext(connection) as queries:
        metrics.render()

    outbox = [q["sql"] for q in queries if "events_event" in q["sql"]]
    assert len(outbox) == 1, outbox
