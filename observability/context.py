"""The request id of the work in progress: one per API request, worker task or command.

    with request_id_bound(incoming or new_request_id()):
        ...                       # every log line, provider call and new ledger row
    current_request_id()          # "" outside any request

A context variable, so threads (gunicorn's gthread workers) and tasks each see their
own. Nothing here imports Django: `utils.PaymentAPI` reads it to send `X-Request-ID` to
the provider, and model fields use `current_request_id` as their default, so an attempt,
refund or event row keeps the id of the request that created it.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

HEADER = "X-Request-ID"
MAX_LENGTH = 64
# What is accepted from a caller: printable, no spaces or quotes, so it is safe in a
# header, a log line and a database column. Anything else is replaced by a new id.
_ACCEPTED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,63}")

_request_id: ContextVar[str] = ContextVar("request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(value: str | None) -> str | None:
    """The caller's id if it is usable as it is, else None."""
    if value and _ACCEPTED.fullmatch(value):
        return value
    return None


def current_request_id() -> str:
    return _request_id.get()


@contextlib.contextmanager
def request_id_bound(value: str) -> Iterator[str]:
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)
