"""Helpers for tests (imported by test modules, never by the service)."""

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
