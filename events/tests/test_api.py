"""GET /api/events/ (staff in production) and the admin's delivery log and "redeliver now"."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from events import services
from events.models import Event, EventDelivery, EventStatus, EventType

pytestmark = pytest.mark.django_db


def record(type=EventType.CART_PAID, cart=None) -> Event:
    cart = cart or CartFactory(total=Decimal("20.00"))
    data = {"cart": {"id": str(cart.pk), "total": Decimal("20.00")}}
    return services.event_record(type=type, cart=cart, data=data)


def test_staff_list_events_newest_first_with_their_data(staff_client, prod_access):
    older = record()
    newer = record(EventType.CART_REFUNDED)

    body = response_json(staff_client.get("/api/events/"))

    assert [e["id"] for e in body["results"]] == [str(newer.pk), str(older.pk)]
    first = body["results"][0]
    assert first["type"] == "cart.refunded"
    assert first["cart"] == str(newer.cart_id)
    assert first["data"]["cart"]["total"] == Decimal("20.00")
    assert first["status"] == "not_sent"
    assert first["sequence"] == 1  # its place among its cart's events, as in its body


def test_anonymous_callers_cannot_list_events_in_production(api_client, prod_access):
    record()
    response = api_client.get("/api/events/")
    assert response.status_code in (401, 403)
    assert error_of(response)["code"] in ("not_authenticated", "permission_denied")


def test_a_shop_that_missed_events_filters_by_time_type_and_cart(staff_client):
    old = record()
    Event.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=2))
    cart = CartFactory()
    paid = record(cart=cart)
    record(EventType.CART_REFUNDED)
    since = (timezone.now() - timedelta(days=1)).isoformat()

    recent = response_json(staff_client.get("/api/events/", {"created_after": since}))
    paid_only = response_json(
        staff_client.get("/api/events/", {"type": "cart.paid", "created_after": since})
    )
    of_cart = response_json(staff_client.get("/api/events/", {"cart": str(cart.pk)}))

    assert len(recent["results"]) == 2
    assert [e["id"] for e in paid_only["results"]] == [str(paid.pk)]
    assert [e["id"] for e in of_cart["results"]] == [str(paid.pk)]


def test_a_bad_filter_is_a_400_naming_the_field(staff_client):
    response = staff_client.get("/api/events/", {"type": "cart.exploded"})
    assert response.status_code == 400
    assert error_of(response)["field"] == "type"


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_utc_cannot_express_is_a_400_naming_the_filter(staff_client, value):
    # Valid ISO 8601, but a year 10000 and a year 0 in UTC, which no datetime can hold.
    record()
    response = staff_client.get("/api/events/", {"created_after": value})

    assert response.status_code == 400
    error = error_of(response)
    assert (error["field"], error["code"]) == ("created_after", "overflow")
    assert error["message"] == "Datetime value out of range."


def test_one_event_by_its_id(staff_client):
    event = record()
    body = response_json(staff_client.get(f"/api/events/{event.pk}/"))
    assert body["id"] == str(event.pk)


def test_the_admin_shows_the_delivery_log_and_redelivers(
    admin_client, settings, django_capture_on_commit_callbacks
):
    settings.SHOP_WEBHOOK_URL = "http://127.0.0.1:9/webhooks"
    event = record()
    services.event_deliver(event_id=event.pk)  # nothing listens: a logged failure
    Event.objects.filter(pk=event.pk).update(status=EventStatus.FAILED, next_attempt_at=None)

    page = admin_client.get(reverse("admin:events_event_change", args=[event.pk]))
    assert page.status_code == 200
    assert "ConnectionError" in page.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            reverse("admin:events_event_changelist"),
            {"action": "redeliver_now", "_selected_action": [str(event.pk)]},
            follow=True,
        )
    assert response.status_code == 200
    event.refresh_from_db()
    assert event.status == EventStatus.PENDING
    assert EventDelivery.objects.filter(event=event).count() == 1


def test_the_admin_lists_events_and_provider_events(admin_client):
    record()
    assert admin_client.get(reverse("admin:events_event_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:events_providerevent_changelist")).status_code == 200
