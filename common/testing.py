"""Helpers for tests (imported by test modules, never by the service)."""

from __future__ import annotations

import json
from decimal import Decimal


def response_json(response) -> dict:
    """The response's JSON with numbers read as Decimal, as a careful client reads them."""
    return json.loads(response.content, parse_float=Decimal)


def error_of(response) -> dict:
    """The `error` member of an error response."""
    return response_json(response)["error"]


class FakeProvider:
    """Drives a running fake payment provider (fake_payment_server.py) from a test."""

    def __init__(self, url: str):
        import requests

        self.url = url
        self._http = requests.Session()

    def _call(self, method: str, path: str, **kwargs):
        response = self._http.request(method, f"{self.url}{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._call("POST", "/control/reset")

    def fault(self, kind: str, count: int | None = 1, delay_ms: int | None = None) -> None:
        """Break the next `count` charge or refund requests (None: until reset)."""
        fault = {"kind": kind, "count": count}
        if delay_ms is not None:
            fault["delay_ms"] = delay_ms
        self._call("POST", "/control/faults", json=fault)

    def random_faults(self, rate: float, seed: int, **options) -> None:
        """Break a seeded random share of the write requests (`kinds`, `delay_ms`)."""
        self._call(
            "POST",
            "/control/faults",
            json={"mode": "random", "rate": rate, "seed": seed, **options},
        )

    def clear_faults(self) -> None:
        self._call("DELETE", "/control/faults")

    def set_balance(self, balance: str) -> None:
        self._call("POST", "/control/balance", json={"balance": balance})

    def inspect(self) -> dict:
        return self._call("GET", "/inspect")

    def payments(self, cart_id=None) -> list[dict]:
        params = {"cart_id": str(cart_id)} if cart_id is not None else None
        return self._call("GET", "/payments", params=params)["data"]

    def charges(self, cart_id=None) -> list[dict]:
        """Successful payments: what a customer was actually charged."""
        return [p for p in self.payments(cart_id) if p["payment_status"] == "success"]

    def refunds(self, payment_id=None) -> list[dict]:
        params = {"payment_id": payment_id} if payment_id is not None else None
        return self._call("GET", "/refunds", params=params)["data"]

    def journal(self) -> list[dict]:
        return self._call("GET", "/control/journal")["data"]

    def send_webhooks_to(self, url: str, secret: str | None = None) -> None:
        """Push the provider's events to `url` (until the next reset)."""
        body = {"url": url} if secret is None else {"url": url, "secret": secret}
        self._call("POST", "/control/webhooks", json=body)

    def webhook_deliveries(self) -> list[dict]:
        """Every try to deliver an event: id, type, attempt, status (None: no answer),
        fault; a dropped event has only its fault."""
        return self._call("GET", "/control/webhooks")["deliveries"]


class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that receives webhooks as a shop (or the
    service) does: it verifies each one with `standardwebhooks` and records it.

        with WebhookReceiver(secret, answers=[500, 500]) as receiver:   # then 200s
            settings.SHOP_WEBHOOK_URL = receiver.url
            ...
            receiver.accepted           # [(webhook-id, parsed body)] answered 2xx

    `answers` are the statuses of the first deliveries, in order (200 afterwards); an
    answer "hang" holds that request until `release()` is called. A delivery whose
    signature does not verify is answered 401 and kept in `refused`. A 3xx answer points
    to this endpoint's `/moved` (where a client that follows it would post again).
    `headers` keeps the headers of every delivery that verified.
    """

    def __init__(self, secret: str, answers=(), port: int = 0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from standardwebhooks import Webhook, WebhookVerificationError

        receiver = self
        self.answers = list(answers)
        self.received: list[tuple[str, int]] = []  # (webhook-id, status answered)
        self.accepted: list[tuple[str, dict]] = []
        self.refused: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.RLock()
        self.released = threading.Event()
        webhook = Webhook(secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                try:
                    webhook.verify(body, headers)
                except (WebhookVerificationError, ValueError):
                    with receiver.lock:
                        receiver.refused.append(headers)
                    return self._answer(401)
                msg_id = self.headers["webhook-id"]
                with receiver.lock:
                    receiver.headers.append(headers)
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == "hang":
                    receiver.released.wait(30)
                    answer = 500
                with receiver.lock:
                    receiver.received.append((msg_id, answer))
                    if 200 <= answer < 300:
                        receiver.accepted.append((msg_id, json.loads(body, parse_float=Decimal)))
                self._answer(answer)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", f"{receiver.url}/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        self.released.set()

    def accepted_ids(self) -> list[str]:
        with self.lock:
            return [msg_id for msg_id, _ in self.accepted]

    def wait_for(self, condition, timeout: float = 20.0) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if condition(self):
                    return True
            time.sleep(0.05)
        return False
