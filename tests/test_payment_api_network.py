"""`utils.PaymentAPI` over real sockets: the transport failures it classifies are the ones
requests and urllib3 really raise, against a closed port and the real fake provider."""

from __future__ import annotations

from decimal import Decimal

import pytest

from conftest import free_port
from utils import PaymentAPI, PaymentProviderTimeoutError, PaymentProviderUnavailableError

pytestmark = pytest.mark.integration


def client(url: str, *, retries: int = 0, read_timeout: float = 1.0) -> PaymentAPI:
    return PaymentAPI(
        url, connect_timeout=1.0, read_timeout=read_timeout, max_retries=retries, backoff=0
    )


def charge(api: PaymentAPI, key: str = "net-1"):
    return api.request_payment(cart_id="c-net", amount=Decimal("10.00"), idempotency_key=key)


def test_a_refused_connection_proves_the_request_never_left():
    api = client(f"http://127.0.0.1:{free_port()}", retries=1)

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(api)

    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (False, False)


def test_an_unresolvable_host_proves_the_request_never_left():
    api = client("http://provider.invalid")

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(api)

    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (False, False)


@pytest.mark.parametrize(
    "kind", ["reset", "empty_reply", "charge_then_reset", "charge_then_empty_reply"]
)
def test_a_dropped_answer_may_hide_a_charge(fake_provider, kind):
    fake_provider.fault(kind)

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(client(fake_provider.url))

    assert not isinstance(caught.value, PaymentProviderTimeoutError)
    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (True, False)


def test_a_retry_after_a_dropped_answer_gets_the_stored_charge(fake_provider):
    fake_provider.fault("charge_then_reset")

    result = charge(client(fake_provider.url, retries=1), key="net-retry")

    assert result.succeeded
    assert result.replayed
    assert len(fake_provider.charges("c-net")) == 1


def test_a_read_timeout_may_still_be_processed(fake_provider):
    fake_provider.fault("latency", delay_ms=1500)

    with pytest.raises(PaymentProviderTimeoutError) as caught:
        charge(client(fake_provider.url, read_timeout=0.5))

    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (True, True)


def test_a_refund_over_the_wire(fake_provider):
    api = client(fake_provider.url)
    paid = charge(api, key="net-paid")

    made = api.request_refund(
        payment_id=paid.payment_id,
        amount=Decimal("4.00"),
        currency="USD",
        idempotency_key="net-refund",
        reason="requested_by_customer",
    )
    found = api.find_refund(idempotency_key="net-refund")

    assert made.succeeded
    assert found == made
    assert [r["amount"] for r in fake_provider.refunds(paid.payment_id)] == [400]
