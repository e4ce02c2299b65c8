"""Delivering events to the shop: signed as Standard Webhooks (checked by a real HTTP
receiver with `standardwebhooks`), one webhook-id across retries, exponential backoff, a
delivery log, giving up after the retry window, redelivering, and the sweep."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import simplejson
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from cart.tests.factories import CartFactory
from common.testing import WebhookReceiver
from events import services
from events.models import Event, EventDelivery, EventStatus, EventType
from events.tasks import deliver_event
from tests.test_payment_api_wire import provider as loopback_server
from tests.test_payment_api_wire import slowly

pytestmark = pytest.mark.django_db

OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LW9mLWFub3RoZXItc2hvcA=="


@pytest.fixture
def shop(settings):
    settings.EVENTS_RETRY_FIRST_SECONDS = 10
    with WebhookReceiver(settings.SHOP_WEBHOOK_SECRET) as receiver:
        settings.SHOP_WEBHOOK_URL = receiver.url
        yield receiver


def record_paid_event() -> Event:
    cart = CartFactory(total=Decimal("12.50"))
    data = {"cart": {"id": str(cart.pk), "total": Decimal("12.50")}}
    return services.event_record(type=EventType.CART_PAID, cart=cart, data=data)


def make_due(event: Event) -> None:
    Event.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())


def test_the_shop_receives_the_event_signed_and_it_is_logged(shop):
    event = record_paid_event()

    delivery = services.event_deliver(event_id=event.pk)

    assert shop.accepted_ids() == [str(event.pk)]
    _, body = shop.accepted[0]
    assert body["type"] == "cart.paid"
    assert body["data"]["cart"]["total"] == Decimal("12.50")
    assert delivery.status_code == 200
    assert delivery.error == ""
    assert delivery.attempt == 1
    assert delivery.next_retry_at is None
    assert shop.headers[0]["Content-Type"] == "application/json"
    assert shop.headers[0]["User-Agent"] == services.USER_AGENT
    event.refresh_from_db()
    assert event.status == EventStatus.DELIVERED
    assert event.delivered_at is not None
    assert event.next_attempt_at is None  # nothing more to send: no sweep takes it again


def test_a_shop_url_longer_than_the_log_column_is_logged_cut_to_it(settings, shop):
    # The delivery still goes to the whole URL; only its log entry is cut (500 characters).
    settings.SHOP_WEBHOOK_URL = f"{shop.url}?token={'t' * 600}"
    event = record_paid_event()

    delivery = services.event_deliver(event_id=event.pk)

    assert shop.accepted_ids() == [str(event.pk)]
    assert delivery.url == settings.SHOP_WEBHOOK_URL[:500]
    assert EventDelivery.objects.get(pk=delivery.pk).url == settings.SHOP_WEBHOOK_URL[:500]


def test_a_shop_with_another_secret_refuses_it_and_it_is_retried(settings, shop):
    settings.SHOP_WEBHOOK_SECRET = OTHER_SECRET
    event = record_paid_event()

    delivery = services.event_deliver(event_id=event.pk)

    assert delivery.status_code == 401
    assert len(shop.refused) == 1
    assert not shop.accepted
    event.refresh_from_db()
    assert event.status == EventStatus.PENDING


def test_failed_tries_back_off_exponentially_under_one_webhook_id(shop, settings, monkeypatch):
    shop.answers = [500, 503]
    monkeypatch.setattr(services.random, "random", lambda: 0.0)  # no jitter (tested below)
    event = record_paid_event()

    first = services.event_deliver(event_id=event.pk)
    assert services.event_deliver(event_id=event.pk) is None  # not due yet: nothing sent
    make_due(event)
    second = services.event_deliver(event_id=event.pk)
    make_due(event)
    third = services.event_deliver(event_id=event.pk)

    assert [d.status_code for d in EventDelivery.objects.filter(event=event)] == [500, 503, 200]
    assert [msg_id for msg_id, _ in shop.received] == [str(event.pk)] * 3
    assert shop.accepted_ids() == [str(event.pk)]
    # 10 s, then 20 s, counted from the end of each try (the delivery row is written just
    # after it: up to a second allowed for that, however slow the machine is)
    assert 9 <= (first.next_retry_at - first.created).total_seconds() <= 10
    assert 19 <= (second.next_retry_at - second.created).total_seconds() <= 20
    assert third.next_retry_at is None
    event.refresh_from_db()
    assert event.status == EventStatus.DELIVERED
    assert event.attempts == 3


def test_a_failed_try_queues_the_next_one_for_its_time(shop, django_capture_on_commit_callbacks):
    shop.answers = [500]
    event = record_paid_event()
    with django_capture_on_commit_callbacks(execute=True):
        delivery = services.event_deliver(event_id=event.pk)
    task = DBTaskResult.objects.get()
    assert task.args_kwargs["args"] == [str(event.pk)]
    assert task.run_after == delivery.next_retry_at
    assert Event.objects.get(pk=event.pk).next_attempt_at == delivery.next_retry_at  # the sweep's


def test_the_jitter_takes_up_to_a_tenth_off_the_backoff_never_more(settings, monkeypatch):
    settings.EVENTS_RETRY_FIRST_SECONDS = 10
    settings.EVENTS_RETRY_MAX_INTERVAL_SECONDS = 3600
    monkeypatch.setattr(services.random, "random", lambda: 0.0)
    assert [services.retry_delay(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert services.retry_delay(60) == 3600  # capped, however many tries
    monkeypatch.setattr(services.random, "random", lambda: 0.999999)
    assert services.retry_delay(1) == pytest.approx(9.0, abs=1e-4)
    assert services.retry_delay(60) == pytest.approx(3240, abs=1e-2)


def test_a_try_due_exactly_at_the_end_of_the_retry_window_is_still_made(settings, monkeypatch):
    settings.EVENTS_RETRY_FIRST_SECONDS = 10
    settings.EVENTS_RETRY_FOR_SECONDS = 60
    monkeypatch.setattr(services.random, "random", lambda: 0.0)  # no jitter: exactly 10 s
    event = record_paid_event()
    Event.objects.filter(pk=event.pk).update(attempts=1)
    event.refresh_from_db()
    window_ends = event.created + timedelta(seconds=60)

    last = window_ends - timedelta(seconds=10)
    assert services._next_retry(event, last) == window_ends
    assert services._next_retry(event, last + timedelta(microseconds=1)) is None


def test_an_unreachable_shop_is_logged_with_the_error(settings, shop):
    settings.SHOP_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here"
    event = record_paid_event()
    delivery = services.event_deliver(event_id=event.pk)
    assert delivery.status_code is None
    assert delivery.error.startswith("ConnectionError: ")
    assert delivery.next_retry_at is not None


def test_a_shop_that_does_not_answer_in_time_is_a_failed_try_with_its_wait_logged(settings, shop):
    settings.EVENTS_DELIVERY_TIMEOUT = 0.3
    shop.answers = ["hang"]
    event = record_paid_event()

    delivery = services.event_deliver(event_id=event.pk)
    shop.released.set()

    assert delivery.status_code is None
    assert delivery.error.startswith("ReadTimeout: ")
    assert 300 <= delivery.latency_ms < 3000
    assert delivery.next_retry_at is not None


def test_a_shop_answering_a_byte_at_a_time_is_given_up_at_the_deadline(settings):
    # Every byte within the read timeout, the whole in seconds: without a deadline on the
    # exchange the worker waited past the delivery's lease, and the event went twice.
    settings.EVENTS_DELIVERY_TIMEOUT = 0.5
    status_line = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with loopback_server(slowly(status_line, 0.2)) as url:
        settings.SHOP_WEBHOOK_URL = f"{url}/hooks"
        delivery = services.event_deliver(event_id=record_paid_event().pk)

    assert delivery.status_code is None
    assert "no answer within 1 s" in delivery.error
    assert delivery.latency_ms < 2500
    assert delivery.next_retry_at is not None


def test_a_shop_whose_answer_never_ends_is_delivered_on_its_status(settings):
    # Only the status counts: the body is not read (nor held in memory).
    settings.EVENTS_DELIVERY_TIMEOUT = 0.5
    endless = b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 200
    with loopback_server(slowly(endless, 0.05)) as url:
        settings.SHOP_WEBHOOK_URL = f"{url}/hooks"
        event = record_paid_event()
        delivery = services.event_deliver(event_id=event.pk)

    assert delivery.status_code == 200
    assert delivery.latency_ms < 2500
    assert Event.objects.get(pk=event.pk).status == EventStatus.DELIVERED


@pytest.mark.parametrize("answer", [300, 307])
def test_a_redirect_is_not_followed_the_body_goes_only_to_the_configured_url(shop, answer):
    shop.answers = [answer]  # a client that follows a 307 would post the signed body again
    event = record_paid_event()

    delivery = services.event_deliver(event_id=event.pk)

    assert delivery.status_code == answer
    assert delivery.next_retry_at is not None
    assert Event.objects.get(pk=event.pk).status == EventStatus.PENDING
    assert shop.received == [(str(event.pk), answer)]
    assert not shop.accepted


def test_retries_stop_after_the_retry_window(settings, shop):
    settings.EVENTS_RETRY_FOR_SECONDS = 60
    shop.answers = [500] * 10
    event = record_paid_event()
    Event.objects.filter(pk=event.pk).update(created=timezone.now() - timedelta(seconds=55))

    delivery = services.event_deliver(event_id=event.pk)

    assert delivery.next_retry_at is None
    event.refresh_from_db()
    assert event.status == EventStatus.FAILED
    assert event.next_attempt_at is None


def test_redeliver_sends_a_delivered_event_again_with_the_same_id(
    shop, django_capture_on_commit_callbacks
):
    event = record_paid_event()
    services.event_deliver(event_id=event.pk)

    with django_capture_on_commit_callbacks(execute=True):
        services.event_redeliver(event=event)
    assert event.status == EventStatus.PENDING
    queued = DBTaskResult.objects.get()
    deliver_event.call(*queued.args_kwargs["args"])  # what the worker runs

    assert shop.accepted_ids() == [str(event.pk), str(event.pk)]


def test_redeliver_changes_nothing_without_a_shop_endpoint(settings):
    settings.SHOP_WEBHOOK_URL = ""
    event = record_paid_event()
    assert services.event_redeliver(event=event).status == EventStatus.NOT_SENT


def test_a_delivery_under_way_holds_a_lease_only_on_its_own_event(shop, settings, monkeypatch):
    """While one event is being sent it is leased for EVENTS_DELIVERY_LEASE_SECONDS (no
    other worker sends it; the sweep takes it again if its worker dies); other due events
    stay due, their tries uncounted."""
    settings.EVENTS_DELIVERY_LEASE_SECONDS = 60
    event, other = record_paid_event(), record_paid_event()
    leases = []
    post = services._post

    def post_and_look(sent, url):
        leases.append(list(Event.objects.values_list("pk", "next_attempt_at", "attempts")))
        return post(sent, url)

    monkeypatch.setattr(services, "_post", post_and_look)
    started = timezone.now()
    services.event_deliver(event_id=event.pk)

    during = {pk: (due, attempts) for pk, due, attempts in leases[0]}
    lease, attempts = during[event.pk]
    assert attempts == 1
    assert started + timedelta(seconds=60) <= lease <= timezone.now() + timedelta(seconds=60)
    assert during[other.pk] == (other.next_attempt_at, 0)
    assert services.event_deliver(event_id=other.pk).status_code == 200


def test_a_delivery_settles_only_its_own_event_even_when_another_holds_the_same_lease(
    settings, shop, monkeypatch
):
    # Two workers that claim two events in the same microsecond hold equal leases: the
    # result of one try must not settle the other event, still being sent elsewhere.
    now = timezone.now()
    monkeypatch.setattr(services.timezone, "now", lambda: now)
    event, other = record_paid_event(), record_paid_event()
    lease = now + timedelta(seconds=settings.EVENTS_DELIVERY_LEASE_SECONDS)
    Event.objects.filter(pk=other.pk).update(next_attempt_at=lease, attempts=1)

    services.event_deliver(event_id=event.pk)

    other.refresh_from_db()
    assert (other.status, other.next_attempt_at, other.delivered_at) == (
        EventStatus.PENDING,
        lease,
        None,
    )
    assert Event.objects.get(pk=event.pk).status == EventStatus.DELIVERED


def test_a_try_that_outlived_its_lease_leaves_the_result_of_the_worker_that_took_over(
    settings, shop, monkeypatch
):
    settings.EVENTS_RETRY_FOR_SECONDS = 60
    shop.answers = [500]  # this try fails, and the retry window is over
    event = record_paid_event()
    Event.objects.filter(pk=event.pk).update(created=timezone.now() - timedelta(seconds=55))
    post = services._post

    def post_while_another_worker_delivers_it(sent, url):
        answered = post(sent, url)
        Event.objects.filter(pk=sent.pk).update(
            status=EventStatus.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None
        )
        return answered

    monkeypatch.setattr(services, "_post", post_while_another_worker_delivers_it)
    delivery = services.event_deliver(event_id=event.pk)

    assert delivery.status_code == 500  # logged as this try's answer
    assert Event.objects.get(pk=event.pk).status == EventStatus.DELIVERED


def test_a_delivery_under_way_elsewhere_is_not_sent_twice(shop):
    event = record_paid_event()
    lease = timezone.now() + timedelta(seconds=60)
    Event.objects.filter(pk=event.pk).update(next_attempt_at=lease)  # another worker has it
    assert services.event_deliver(event_id=event.pk) is None
    assert shop.received == []


def test_the_sweep_queues_deliveries_whose_task_was_lost(shop, settings):
    settings.EVENTS_DELIVERY_LEASE_SECONDS = 60
    lost = record_paid_event()
    fresh = record_paid_event()
    Event.objects.filter(pk=lost.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=61))

    assert services.events_requeue_due() == 1

    assert [t.args_kwargs["args"] for t in DBTaskResult.objects.all()] == [[str(lost.pk)]]
    assert fresh.pk != lost.pk


def test_the_task_delivers_through_the_service(shop):
    event = record_paid_event()
    assert deliver_event.call(str(event.pk)) == "try 1: 200"
    assert deliver_event.call(str(event.pk)).startswith("skipped")


# --- a cart's events in their order ---------------------------------------------------------


def record_event(cart, type: str) -> Event:
    data = {"cart": {"id": str(cart.pk), "total": cart.total}}
    return services.event_record(type=type, cart=cart, data=data)


def test_a_carts_later_event_waits_until_its_earlier_one_is_delivered(
    shop, django_capture_on_commit_callbacks
):
    # The shop must never hear "refunded" before the "paid" it follows: it would ship a
    # refunded order when the paid event came.
    cart = CartFactory()
    shop.answers = [500]
    paid = record_event(cart, EventType.CART_PAID)
    services.event_deliver(event_id=paid.pk)  # refused: retried later
    refunded = record_event(cart, EventType.CART_REFUNDED)

    assert services.event_deliver(event_id=refunded.pk) is None
    assert shop.accepted_ids() == []
    paid.refresh_from_db()
    refunded.refresh_from_db()
    assert refunded.attempts == 0  # not a try: it waits
    assert refunded.next_attempt_at == paid.next_attempt_at  # the sweep leaves it till then
    assert services.events_requeue_due() == 0

    make_due(paid)
    with django_capture_on_commit_callbacks(execute=True):
        services.event_deliver(event_id=paid.pk)

    assert shop.accepted_ids() == [str(paid.pk)]
    # sent on at once: due now, its task queued
    assert Event.objects.get(pk=refunded.pk).next_attempt_at <= timezone.now()
    assert DBTaskResult.objects.filter(args_kwargs__args=[str(refunded.pk)]).exists()
    services.event_deliver(event_id=refunded.pk)
    assert shop.accepted_ids() == [str(paid.pk), str(refunded.pk)]


def test_a_carts_events_are_numbered_in_the_order_they_are_recorded():
    cart, other = CartFactory(), CartFactory()
    paid = record_event(cart, EventType.CART_PAID)
    elsewhere = record_event(other, EventType.CART_PAID)
    refunded = record_event(cart, EventType.CART_REFUNDED)
    refunded_again = record_event(cart, EventType.CART_REFUNDED)

    assert [paid.sequence, refunded.sequence, refunded_again.sequence] == [1, 2, 3]
    assert elsewhere.sequence == 1  # each cart counts its own
    for event in (paid, refunded, refunded_again):
        assert simplejson.loads(event.body)["sequence"] == event.sequence


def test_the_carts_last_number_is_read_as_the_orm_reads_it():
    cart, other = CartFactory(), CartFactory()
    assert services.LAST_OF_CART.run(cart_id=cart.pk) == []
    for _ in range(3):
        record_event(cart, EventType.CART_PAYMENT_FAILED)
    record_event(other, EventType.CART_PAID)

    [compiled] = services.LAST_OF_CART.run(cart_id=cart.pk)
    [orm] = services.LAST_OF_CART.queryset(cart_id=cart.pk)
    assert (compiled.pk, compiled.sequence) == (orm.pk, orm.sequence)
    assert compiled.sequence == 3


def test_two_events_of_a_cart_never_share_a_number():
    # The number is taken under the cart's row lock; were an event ever recorded without
    # it, the database refuses the second number rather than leave the order undecided.
    paid = record_event(CartFactory(), EventType.CART_PAID)
    twin = Event(type=EventType.CART_REFUNDED, cart=paid.cart, created=paid.created, body="{}")
    twin.sequence = paid.sequence
    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()


def test_a_carts_order_is_the_recording_order_whatever_the_clocks_say(shop, monkeypatch):
    # Two API replicas whose clocks disagree by a second: the refund, recorded after the
    # payment (under the cart's lock), carries an earlier time. The shop must still hear
    # the payment first.
    cart = CartFactory()
    shop.answers = [500]
    paid = record_event(cart, EventType.CART_PAID)
    services.event_deliver(event_id=paid.pk)  # refused: retried later
    behind = paid.created - timedelta(seconds=1)
    monkeypatch.setattr(services.timezone, "now", lambda: behind)
    refunded = record_event(cart, EventType.CART_REFUNDED)
    monkeypatch.undo()
    assert refunded.created < paid.created
    make_due(refunded)

    assert services.event_deliver(event_id=refunded.pk) is None  # it waits for the paid one
    assert shop.accepted_ids() == []

    make_due(paid)
    services.event_deliver(event_id=paid.pk)
    services.event_deliver(event_id=refunded.pk)
    assert shop.accepted_ids() == [str(paid.pk), str(refunded.pk)]


def recorded_at(monkeypatch, moment, cart, type: str, numbered: bool = True) -> Event:
    monkeypatch.setattr(services.timezone, "now", lambda: moment)
    event = record_event(cart, type)
    monkeypatch.undo()
    if not numbered:  # as the release before numbering recorded it
        Event.objects.filter(pk=event.pk).update(sequence=None)
        event.sequence = None
    return event


def test_events_recorded_before_numbering_go_first_by_their_time(shop, monkeypatch):
    # During the rollout of numbering, the release before it still records events
    # without a number: they go before the cart's numbered ones, among themselves by
    # their time.
    cart = CartFactory()
    at = timezone.now()
    shop.answers = [500]
    numbered = recorded_at(monkeypatch, at - timedelta(seconds=5), cart, EventType.CART_PAID)
    late = recorded_at(monkeypatch, at + timedelta(seconds=1), cart, "cart.refunded", False)
    early = recorded_at(monkeypatch, at, cart, EventType.CART_PAYMENT_FAILED, False)
    assert numbered.sequence == 1  # numbers count the numbered events only
    for event in (numbered, late, early):
        make_due(event)

    assert services.event_deliver(event_id=numbered.pk) is None
    assert services.event_deliver(event_id=late.pk) is None
    services.event_deliver(event_id=early.pk)  # refused: retried later
    assert shop.accepted_ids() == []
    for event in (early, late, numbered):
        make_due(event)
        services.event_deliver(event_id=event.pk)
    assert shop.accepted_ids() == [str(early.pk), str(late.pk), str(numbered.pk)]


def test_numbered_and_unnumbered_events_never_wait_for_each_other_in_a_ring(shop, monkeypatch):
    # Numbers and times disagree (replicas' clocks), with an unnumbered event between:
    # one order for all of them, so one of them always goes.
    cart = CartFactory()
    at = timezone.now()
    first = recorded_at(monkeypatch, at + timedelta(seconds=2), cart, EventType.CART_PAID)
    old = recorded_at(monkeypatch, at + timedelta(seconds=1), cart, "cart.refunded", False)
    second = recorded_at(monkeypatch, at, cart, EventType.CART_REFUNDED)
    assert (first.sequence, second.sequence) == (1, 2)

    for _ in range(3):
        for event in (first, old, second):
            make_due(event)
            services.event_deliver(event_id=event.pk)
    assert shop.accepted_ids() == [str(old.pk), str(first.pk), str(second.pk)]


def test_another_carts_events_do_not_wait(shop):
    shop.answers = [500]
    stuck = record_event(CartFactory(), EventType.CART_PAID)
    services.event_deliver(event_id=stuck.pk)
    other = record_event(CartFactory(), EventType.CART_PAID)

    services.event_deliver(event_id=other.pk)

    assert shop.accepted_ids() == [str(other.pk)]


def test_an_earlier_event_given_up_on_holds_nothing_back(shop, settings):
    cart = CartFactory()
    shop.answers = [500]
    settings.EVENTS_RETRY_FOR_SECONDS = 0  # the first failure is the last try
    given_up = record_event(cart, EventType.CART_PAID)
    services.event_deliver(event_id=given_up.pk)
    assert Event.objects.get(pk=given_up.pk).status == EventStatus.FAILED
    settings.EVENTS_RETRY_FOR_SECONDS = 3600
    refunded = record_event(cart, EventType.CART_REFUNDED)

    services.event_deliver(event_id=refunded.pk)

    assert shop.accepted_ids() == [str(refunded.pk)]
