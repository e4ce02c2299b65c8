"""Faults the fake provider injects into its write requests (charges and refunds).

    fault = Fault(FaultKind.CHARGE_THEN_RESET, delay_ms=0)
    plan = RandomFaults(rate=Decimal("0.2"), seed=7)     # a seeded, reproducible sequence
    plan.draw()   # the fault for the next write request, or None

Kinds, and whether the request is processed (charged, refunded) before it breaks:

    latency                  waits delay_ms, then answers normally           processed
    http_500, http_503       a JSON 500 / 503 instead of processing          not processed
    reset, empty_reply       the connection is reset / closed, no answer     not processed
    malformed                200 with a body that is not JSON                not processed
    charge_then_delay        processed, then the answer after delay_ms       processed
    charge_then_reset        processed, then the connection is reset         processed
    charge_then_empty_reply  processed, then the connection is closed        processed
    reset_then_charge        the connection is reset, then processed after    processed,
                             delay_ms (500 by default)                        later
    charge_then_trickle      processed, then the answer sent one byte every   processed
                             delay_ms (200 by default)

`charge_then_reset` and `charge_then_empty_reply` are what a load balancer resetting the
connection, or the provider's process dying right after it committed, look like to a
client: a request that *was* processed and never answered. A client that takes that for
"nothing happened" charges twice. `reset_then_charge` is the harder case: the connection
is reset while the provider is still at work, and the charge is committed only after
the reset, so a ledger lookup right after the reset finds nothing. A client that takes
that empty ledger for "nothing was charged" charges twice too. `charge_then_trickle`
sends every byte within any read timeout, so only a deadline on the whole exchange ends
it: a client without one waits minutes, past the time after which its attempt is taken
for abandoned.
"""

from __future__ import annotations

import os
import random
import socket
import struct
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from flask import Response, request

from fake_provider.wire import error_response

MAX_DELAY_MS = 600_000
# The start of a payment, cut off: what a client sees when a proxy drops the rest.
MALFORMED_BODY = b'{"cart_id": '


class FaultKind(StrEnum):
    LATENCY = "latency"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    RESET = "reset"
    EMPTY_REPLY = "empty_reply"
    MALFORMED = "malformed"
    CHARGE_THEN_DELAY = "charge_then_delay"
    CHARGE_THEN_RESET = "charge_then_reset"
    CHARGE_THEN_EMPTY_REPLY = "charge_then_empty_reply"
    RESET_THEN_CHARGE = "reset_then_charge"
    CHARGE_THEN_TRICKLE = "charge_then_trickle"


FAULT_KINDS = tuple(kind.value for kind in FaultKind)
# Kinds that process the request before the answer goes wrong (or arrives late).
PROCESSING_KINDS = frozenset(
    {
        FaultKind.LATENCY,
        FaultKind.CHARGE_THEN_DELAY,
        FaultKind.CHARGE_THEN_RESET,
        FaultKind.CHARGE_THEN_EMPTY_REPLY,
        FaultKind.RESET_THEN_CHARGE,
        FaultKind.CHARGE_THEN_TRICKLE,
    }
)
DELAYED_KINDS = frozenset(
    {
        FaultKind.LATENCY,
        FaultKind.CHARGE_THEN_DELAY,
        FaultKind.RESET_THEN_CHARGE,
        FaultKind.CHARGE_THEN_TRICKLE,
    }
)
DEFAULT_DELAY_MS: Mapping[FaultKind, int] = MappingProxyType(
    {
        FaultKind.LATENCY: 0,
        FaultKind.CHARGE_THEN_DELAY: 3000,
        FaultKind.RESET_THEN_CHARGE: 500,
        FaultKind.CHARGE_THEN_TRICKLE: 200,
    }
)
# Delays the random mode draws from for the delayed kinds, unless told otherwise.
RANDOM_DELAY_MS = (0, 3000)


@dataclass
class Fault:
    """A fault to inject; `remaining` None means until the queue is cleared."""

    kind: FaultKind
    delay_ms: int
    remaining: int | None = 1

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "count": self.remaining, "delay_ms": self.delay_ms}


@dataclass
class RandomFaults:
    """Every write request draws: with probability `rate` a fault of one of `kinds`.

    Each draw takes the same three numbers from a `random.Random(seed)` (hit or not, which
    kind, which delay), so the n-th request after the mode is set meets the same fault in
    every run with that seed, whatever happened before it.
    """

    rate: Decimal
    seed: int
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    delay_ms: tuple[int, int] = RANDOM_DELAY_MS
    draws: int = 0
    hits: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self) -> Fault | None:
        self.draws += 1
        roll = Decimal(repr(self.rng.random()))
        kind = self.rng.choice(self.kinds)
        delay_ms = self.rng.randint(*self.delay_ms)
        if roll >= self.rate:
            return None
        self.hits += 1
        return Fault(kind, delay_ms if kind in DELAYED_KINDS else 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": "random",
            "rate": str(self.rate),
            "seed": self.seed,
            "kinds": [kind.value for kind in self.kinds],
            "delay_ms": list(self.delay_ms),
            "draws": self.draws,
            "hits": self.hits,
        }


# An answer and the status the client gets; None: no answer at all (connection dropped).
Answer = tuple[Response, int | None]


def fault_answer(kind: FaultKind) -> Answer | None:
    """The answer a fault gives *instead of* processing, or None when processing goes ahead."""
    if kind == FaultKind.HTTP_500:
        return error_response(500, "internal_error", "Injected fault: internal error."), 500
    if kind == FaultKind.HTTP_503:
        message = "Injected fault: service unavailable."
        return error_response(503, "service_unavailable", message), 503
    if kind == FaultKind.MALFORMED:
        return Response(MALFORMED_BODY, 200, mimetype="application/json"), 200
    if kind in (FaultKind.RESET, FaultKind.EMPTY_REPLY):
        return drop_connection(kind)
    return None


def answer_after_processing(kind: FaultKind) -> Answer | None:
    """What replaces the real answer once the request was processed, or None to send it."""
    if kind == FaultKind.CHARGE_THEN_RESET:
        return drop_connection(FaultKind.RESET)
    if kind == FaultKind.CHARGE_THEN_EMPTY_REPLY:
        return drop_connection(FaultKind.EMPTY_REPLY)
    return None


def trickled(response: Response, pause_seconds: float, sleep) -> Response:
    """`response`, its body sent one byte every `pause_seconds` (each byte well within a
    client's read timeout). Stops when the client has gone: the write fails."""
    body = response.get_data()

    def bytes_slowly():
        for byte in body:
            yield bytes([byte])
            sleep(pause_seconds)

    slow = Response(bytes_slowly(), response.status_code, headers=dict(response.headers))
    slow.headers["Content-Length"] = str(len(body))
    return slow


def drop_connection(kind: FaultKind) -> Answer:
    """Close the client's connection without an answer: RST for reset, FIN for empty_reply.

    The server then writes its (empty) response to the closed socket and logs that the
    write failed; the server itself carries on. Without a real socket (Flask's test
    client) the answer is a JSON 500 `fault_unsupported_here`.
    """
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        message = f"The {kind.value} fault needs a real socket; this server gives none."
        return error_response(500, "fault_unsupported_here", message), 500
    with suppress(OSError):
        if kind == FaultKind.RESET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_RDWR)
    # sock.close() would wait for the server's own file objects on the socket to close;
    # closing the descriptor sends the RST or FIN now.
    with suppress(OSError):
        os.close(sock.detach())
    return Response(b"", 200), None
