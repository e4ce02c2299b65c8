"""The soak's clients never send on a keep-alive connection the server may be closing.

gunicorn closes a connection idle for 2 s; a request sent on it at that moment meets a
reset the API never saw, which the soak would count as a lost answer (it did, once, in CI).
"""

import http.server
import subprocess
import sys
import threading
import types

import pytest

from soak import run as soak_run


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections = 0

    def setup(self):
        type(self).connections += 1
        super().setup()

    def do_GET(self):
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.connections = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _soak(url):
    args = types.SimpleNamespace(duration=30)
    soak = soak_run.Soak(args, api_url=url, provider_url=url)
    soak.record = lambda rec: None  # this test reads the server's side only
    return soak


def test_back_to_back_requests_share_one_connection(server):
    soak = _soak(server)
    for _ in range(3):
        soak.call("c1", "test", "GET /", "GET", "/")
    assert _Handler.connections == 1


def test_a_connection_idle_longer_than_the_limit_is_not_reused(server, monkeypatch):
    monkeypatch.setattr(soak_run, "CLIENT_IDLE_CLOSE", 0.0)
    soak = _soak(server)
    for _ in range(3):
        soak.call("c1", "test", "GET /", "GET", "/")
    assert _Handler.connections == 3


def test_the_limit_is_below_the_servers_keep_alive():
    # In a child: importing the gunicorn settings sets the metrics directory variable.
    code = "import CoreRoot.gunicorn as g; print(g.keepalive)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) > soak_run.CLIENT_IDLE_CLOSE


def test_the_setup_requests_outside_call_use_the_same_sessions(server):
    soak = _soak(server)
    for _ in range(3):
        assert soak.session().get(server, timeout=5).status_code == 200
    assert _Handler.connections == 1
