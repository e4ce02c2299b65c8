"""Where the service meets the payment provider: how many calls may wait on it, and the one
rule that decides what a failed call proves.

    with provider_slot():                         # ProviderBusyError when the process
        result = provider_api().request_payment(...)  # already waits on enough calls
    verdict = outcome_after_failure(error, earlier=FIRST_CALL, look_up=lookup)

**Slots.** A provider that answers slowly must not take the API down with it: every
gunicorn thread waiting on the provider is a thread that cannot serve a read. Each process
lets at most `settings.PAYMENT_MAX_IN_FLIGHT` pays and refunds wait on the provider at
once (0: no limit); one more is refused at once with `503 payment_provider_busy` and
`Retry-After`, before anything is opened or sent, so the refusal changes nothing. The
default leaves half of the gunicorn threads to everything else (README: "Pay and a slow
provider").

**The rule** (`outcome_after_failure`), the same for charges and refunds: once a request
may have left the client, its outcome is unknown until the provider's ledger says
otherwise. A call that failed may be closed as "nothing done" only when

  (a) it is the attempt's first call and every request of it provably never reached
      the provider (refused connection, DNS failure, connect timeout), or
  (b) it is the attempt's first call and the provider answered a refusal (a 4xx of its
      own, such as a refused payment method), or
  (c) the attempt was resumed (it sent requests in earlier calls), no request of this
      call can have reached the provider (as in (a) or (b)), none of the earlier ones
      can still land (their in-flight window has passed), and the ledger, read by the
      idempotency key, has nothing under it.

A request that may have reached the provider (a reset or EOF after sending, a read
timeout, a 5xx, garbage) is never closed by an empty ledger: the provider may commit it
after the lookup (a load balancer resets the connection while the provider works on, a
gateway answers 502/504 before it is done). Such an attempt stays open (`unknown`) with
an in-flight window (`settings.PAYMENT_ATTEMPT_STALE_SECONDS`); resuming it with its own
key is safe, and once the window has passed the ledger settles it (`payments_reconcile`,
or the next pay). The answer says `payment_taken: null` (`refund_made: null`) while it is
open, and `false` only after (a), (b) or (c).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings

import utils
from payments.errors import ProviderBusyError, RefundProviderBusyError
from payments.models import ErrorCode


def provider_api() -> utils.PaymentAPI:
    return utils.payment_api()


@functools.cache
def _slots(limit: int) -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(limit)


class _CallTimes:
    """How long provider calls held their slot lately (an exponentially weighted mean),
    so a busy answer can say when a slot is likely free again: `Retry-After`."""

    WEIGHT = 0.2

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mean = 1.0

    def add(self, seconds: float) -> None:
        with self.lock:
            self.mean += self.WEIGHT * (seconds - self.mean)

    def retry_after(self) -> int:
        """Whole seconds, at least 1, at most the client's read timeout."""
        ceiling = max(1, math.ceil(settings.PAYMENT_API_READ_TIMEOUT))
        return min(ceiling, max(1, math.ceil(self.mean)))


_call_times = _CallTimes()


@contextmanager
def provider_slot(*, subject: str = "payment") -> Iterator[None]:
    """Hold one of the process's provider slots for the block, or raise
    `ProviderBusyError` at once when none is free (its `Retry-After`: about how long
    provider calls have been taking)."""
    limit = settings.PAYMENT_MAX_IN_FLIGHT
    if limit <= 0:
        yield
        return
    slots = _slots(limit)
    if not slots.acquire(blocking=False):
        busy = RefundProviderBusyError if subject == "refund" else ProviderBusyError
        raise busy(retry_after=_call_times.retry_after())
    started = time.monotonic()
    try:
        yield
    finally:
        slots.release()
        _call_times.add(time.monotonic() - started)


@dataclass(frozen=True)
class Verdict:
    """What a failed call proves. Exactly one of: `found` (the provider's own record of
    it: that is the outcome), `closed` (proven not done: close with this code), or
    `unknown` (stays open with this code; `in_flight`: a request may still land)."""

    found: Any = None
    closed: ErrorCode | None = None
    unknown: ErrorCode | None = None
    in_flight: bool = False


@dataclass(frozen=True)
class EarlierRequests:
    """What the requests sent for the same attempt (or refund) by earlier calls may have
    done: `sent`, it was left open, so they may have been processed; `in_flight`, one of
    them may even be processed later."""

    sent: bool = False
    in_flight: bool = False


FIRST_CALL = EarlierRequests()


def outcome_after_failure(
    error: utils.PaymentProviderError,
    *,
    earlier: EarlierRequests,
    look_up: Callable[[], Any],
) -> Verdict:
    """Apply the rule of this module's docstring to a failed charge or refund.

    `earlier`: what requests of the same attempt sent by earlier calls may have done.
    `look_up()` reads the provider's ledger by the attempt's key (None: nothing).
    """
    if not error.maybe_processed and not earlier.sent:
        return Verdict(closed=_refusal_code(error))  # (a) or (b)
    # A request of this call that may have reached the provider may be committed after
    # the lookup, as may one sent earlier that is still in flight.
    in_flight = earlier.in_flight or error.maybe_processed
    try:
        found = look_up()
    except utils.PaymentProviderError:
        return Verdict(unknown=ErrorCode.OUTCOME_UNKNOWN, in_flight=in_flight)
    if found is not None:
        return Verdict(found=found)
    if in_flight:
        return Verdict(unknown=ErrorCode.OUTCOME_UNKNOWN, in_flight=True)
    return Verdict(closed=_refusal_code(error))  # (c)


def _refusal_code(error: utils.PaymentProviderError) -> ErrorCode:
    if isinstance(error, utils.PaymentMethodRejectedError):
        return ErrorCode.PAYMENT_METHOD_REFUSED
    if isinstance(error, utils.RefundRefusedError):
        return ErrorCode.REFUND_REFUSED
    if isinstance(error, utils.PaymentProviderProtocolError):
        return ErrorCode.PROVIDER_ERROR
    return ErrorCode.PROVIDER_UNAVAILABLE
