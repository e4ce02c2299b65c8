"""What a refund row says while its request is sent again: a resumed refund is
`processing` (so a second repeat is refused, not sent alongside), a refund tried again
after it was proven not made forgets its earlier failure, and no other refund changes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.models import Cart
from payments.errors import ProviderUnavailableError, RefundOutcomeUnknownError
from payments.models import Refund, RefundStatus
from payments.reconcile import payments_reconcile
from payments.tests.test_pay_service import (
    NOT_FOUND,
    REFUNDED,
    ScriptedProvider,
    refund_result,
    timeout,
    unavailable,
)
from payments.tests.test_refund_service import charge_of, made_in_ledger, paid_cart, refund

pytestmark = pytest.mark.django_db


def left_unknown(cart, key: str) -> Refund:
    with pytest.raises(RefundOutcomeUnknownError):
        refund(cart, "3.00", timeout(), key=key, find=[NOT_FOUND])
    return Refund.objects.get(cart=cart, request_key=key)


def seen_while_sent(refund_row: Refund, seen: list):
    """A provider step that records the row as the service left it during the request."""

    def step(request):
        seen.append(Refund.objects.get(pk=refund_row.pk))
        return refund_result(request)

    return step


def test_a_resumed_refund_is_processing_and_freshly_touched_while_sent_again():
    cart = paid_cart()
    held = left_unknown(cart, "r1")
    before = timezone.now()
    seen: list[Refund] = []

    refund(cart, "3.00", seen_while_sent(held, seen), key="r1")

    [during] = seen
    assert during.status == RefundStatus.PROCESSING
    assert during.updated >= before


def test_resuming_one_refund_leaves_the_open_refunds_of_other_carts_alone():
    first, second = paid_cart(), paid_cart()
    left_unknown(first, "r1")
    other = left_unknown(second, "r1")

    refund(first, "3.00", REFUNDED, key="r1")

    assert Refund.objects.get(pk=other.pk).status == other.status == RefundStatus.UNKNOWN


def test_a_refund_tried_again_after_it_was_not_made_forgets_the_earlier_failure():
    cart = paid_cart()
    with pytest.raises(ProviderUnavailableError):
        refund(cart, "3.00", unavailable(), key="r1")
    failed = Refund.objects.get()
    assert (failed.status, failed.completed is not None) == (RefundStatus.ERROR, True)
    seen: list[Refund] = []

    refund(cart, "3.00", seen_while_sent(failed, seen), key="r1")

    [during] = seen
    assert (during.status, during.error_code, during.error, during.completed) == (
        RefundStatus.PROCESSING,
        "",
        "",
        None,
    )
    assert charge_of(cart).amount_refunded == Decimal("3.00")


def test_a_refund_reserves_on_its_own_charge_only():
    first, second = paid_cart(), paid_cart()

    refund(first, "3.00", REFUNDED)
    with pytest.raises(ProviderUnavailableError):
        refund(first, "2.00", unavailable(), key="r1")
    refund(first, "2.00", REFUNDED, key="r1")  # tried again: reserved again

    assert charge_of(first).amount_refunded == Decimal("5.00")
    assert charge_of(second).amount_refunded == 0


def test_a_refund_closed_as_not_made_then_found_made_counts_again_on_the_cart():
    cart = paid_cart()
    with pytest.raises(ProviderUnavailableError):
        refund(cart, "3.00", unavailable(), key="r1")
    assert charge_of(cart).amount_refunded == 0  # the hold was released
    provider = ScriptedProvider(find=[made_in_ledger(cart)])

    result = payments_reconcile(older_than=timedelta(minutes=1), api=provider)

    assert result["refunds_made"] == 1
    made = Refund.objects.get()
    assert made.status == RefundStatus.SUCCESS
    assert charge_of(cart).amount_refunded == Decimal("3.00")
    assert Cart.objects.get(pk=cart.pk).amount_refunded == Decimal("3.00")


def test_an_unknown_refund_held_open_leaves_the_open_refunds_of_other_carts_alone():
    first, second = paid_cart(), paid_cart()
    other = left_unknown(second, "r1")
    other_updated = Refund.objects.get(pk=other.pk).updated

    left_unknown(first, "r1")

    assert Refund.objects.get(pk=other.pk).updated == other_updated
