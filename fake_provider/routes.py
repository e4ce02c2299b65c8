"""The fake provider's HTTP endpoints (a Flask blueprint; `create_app` registers it).

POST /request_payment, POST /refunds      the write requests: journaled, faults apply
GET  /payments[/<id>], GET /refunds[/<id>]  the ledgers, for reconciliation
GET  /inspect, /control/...               health and test controls
GET|POST /control/webhooks                the events sent (fake_provider.webhooks)
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from decimal import Decimal
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from fake_provider.faults import (
    DEFAULT_DELAY_MS,
    FAULT_KINDS,
    MAX_DELAY_MS,
    RANDOM_DELAY_MS,
    Answer,
    Fault,
    FaultKind,
    RandomFaults,
    answer_after_processing,
    drop_connection,
    fault_answer,
    trickled,
)
from fake_provider.state import JournalEntry, ProviderState, StoredReply
from fake_provider.webhooks import (
    WEBHOOK_DEFAULT_DELAY_MS,
    WEBHOOK_FAULT_KINDS,
    RandomWebhookFaults,
    WebhookFault,
    WebhookFaultKind,
)
from fake_provider.wire import (
    MONEY_RULE,
    RequestError,
    error_response,
    idempotency_key,
    is_integer,
    json_object,
    now_iso,
    parse_charge,
    parse_refund,
    readable_body,
    required,
    to_money,
)

EXTENSION_KEY = "fake_payment"

provider = Blueprint("fake_payment", __name__)


def provider_state() -> ProviderState:
    return current_app.extensions[EXTENSION_KEY]


@provider.app_errorhandler(RequestError)
def handle_request_error(error: RequestError) -> Response:
    return error.response()


@provider.app_errorhandler(HTTPException)
def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        response = error_response(404, "not_found", f"No route for {request.path}.")
    elif isinstance(error, MethodNotAllowed):
        message = f"{request.method} is not allowed on {request.path}."
        response = error_response(405, "method_not_allowed", message)
        response.headers["Allow"] = ", ".join(error.valid_methods or [])
    else:
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(status, code, error.description or code)
    return response


# -- the write requests ---------------------------------------------------------------------


@provider.post("/request_payment")
def request_payment() -> Response:
    def process(current: ProviderState, body: dict[str, Any], key: str | None):
        charge = parse_charge(body)
        return lambda: current.charge_once(charge, key)

    return write_request(process)


@provider.post("/refunds")
def create_refund() -> Response:
    def process(current: ProviderState, body: dict[str, Any], key: str | None):
        refund = parse_refund(body)
        return lambda: current.refund_once(refund, key)

    return write_request(process)


Processor = Callable[[ProviderState, dict[str, Any], str | None], Callable[[], Any]]


def write_request(prepare: Processor) -> Response:
    """Journal the request, validate it, apply a fault if any, process it."""
    current = provider_state()
    raw_body = request.get_data()
    entry = JournalEntry(
        method=request.method,
        path=request.path,
        idempotency_key=request.headers.get("Idempotency-Key"),
        body=readable_body(raw_body),
        at=now_iso(),
        request_id=request.headers.get("X-Request-ID"),
    )
    with current.lock:
        current.journal.append(entry)
    try:
        response, status = process_write(current, entry, raw_body, prepare)
    except RequestError as error:
        response, status = error.response(), error.status
    with current.lock:
        entry.status = status
    return response


def process_write(
    current: ProviderState, entry: JournalEntry, raw_body: bytes, prepare: Processor
) -> Answer:
    """Faults apply only to valid requests, so a bad request never uses up a queued one.
    A request the provider refuses while processing (a refund above what is left) is
    answered with its 400 before any fault that comes after processing."""
    key = idempotency_key()
    header_fault = fault_from_headers()
    process = prepare(current, json_object(raw_body), key)
    fault = header_fault or current.next_fault()
    if fault is not None:
        with current.lock:
            entry.fault = fault.kind.value
        if fault.kind == FaultKind.RESET_THEN_CHARGE:
            return reset_then_process(current, fault, process)
        answer = fault_answer(fault.kind)
        if answer is not None:
            return answer
        if fault.kind == FaultKind.LATENCY:
            current.sleep(fault.delay_ms / 1000)
    reply, replayed = process()
    if fault is not None:
        if fault.kind == FaultKind.CHARGE_THEN_DELAY:
            current.sleep(fault.delay_ms / 1000)
        broken = answer_after_processing(fault.kind)
        if broken is not None:
            return broken
        if fault.kind == FaultKind.CHARGE_THEN_TRICKLE:
            answer = stored_response(reply, replayed)
            return trickled(answer, fault.delay_ms / 1000, current.sleep), 200
    return stored_response(reply, replayed), 200


def reset_then_process(current: ProviderState, fault: Fault, process: Callable[[], Any]) -> Answer:
    """Reset the client's connection, then process the request `delay_ms` later: the
    commit lands after the client gave up on the answer (and after a ledger lookup made
    right away). Without a real socket nothing is dropped, and nothing is processed."""
    dropped = drop_connection(FaultKind.RESET)
    if dropped[1] is not None:
        return dropped
    current.sleep(fault.delay_ms / 1000)
    with suppress(RequestError):  # refused while processing: the client hears nothing
        process()
    return dropped


def stored_response(reply: StoredReply, replayed: bool) -> Response:
    response = Response(reply.body, 200, mimetype="application/json")
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


# -- the ledgers ----------------------------------------------------------------------------


@provider.get("/payments/<payment_id>")
def get_payment(payment_id: str) -> Response:
    current = provider_state()
    with current.lock:
        found = [p for p in current.ledger if p.id == payment_id]
    if not found:
        raise RequestError(404, "payment_not_found", f"No payment with id {payment_id}.")
    return jsonify(found[0].as_dict())


@provider.get("/payments")
def list_payments() -> Response:
    key = request.args.get("idempotency_key")
    cart_id = request.args.get("cart_id")
    current = provider_state()
    with current.lock:
        payments = [
            p
            for p in current.ledger
            if (key is None or p.idempotency_key == key)
            and (cart_id is None or str(p.cart_id) == cart_id)
        ]
    return jsonify({"data": [p.as_dict() for p in payments]})


@provider.get("/refunds/<refund_id>")
def get_refund(refund_id: str) -> Response:
    current = provider_state()
    with current.lock:
        found = [r for r in current.refunds if r.id == refund_id]
    if not found:
        raise RequestError(404, "refund_not_found", f"No refund with id {refund_id}.")
    return jsonify(found[0].as_dict())


@provider.get("/refunds")
def list_refunds() -> Response:
    key = request.args.get("idempotency_key")
    payment_id = request.args.get("payment_id")
    current = provider_state()
    with current.lock:
        refunds = [
            r
            for r in current.refunds
            if (key is None or r.idempotency_key == key)
            and (payment_id is None or r.payment_id == payment_id)
        ]
    return jsonify({"data": [r.as_dict() for r in refunds]})


# -- health and controls --------------------------------------------------------------------


@provider.get("/inspect")
def inspect_provider() -> Response:
    return jsonify(provider_state().snapshot())


@provider.get("/control/journal")
def journal() -> Response:
    current = provider_state()
    with current.lock:
        entries = [entry.as_dict() for entry in current.journal]
    return jsonify({"data": entries})


@provider.post("/control/reset")
def reset() -> Response:
    current = provider_state()
    current.reset()
    return jsonify(current.snapshot())


@provider.post("/control/balance")
def set_balance() -> Response:
    balance = to_money(required(json_object(request.get_data()), "balance"))
    if balance is None:
        raise RequestError(400, "invalid_field", f"balance {MONEY_RULE}", "balance")
    current = provider_state()
    with current.lock:
        current.balance = balance
    return jsonify(current.snapshot())


@provider.post("/control/faults")
def queue_fault() -> Response:
    body = json_object(request.get_data())
    mode = body.get("mode", "queue")
    current = provider_state()
    if is_webhook_fault(body, mode):
        queue_webhook_fault(current, body, mode)
    elif mode == "random":
        plan = parse_random_faults(body)
        with current.lock:
            current.random_faults = plan
    elif mode == "queue":
        fault = parse_queued_fault(body)
        with current.lock:
            current.faults.append(fault)
    else:
        message = 'mode must be "queue" (the default) or "random".'
        raise RequestError(400, "invalid_field", message, "mode")
    response = jsonify(current.snapshot())
    response.status_code = 201
    return response


@provider.delete("/control/faults")
def clear_faults() -> Response:
    """Clear the queue and the random mode; `?only=queue` or `?only=random` one of them."""
    only = request.args.get("only")
    if only not in (None, "queue", "random"):
        raise RequestError(400, "invalid_field", 'only must be "queue" or "random".', "only")
    current = provider_state()
    with current.lock:
        if only != "random":
            current.faults.clear()
        if only != "queue":
            current.random_faults = None
    if current.webhooks is not None:
        current.webhooks.clear_faults(queue=only != "random", random_mode=only != "queue")
    return jsonify(current.snapshot())


def is_webhook_fault(body: dict[str, Any], mode: Any) -> bool:
    """A fault for the events sent (webhook_* kinds) rather than for the write requests."""
    if mode == "random":
        kinds = body.get("kinds")
        return (
            isinstance(kinds, list)
            and bool(kinds)
            and all(kind in WEBHOOK_FAULT_KINDS for kind in kinds)
        )
    return body.get("kind") in WEBHOOK_FAULT_KINDS


def queue_webhook_fault(current: ProviderState, body: dict[str, Any], mode: str) -> None:
    if current.webhooks is None:
        raise RequestError(400, "invalid_field", "This provider sends no webhooks.", "kind")
    if mode == "random":
        # rate and seed are read and checked as for the write requests' random mode
        plan = parse_random_faults({**body, "kinds": list(FAULT_KINDS[:1])})
        kinds = tuple(WebhookFaultKind(kind) for kind in body["kinds"])
        current.webhooks.set_random_faults(
            RandomWebhookFaults(rate=plan.rate, seed=plan.seed, kinds=kinds)
        )
        return
    kind = WebhookFaultKind(body["kind"])
    count = body.get("count", 1)
    if count is not None and not (is_integer(count) and count > 0):
        message = "count must be a positive integer, or null for until cleared."
        raise RequestError(400, "invalid_field", message, "count")
    delay_ms = body.get("delay_ms")
    if delay_ms is None:
        delay_ms = WEBHOOK_DEFAULT_DELAY_MS.get(kind, 0)
    current.webhooks.add_fault(WebhookFault(kind, parse_delay_ms(delay_ms, "delay_ms"), count))


@provider.get("/control/webhooks")
def webhooks() -> Response:
    """Where events go, the faults waiting for them and every delivery made."""
    current = provider_state()
    if current.webhooks is None:
        return jsonify({"url": "", "deliveries": []})
    return jsonify(current.webhooks.snapshot())


@provider.post("/control/webhooks")
def configure_webhooks() -> Response:
    """`{"url": ..., "secret": ...}` (either): where events go and what signs them,
    until the next `POST /control/reset`."""
    body = json_object(request.get_data())
    current = provider_state()
    for name in ("url", "secret"):
        if name in body and not isinstance(body[name], str):
            raise RequestError(400, "invalid_field", f"{name} must be a string.", name)
    if current.webhooks is None:
        raise RequestError(400, "invalid_field", "This provider sends no webhooks.", "url")
    current.webhooks.configure(url=body.get("url"), secret=body.get("secret"))
    return jsonify(current.webhooks.snapshot())


def parse_queued_fault(body: dict[str, Any]) -> Fault:
    kind = parse_fault_kind(required(body, "kind"), "kind")
    count = body.get("count", 1)
    if count is not None and not (is_integer(count) and count > 0):
        message = "count must be a positive integer, or null for until cleared."
        raise RequestError(400, "invalid_field", message, "count")
    delay_ms = body.get("delay_ms")
    if delay_ms is None:
        delay_ms = DEFAULT_DELAY_MS.get(kind, 0)
    return Fault(kind, parse_delay_ms(delay_ms, "delay_ms"), count)


def parse_random_faults(body: dict[str, Any]) -> RandomFaults:
    """`{"mode": "random", "rate": 0.2, "seed": 7}`, optionally `"kinds": [...]` (default:
    every kind) and `"delay_ms": [min, max]` for the delayed kinds (default 0-3000)."""
    rate = required(body, "rate")
    if is_integer(rate):
        rate = Decimal(rate)
    if not (isinstance(rate, Decimal) and 0 < rate <= 1):
        raise RequestError(400, "invalid_field", "rate must be a number in (0, 1].", "rate")
    seed = required(body, "seed")
    if not is_integer(seed):
        raise RequestError(400, "invalid_field", "seed must be an integer.", "seed")
    kinds = body.get("kinds", FAULT_KINDS)
    if not isinstance(kinds, list | tuple) or not kinds:
        message = f"kinds must be a non-empty list of: {', '.join(FAULT_KINDS)}."
        raise RequestError(400, "invalid_field", message, "kinds")
    parsed_kinds = tuple(parse_fault_kind(kind, "kinds") for kind in kinds)
    delays = body.get("delay_ms", list(RANDOM_DELAY_MS))
    if not (isinstance(delays, list) and len(delays) == 2):
        message = "delay_ms must be [min, max] in milliseconds."
        raise RequestError(400, "invalid_field", message, "delay_ms")
    low, high = (parse_delay_ms(value, "delay_ms") for value in delays)
    if low > high:
        raise RequestError(400, "invalid_field", "delay_ms must be [min, max].", "delay_ms")
    return RandomFaults(rate=rate, seed=seed, kinds=parsed_kinds, delay_ms=(low, high))


def fault_from_headers() -> Fault | None:
    """The fault this one request asks for with X-Fake-Fault and X-Fake-Delay-Ms."""
    delay_header = request.headers.get("X-Fake-Delay-Ms")
    delay_ms = None
    if delay_header is not None:
        digits = delay_header.isascii() and delay_header.isdigit() and len(delay_header) < 10
        delay_ms = parse_delay_ms(int(delay_header) if digits else delay_header, "X-Fake-Delay-Ms")
    kind_header = request.headers.get("X-Fake-Fault")
    if kind_header is None:
        return None
    kind = parse_fault_kind(kind_header, "X-Fake-Fault")
    return Fault(kind, DEFAULT_DELAY_MS.get(kind, 0) if delay_ms is None else delay_ms)


def parse_fault_kind(value: Any, field_name: str) -> FaultKind:
    if isinstance(value, str) and value in FAULT_KINDS:
        return FaultKind(value)
    message = f"{field_name} must be one of: {', '.join(FAULT_KINDS)}."
    raise RequestError(400, "invalid_field", message, field_name)


def parse_delay_ms(value: Any, field_name: str) -> int:
    if not (is_integer(value) and 0 <= value <= MAX_DELAY_MS):
        message = f"{field_name} must be an integer from 0 to {MAX_DELAY_MS}."
        raise RequestError(400, "invalid_field", message, field_name)
    return value
