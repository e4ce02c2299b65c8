"""What a refund row says while its request is sent again: a resumed refund is
`processing` (so a second repeat is refused, not sent alongside), a refund tried again
after it was proven not made forgets its earlier failure, and no other refund changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from payments.errors import ProviderUnavailableError, RefundOutcomeUnknownError
from payments.models import Refund, RefundStatus
from payments.tests.test_pay_service import (
    NOT_FOUND,
    REFUNDED,
    refund_result,
    timeout,
    unavailable,
)
from payments.tests.test_refund_service import charge_of, paid_cart, refund

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
