"""Helpers for tests (imported by test modules, never by the service)."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
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


@contextmanager
def statements_sent(connection):
    """Collects each statement sent on `connection` with its parameters, as
    `[(sql, params), …]` (the SQL as the ORM gives it to the driver, `%s` placeholders).
    Statements sent with `executemany` (bulk inserts) are not collected."""
    sent: list[tuple[str, list]] = []

    def collect(execute, sql, params, many, context):
        if not many:
            sent.append((sql, list(params or ())))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(collect):
        yield sent


def sqlite_reprepared(connection, statements) -> list[str]:
    """The statements SQLite prepares again every time they run, given `(sql, params)` as
    `statements_sent` collects them.

    SQLite keeps a prepared statement and runs it again with new values, unless a bound
    value could change its plan: a `status = ?` where a partial index says
    `WHERE status = 'success'` makes it compile the statement anew on every run (it
    cannot know whether the index applies until it sees the value). Each statement is
    run twice, in a scratch in-memory database with `connection`'s schema (so a write
    changes nothing of the test's), and SQLite's own count of re-preparations read
    (`sqlite3_stmt_status`, which Python's sqlite3 does not expose: through ctypes, on
    the library Python's sqlite3 uses).
    """
    import _sqlite3
    import ctypes

    lib = ctypes.CDLL(_sqlite3.__file__)  # its sqlite3_* functions, linked in or loaded
    handle = ctypes.c_void_p
    lib.sqlite3_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(handle)]
    lib.sqlite3_exec.argtypes = [handle, ctypes.c_char_p, handle, handle, handle]
    lib.sqlite3_prepare_v2.argtypes = [
        handle,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(handle),
        handle,
    ]
    lib.sqlite3_bind_int64.argtypes = [handle, ctypes.c_int, ctypes.c_int64]
    lib.sqlite3_bind_double.argtypes = [handle, ctypes.c_int, ctypes.c_double]
    lib.sqlite3_bind_text.argtypes = [handle, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, handle]
    lib.sqlite3_bind_null.argtypes = [handle, ctypes.c_int]
    for name in ("sqlite3_step", "sqlite3_reset", "sqlite3_finalize", "sqlite3_close"):
        getattr(lib, name).argtypes = [handle]
    lib.sqlite3_stmt_status.argtypes = [handle, ctypes.c_int, ctypes.c_int]
    lib.sqlite3_errmsg.argtypes = [handle]
    lib.sqlite3_errmsg.restype = ctypes.c_char_p
    sqlite_row, stmtstatus_reprepare, transient = 100, 5, handle(-1)

    with connection.cursor() as cursor:
        # No parameters: the text goes to SQLite as it is.
        cursor.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
        )
        schema = [row[0] for row in cursor.fetchall()]
    db = handle()
    assert lib.sqlite3_open(b":memory:", ctypes.byref(db)) == 0
    reprepared = []
    try:
        for statement in schema:
            assert lib.sqlite3_exec(db, statement.encode(), None, None, None) == 0, statement
        for sql, params in statements:
            # As Django's SQLite backend turns the ORM's SQL into SQLite's.
            text = re.sub(r"(?<!%)%s", "?", sql).replace("%%", "%").encode()
            stmt = handle()
            prepared = lib.sqlite3_prepare_v2(db, text, -1, ctypes.byref(stmt), None)
            assert prepared == 0, f"{lib.sqlite3_errmsg(db).decode()}: {sql}"
            if not stmt:  # nothing but comments or spaces: no statement to run
                continue
            lib.sqlite3_exec(db, b"SAVEPOINT scratch", None, None, None)
            try:
                _run_twice(lib, stmt, params, sqlite_row, transient)
                if lib.sqlite3_stmt_status(stmt, stmtstatus_reprepare, 0):
                    reprepared.append(sql)
            finally:
                lib.sqlite3_finalize(stmt)
                lib.sqlite3_exec(db, b"ROLLBACK TO scratch; RELEASE scratch", None, None, None)
    finally:
        lib.sqlite3_close(db)
    return reprepared


def _run_twice(lib, stmt, params, sqlite_row: int, transient) -> None:
    """Bind `params` to the prepared statement and step it to its end, twice."""
    for _ in range(2):
        for index, value in enumerate(params, start=1):
            if value is None:
                lib.sqlite3_bind_null(stmt, index)
            elif isinstance(value, int):
                lib.sqlite3_bind_int64(stmt, index, int(value))
            elif isinstance(value, float):
                lib.sqlite3_bind_double(stmt, index, value)
            else:
                data = value if isinstance(value, bytes) else str(value).encode()
                lib.sqlite3_bind_text(stmt, index, data, len(data), transient)
        while lib.sqlite3_step(stmt) == sqlite_row:
            pass
        lib.sqlite3_reset(stmt)
