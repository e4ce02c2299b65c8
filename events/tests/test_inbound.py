"""POST /api/webhooks/payment-provider/: signed provider events settle attempts forward
only; forged, stale, unsigned, replayed and duplicate events change nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django_tasks_db.models import DBTaskResult
from standardwebhooks import Webhook

from cart.models import Cart, PaymentStatus
from cart.tests.factories import CartFactory
from common.testing import error_of, response_json
from events.models import Event, EventType, ProviderEvent
from payments.models import ErrorCode, Payment, PaymentAttemptStatus, Refund, RefundStatus
from payments.tasks import give_back_duplicate

pytestmark = pytest.mark.django_db

URL = "/api/webhooks/payment-provider/"
FORGED_SECRET = "whsec_Zm9yZ2VkLXNlY3JldC1ub2JvZHktc2hhcmVz"


def signed(body: dict, *, msg_id="msg_1", secret=None, at=None) -> tuple[bytes, dict]:
    raw = json.dumps(body)
    at = at or datetime.now(UTC)
    signature = Webhook(secret or settings.PAYMENT_WEBHOOK_SECRET).sign(msg_id, at, raw)
    headers = {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(at.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": signature,
    }
    return raw.encode(), headers


def post(client, body: dict, **signing):
    raw, headers = signed(body, **signing)
    return client.post(URL, raw, content_type="application/json", **headers)


def attempt(cart: Cart, status=PaymentAttemptStatus.UNKNOWN, **fields) -> Payment:
    cart.payment_status = (
        PaymentStatus.PROCESSING if status in ("processing", "unknown") else cart.payment_status
    )
    cart.save()
    return Payment.objects.create(
        cart=cart,
        amount=cart.total,
        currency=cart.currency,
        payment_method="pm_card_visa",
        idempotency_key=f"cart-{cart.pk}-{fields.pop('key', 'k')}",
        status=status,
        **fields,
    )


def payment_event(payment: Payment, kind="payment.succeeded", **changes) -> dict:
    data = {
        "id": changes.pop("id", "pay_1"),
        "cart_id": str(payment.cart_id),
        "amount": int(payment.amount * 100),
        "currency": payment.currency,
        "payment_status": "success" if kind == "payment.succeeded" else "failed",
        "decline_code": None if kind == "payment.succeeded" else "generic_decline",
        "payment_method": payment.payment_method,
        "idempotency_key": payment.idempotency_key,
        "created": "2026-05-04T09:31:01.000000+00:00",
        **changes,
    }
    return {"id": "msg_1", "type": kind, "data": data}


def queued_give_backs() -> list[list]:
    """The arguments of each give_back_duplicate task queued for the worker."""
    return [
        task.args_kwargs["args"]
        for task in DBTaskResult.objects.filter(task_path=give_back_duplicate.module_path)
    ]


def test_a_signed_payment_succeeded_settles_an_unknown_attempt_and_the_shop_hears(api_client):
    cart = CartFactory(total=Decimal("20.00"))
    payment = attempt(cart)

    response = post(api_client, payment_event(payment))

    assert response.status_code == 200
    assert response_json(response)["outcome"] == "attempt unknown -> success"
    payment.refresh_from_db()
    assert payment.status == PaymentAttemptStatus.SUCCESS
    assert payment.provider_payment_id == "pay_1"
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS
    assert Event.objects.get(cart=cart).type == EventType.CART_PAID
    stored = ProviderEvent.objects.get()  # what operators read in the admin
    assert (stored.webhook_id, stored.type) == ("msg_1", "payment.succeeded")
    assert json.loads(stored.body)["data"]["idempotency_key"] == payment.idempotency_key


def test_a_duplicate_delivery_is_a_200_that_changes_nothing(api_client):
    cart = CartFactory()
    payment = attempt(cart)
    post(api_client, payment_event(payment))

    again = post(api_client, payment_event(payment))

    assert again.status_code == 200
    assert response_json(again)["outcome"].startswith("duplicate")
    assert ProviderEvent.objects.count() == 1
    assert Event.objects.filter(type=EventType.CART_PAID).count() == 1


def test_a_late_failed_never_undoes_a_success(api_client):
    cart = CartFactory()
    payment = attempt(cart)
    post(api_client, payment_event(payment), msg_id="msg_ok")

    late = post(api_client, payment_event(payment, "payment.failed"), msg_id="msg_late")

    assert late.status_code == 200
    assert "unchanged" in response_json(late)["outcome"]
    assert Payment.objects.get(pk=payment.pk).status == PaymentAttemptStatus.SUCCESS
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS


def test_payment_failed_declines_an_open_attempt(api_client):
    cart = CartFactory()
    payment = attempt(cart)
    post(api_client, payment_event(payment, "payment.failed"))
    payment.refresh_from_db()
    assert payment.status == PaymentAttemptStatus.FAILED
    assert payment.decline_code == "generic_decline"
    assert Event.objects.get(cart=cart).type == EventType.CART_PAYMENT_FAILED


def test_a_charge_of_an_attempt_closed_as_not_charged_pays_the_cart_late(api_client):
    cart = CartFactory()
    payment = attempt(cart, PaymentAttemptStatus.ERROR, error_code=ErrorCode.NOT_IN_LEDGER)
    Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.PENDING)

    response = post(api_client, payment_event(payment))

    assert response_json(response)["outcome"] == "attempt error -> success"
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS
    # the charge it records is the provider's: refunds of the cart go against it
    assert Payment.objects.get(pk=payment.pk).provider_payment_id == "pay_1"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"amount": 1999}, id="another_amount"),
        pytest.param({"currency": "EUR"}, id="another_currency"),
    ],
)
def test_a_charge_under_a_closed_attempts_key_that_is_not_what_it_sent_changes_nothing(
    api_client, changes
):
    # Recording it would mark the cart paid at its own total on the word of a record of
    # another payment (the same rule as for an open attempt, whichever door it comes by).
    cart = CartFactory(total=Decimal("20.00"), currency="USD")
    payment = attempt(cart, PaymentAttemptStatus.ERROR, error_code=ErrorCode.NOT_IN_LEDGER)
    Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.PENDING)

    response = post(api_client, payment_event(payment, **changes))

    assert response.status_code == 200
    assert response_json(response)["outcome"] == "does not match its attempt: left closed"
    payment.refresh_from_db()
    assert (payment.status, payment.provider_payment_id) == ("error", "")
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.PENDING
    assert not Event.objects.filter(cart=cart).exists()


def test_a_decline_of_an_attempt_closed_as_not_charged_changes_nothing(api_client):
    cart = CartFactory()
    payment = attempt(cart, PaymentAttemptStatus.ERROR, error_code=ErrorCode.NOT_IN_LEDGER)
    Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.PENDING)

    response = post(api_client, payment_event(payment, "payment.failed"))

    assert response_json(response)["outcome"] == "attempt already error: unchanged"
    payment.refresh_from_db()
    assert (payment.status, payment.error_code) == ("error", ErrorCode.NOT_IN_LEDGER)
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.PENDING
    assert not Event.objects.filter(cart=cart).exists()


def test_a_late_charge_of_a_cart_paid_since_is_a_duplicate_given_back(
    api_client, django_capture_on_commit_callbacks
):
    cart = CartFactory()
    closed = attempt(cart, PaymentAttemptStatus.ERROR, key="first")
    attempt(cart, PaymentAttemptStatus.SUCCESS, key="second", provider_payment_id="pay_2")
    Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.SUCCESS)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(api_client, payment_event(closed))

    assert response_json(response)["outcome"] == "attempt error -> duplicate"
    assert Payment.objects.get(pk=closed.pk).status == PaymentAttemptStatus.DUPLICATE
    assert len(callbacks) == 1
    assert queued_give_backs() == [[str(closed.pk)]]
    assert not Event.objects.filter(type=EventType.CART_PAID).exists()


def test_a_charge_of_an_attempt_open_on_a_cart_paid_since_is_a_duplicate_given_back(
    api_client, django_capture_on_commit_callbacks
):
    # Another card's late charge paid the cart while this attempt was open: its own
    # charge, when its webhook comes, is one too many, given back as a closed one's is
    # (it waited for the next reconcile run).
    cart = CartFactory()
    attempt(cart, PaymentAttemptStatus.SUCCESS, key="first", provider_payment_id="pay_1")
    still_open = attempt(cart, PaymentAttemptStatus.UNKNOWN, key="second")
    Cart.objects.filter(pk=cart.pk).update(payment_status=PaymentStatus.SUCCESS)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, payment_event(still_open, id="pay_2"))

    assert response_json(response)["outcome"] == "attempt unknown -> duplicate"
    assert Payment.objects.get(pk=still_open.pk).status == PaymentAttemptStatus.DUPLICATE
    assert queued_give_backs() == [[str(still_open.pk)]]
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.SUCCESS


def test_a_refund_succeeded_settles_an_open_refund(api_client):
    cart = CartFactory(total=Decimal("20.00"), payment_status=PaymentStatus.SUCCESS)
    paid = attempt(cart, PaymentAttemptStatus.SUCCESS, provider_payment_id="pay_9")
    Payment.objects.filter(pk=paid.pk).update(amount_refunded=Decimal("5.00"))
    refund = Refund.objects.create(
        payment=paid,
        cart=cart,
        amount=Decimal("5.00"),
        currency="USD",
        status=RefundStatus.UNKNOWN,
        idempotency_key="refund-1",
    )
    data = {
        "id": "re_1",
        "payment_id": "pay_9",
        "cart_id": str(cart.pk),
        "amount": 500,
        "currency": "USD",
        "status": "succeeded",
        "reason": "requested_by_customer",
        "idempotency_key": "refund-1",
        "created": "2026-05-04T09:31:01.000000+00:00",
    }

    response = post(api_client, {"id": "msg_r", "type": "refund.succeeded", "data": data})

    assert response_json(response)["outcome"] == "refund unknown -> success"
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.SUCCESS
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.PARTIALLY_REFUNDED
    assert Event.objects.get(cart=cart).type == EventType.CART_REFUNDED


@pytest.mark.parametrize(
    ("secret", "skew", "status", "code"),
    [
        (FORGED_SECRET, timedelta(0), 401, "webhook_signature_invalid"),
        (None, timedelta(minutes=-6), 400, "webhook_timestamp_out_of_tolerance"),
        (None, timedelta(minutes=6), 400, "webhook_timestamp_out_of_tolerance"),
    ],
)
def test_forged_and_stale_events_change_nothing(api_client, secret, skew, status, code):
    cart = CartFactory()
    payment = attempt(cart)
    signing = {"secret": secret, "at": datetime.now(UTC) + skew}  # at run time, not import

    response = post(api_client, payment_event(payment), **signing)

    assert response.status_code == status
    assert error_of(response)["code"] == code
    assert Payment.objects.get(pk=payment.pk).status == PaymentAttemptStatus.UNKNOWN
    assert not ProviderEvent.objects.exists()


def test_a_body_changed_after_signing_is_refused(api_client):
    cart = CartFactory()
    payment = attempt(cart)
    raw, headers = signed(payment_event(payment, "payment.failed"))
    tampered = raw.replace(b'"failed"', b'"success"').replace(b"generic_decline", b"nothing")
    response = api_client.post(URL, tampered, content_type="application/json", **headers)
    assert response.status_code == 401
    assert Payment.objects.get(pk=payment.pk).status == PaymentAttemptStatus.UNKNOWN


def test_unsigned_and_garbled_signatures_are_refused(api_client):
    raw = json.dumps({"type": "payment.succeeded", "data": {}}).encode()
    unsigned = api_client.post(URL, raw, content_type="application/json")
    assert unsigned.status_code == 400
    assert error_of(unsigned)["code"] == "webhook_headers_missing"
    now = str(int(datetime.now(UTC).timestamp()))
    garbled = api_client.post(
        URL,
        raw,
        content_type="application/json",
        HTTP_WEBHOOK_ID="msg_x",
        HTTP_WEBHOOK_TIMESTAMP=now,
        HTTP_WEBHOOK_SIGNATURE="v1,not-base64!",
    )
    assert garbled.status_code == 401
    not_a_time = api_client.post(
        URL,
        raw,
        content_type="application/json",
        HTTP_WEBHOOK_ID="msg_x",
        HTTP_WEBHOOK_TIMESTAMP="yesterday",
        HTTP_WEBHOOK_SIGNATURE="v1,AAAA",
    )
    assert not_a_time.status_code == 400
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"type": "payment.exploded", "data": {}},
        {"type": ["payment.succeeded"], "data": {}},
        {"type": {"payment.succeeded": 1}, "data": {}},
        {"type": "payment.succeeded", "data": "nope"},
        {"type": "payment.succeeded", "data": {"id": "pay_1", "amount": "1", "currency": "USD"}},
        {"type": "payment.succeeded", "data": {"id": "pay_1", "amount": 1, "currency": "XYZ"}},
        {"type": "refund.succeeded", "data": {"id": "re", "amount": 1, "currency": "USD"}},
        {
            "type": "payment.succeeded",
            "data": {"id": 7, "amount": 1, "currency": "USD", "payment_status": "success"},
        },
        [{"type": "payment.succeeded"}],
    ],
)
def test_a_signed_event_this_service_cannot_read_is_a_400_storing_nothing(api_client, body):
    response = post(api_client, body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "webhook_payload_invalid"
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {
            "type": "payment.succeeded",
            "data": {"id": "p", "amount": 10**90, "currency": "USD", "payment_status": "success"},
        },
        {
            "type": "refund.succeeded",
            "data": {
                "id": "re",
                "payment_id": "p",
                "amount": 10**90,
                "currency": "USD",
                "status": "succeeded",
            },
        },
    ],
)
def test_an_amount_with_more_digits_than_any_amount_is_a_400_saying_so(api_client, body):
    response = post(api_client, body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "webhook_payload_invalid"
    assert "amount" in error["message"]
    assert "decimal" not in error["message"]
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize("units", [-500, 0, 10**13])
def test_a_charge_of_an_amount_no_payment_has_is_a_400_recording_nothing(api_client, units):
    # Not a positive amount up to MAX_AMOUNT (10**13 cents are 10**11 USD): no payment of
    # ours, and recorded as a paid cart's duplicate charge it broke the amount column.
    cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
    attempt(cart, PaymentAttemptStatus.SUCCESS, provider_payment_id="pay_1")
    stray = Payment(cart=cart, amount=cart.total, currency="USD", idempotency_key="stray")

    response = post(api_client, payment_event(stray, id="pay_stray", amount=units))

    assert response.status_code == 400
    assert error_of(response)["code"] == "webhook_payload_invalid"
    assert "amount" in error_of(response)["message"]
    assert not Payment.objects.filter(status=PaymentAttemptStatus.DUPLICATE).exists()
    assert not ProviderEvent.objects.exists()


def test_a_signed_event_whose_id_is_longer_than_its_column_is_a_400_storing_nothing(
    api_client,
):
    # 200 characters is the stored id's column: a longer one was a 500 on PostgreSQL.
    cart = CartFactory()
    payment = attempt(cart)

    response = post(api_client, payment_event(payment), msg_id="m" * 201)

    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "webhook_payload_invalid",
        "webhook-id",
    )
    assert not ProviderEvent.objects.exists()
    payment.refresh_from_db()
    assert payment.status == PaymentAttemptStatus.UNKNOWN


def test_a_signed_body_that_is_not_json_is_a_400(api_client):
    at = datetime.now(UTC)
    signature = Webhook(settings.PAYMENT_WEBHOOK_SECRET).sign("msg_2", at, "not json")
    response = api_client.post(
        URL,
        b"not json",
        content_type="application/json",
        HTTP_WEBHOOK_ID="msg_2",
        HTTP_WEBHOOK_TIMESTAMP=str(int(at.timestamp())),
        HTTP_WEBHOOK_SIGNATURE=signature,
    )
    assert response.status_code == 400


def test_a_signed_body_nested_past_the_parsers_recursion_is_a_400(api_client):
    raw = '{"type": "payment.succeeded", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    at = datetime.now(UTC)
    signature = Webhook(settings.PAYMENT_WEBHOOK_SECRET).sign("msg_2", at, raw)

    response = api_client.post(
        URL,
        raw.encode(),
        content_type="application/json",
        HTTP_WEBHOOK_ID="msg_2",
        HTTP_WEBHOOK_TIMESTAMP=str(int(at.timestamp())),
        HTTP_WEBHOOK_SIGNATURE=signature,
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "webhook_payload_invalid"
    assert not ProviderEvent.objects.exists()


def test_without_a_secret_every_event_is_refused_503(api_client, settings):
    settings.PAYMENT_WEBHOOK_SECRET = ""
    raw = json.dumps({"type": "payment.succeeded", "data": {}}).encode()
    response = api_client.post(URL, raw, content_type="application/json")
    assert response.status_code == 503
    assert error_of(response)["code"] == "payment_webhooks_not_configured"


def test_events_for_no_attempt_of_ours_are_left_to_reconcile(api_client):
    cart = CartFactory()
    ghost = Payment(cart=cart, amount=cart.total, currency="USD", idempotency_key="elsewhere")
    response = post(api_client, payment_event(ghost))
    assert response.status_code == 200
    assert "reconcile" in response_json(response)["outcome"]
    refund = {"id": "re", "payment_id": "p", "amount": 1, "currency": "USD", "status": "succeeded"}
    other = post(api_client, {"type": "refund.succeeded", "data": refund}, msg_id="msg_9")
    assert "reconcile" in response_json(other)["outcome"]


def test_a_charge_of_a_paid_cart_no_attempt_sent_is_a_duplicate_to_give_back(
    api_client, django_capture_on_commit_callbacks
):
    cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
    attempt(cart, PaymentAttemptStatus.SUCCESS, provider_payment_id="pay_1")
    stray = Payment(cart=cart, amount=cart.total, currency="USD", idempotency_key="stray")
    stray.payment_method = "pm_card_visa"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(api_client, payment_event(stray, id="pay_stray"))
    assert response_json(response)["outcome"] == "duplicate charge recorded: to give back"
    duplicate = Payment.objects.get(provider_payment_id="pay_stray")
    assert (duplicate.status, duplicate.amount) == ("duplicate", cart.total)
    assert duplicate.payment_method == "pm_card_visa"  # the card charged twice, for the books
    assert len(callbacks) == 1
    assert queued_give_backs() == [[str(duplicate.pk)]]
    stray.idempotency_key = "another-stray"
    recorded = post(api_client, payment_event(stray, id="pay_1"), msg_id="msg_again")
    assert "already recorded" in response_json(recorded)["outcome"]


def test_the_give_back_task_of_a_duplicate_already_given_back_refunds_nothing():
    cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
    duplicate = attempt(
        cart, PaymentAttemptStatus.DUPLICATE, key="dup", provider_payment_id="pay_dup"
    )
    Payment.objects.filter(pk=duplicate.pk).update(amount_refunded=duplicate.amount)

    assert give_back_duplicate.call(str(duplicate.pk)) == "nothing owed"
    assert not Refund.objects.exists()


def test_a_decline_whose_code_is_not_text_is_recorded_without_a_code(api_client):
    cart = CartFactory()
    payment = attempt(cart)

    response = post(
        api_client, payment_event(payment, "payment.failed", decline_code={"reason": "stolen"})
    )

    assert response.status_code == 200
    payment.refresh_from_db()
    assert (payment.status, payment.decline_code) == (PaymentAttemptStatus.FAILED, "")
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.FAILED


@pytest.mark.parametrize("method", [["pm_card_visa"], {"card": "visa"}, 42])
def test_a_charge_whose_payment_method_is_not_text_is_recorded_without_one(api_client, method):
    cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
    attempt(cart, PaymentAttemptStatus.SUCCESS, provider_payment_id="pay_1")
    stray = Payment(cart=cart, amount=cart.total, currency="USD", idempotency_key="stray")

    response = post(api_client, payment_event(stray, id="pay_stray", payment_method=method))

    assert response_json(response)["outcome"] == "duplicate charge recorded: to give back"
    assert Payment.objects.get(provider_payment_id="pay_stray").payment_method == ""


# Text no column of ours holds: longer than its column (64 characters for the provider's
# ids, codes and methods, 255 for keys), or with a NUL, which PostgreSQL refuses in any
# text. Recording it was a 500 there (SQLite kept it whole).
TOO_LONG_ID, ID_WITH_NUL = "p" * 65, "pay_\x00"


@pytest.mark.parametrize("charge_id", [TOO_LONG_ID, ID_WITH_NUL], ids=["long", "nul"])
def test_a_charge_whose_id_no_column_holds_is_a_400_recording_nothing(api_client, charge_id):
    cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
    attempt(cart, PaymentAttemptStatus.SUCCESS, provider_payment_id="pay_1")
    stray = Payment(cart=cart, amount=cart.total, currency="USD", idempotency_key="stray")

    response = post(api_client, payment_event(stray, id=charge_id))

    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["message"]) == (
        "webhook_payload_invalid",
        "The event's data cannot be read: id must be text of at most 64 characters, without NUL",
    )
    assert not Payment.objects.filter(status=PaymentAttemptStatus.DUPLICATE).exists()
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize("refund_id", [TOO_LONG_ID, ID_WITH_NUL], ids=["long", "nul"])
def test_a_refund_whose_id_no_column_holds_is_a_400_changing_nothing(api_client, refund_id):
    refund = {
        "id": refund_id,
        "payment_id": "pay_1",
        "amount": 100,
        "currency": "USD",
        "status": "succeeded",
    }

    response = post(api_client, {"type": "refund.succeeded", "data": refund})

    assert response.status_code == 400
    assert error_of(response)["code"] == "webhook_payload_invalid"
    assert not ProviderEvent.objects.exists()


@pytest.mark.parametrize(
    ("member", "value", "recorded"),
    [
        ("payment_method", "m" * 65, {"payment_method": ""}),
        ("payment_method", "pm_\x00", {"payment_method": ""}),
        # A key we never sent names no attempt: the charge is recorded under its own id.
        ("idempotency_key", "k" * 256, {"idempotency_key": "provider-pay_stray"}),
        ("idempotency_key", "key\x00", {"idempotency_key": "provider-pay_stray"}),
    ],
    ids=["long-method", "method-with-nul", "long-key", "key-with-nul"],
)
def test_a_stray_charge_is_recorded_without_text_no_column_holds(
    api_client, member, value, recorded
):
    cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
    attempt(cart, PaymentAttemptStatus.SUCCESS, provider_payment_id="pay_1")
    stray = Payment(cart=cart, amount=cart.total, currency="USD", idempotency_key="stray")
    stray.payment_method = "pm_card_visa"

    response = post(api_client, payment_event(stray, id="pay_stray", **{member: value}))

    assert response_json(response)["outcome"] == "duplicate charge recorded: to give back"
    duplicate = Payment.objects.filter(provider_payment_id="pay_stray")
    assert list(duplicate.values(*recorded)) == [recorded]


@pytest.mark.parametrize("code", ["d" * 65, "stolen\x00"], ids=["long", "nul"])
def test_a_decline_whose_code_no_column_holds_is_recorded_without_a_code(api_client, code):
    cart = CartFactory()
    payment = attempt(cart)

    response = post(api_client, payment_event(payment, "payment.failed", decline_code=code))

    assert response.status_code == 200
    payment.refresh_from_db()
    assert (payment.status, payment.decline_code) == (PaymentAttemptStatus.FAILED, "")


def test_stray_charges_whose_key_is_not_text_are_each_recorded_and_given_back(
    api_client, django_capture_on_commit_callbacks
):
    # A key that is not text names no attempt: each charge is recorded under its own
    # charge id, so the second is given back as well as the first. Without a payment
    # method in the event, the books show none rather than one made up.
    cart = CartFactory(payment_status=PaymentStatus.SUCCESS)
    attempt(cart, PaymentAttemptStatus.SUCCESS, provider_payment_id="pay_1")
    stray = Payment(cart=cart, amount=cart.total, currency="USD", idempotency_key="unused")

    for number, charge in enumerate(["pay_a", "pay_b"]):
        event = payment_event(stray, id=charge, idempotency_key=7, payment_method=None)
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api_client, event, msg_id=f"msg_{number}")
        assert response_json(response)["outcome"] == "duplicate charge recorded: to give back"

    duplicates = Payment.objects.filter(status=PaymentAttemptStatus.DUPLICATE)
    assert sorted(duplicates.values_list("provider_payment_id", "payment_method")) == [
        ("pay_a", ""),
        ("pay_b", ""),
    ]
    assert sorted(queued_give_backs()) == sorted([str(d.pk)] for d in duplicates)
