"""Run the API and the fake payment provider together for local development (`make run`).

    python scripts/dev.py                          # API :8000, fake provider :5005
    python scripts/dev.py --port 8001 --fake-port 5006
    HOST=0.0.0.0 PORT=8080 FAKE_PORT=5050 python scripts/dev.py

Options fall back on the environment variables HOST, PORT and FAKE_PORT, then on
127.0.0.1, 8000 and 5005. Two child processes run from the repository root with the
interpreter that runs this script:

1. the fake provider:
   `python -m flask --app fake_payment_server run --host 127.0.0.1 --port FAKE_PORT`;
   with `FAKE_PAYMENT_WEBHOOK_URL` set to the API's webhook endpoint (unless set);
2. once it answers `GET /inspect`, the API: `python manage.py runserver HOST:PORT`, with
   `FAKE_PAYMENT_API=127.0.0.1:FAKE_PORT` added to its environment (everything else,
   such as DATABASE_URL, is inherited);
3. the background worker, `python manage.py run_worker` (the Procfile's `worker`), with
   the same environment as the API: it delivers the shop's events.

Both addresses are printed once they answer. The children's output is forwarded, each
line prefixed with `fake |`, `api  |` or `work |` (the runner's own lines with `dev  |`).

When any child exits, or on Ctrl-C (SIGINT), SIGTERM or SIGHUP, all are stopped:
SIGTERM to each child, then SIGKILL to its whole process group once it has exited or
after STOP_TIMEOUT seconds (a second Ctrl-C kills at once), so nothing it started stays.
Exit status: 0 after a requested stop or when a child ended with status 0; otherwise
non-zero (the failed child's status, 128 + signal number when it was killed by a signal,
1 when the provider never answered).

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the runner
(and make), which stops the children itself, runserver's autoreloader process included.
A runner killed with SIGKILL cannot stop them: they keep running.

Standard library only, so it needs nothing but the interpreter of the project's venv.
POSIX only (process groups, SIGHUP), like the Makefile.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 5.0  # seconds a child has to exit after SIGTERM
PROVIDER_START_TIMEOUT = 30.0
API_START_TIMEOUT = 60.0
POLL_INTERVAL = 0.1

_output_lock = threading.Lock()
# Probe our own children directly, whatever http_proxy says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def say(message: str, prefix: str = "dev") -> None:
    _write(f"{prefix:<4} | {message}\n".encode())


def _write(data: bytes) -> None:
    with _output_lock:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


class Child:
    """A child process in its own session, its output forwarded line by line."""

    def __init__(self, name: str, description: str, args: list[str], env: dict[str, str]):
        self.name = name
        self.description = description
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._forwarder = threading.Thread(target=self._forward, daemon=True)
        self._forwarder.start()

    def _forward(self) -> None:
        prefix = f"{self.name:<4} | ".encode()
        for line in iter(self.process.stdout.readline, b""):
            _write(prefix + (line if line.endswith(b"\n") else line + b"\n"))

    def running(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        """Signal the child and whatever it started (its process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):  # group gone
            os.killpg(self.process.pid, signum)

    def finish(self) -> None:
        self.process.wait()
        self._forwarder.join(timeout=2)


class Runner:
    def __init__(self, host: str, port: int, fake_port: int):
        self.host, self.port, self.fake_port = host, port, fake_port
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self.signals = 0

    def on_signal(self, signum: int, frame) -> None:
        self.signals += 1
        if self.signals == 1:
            say(f"{_signal_name(signum)}: stopping (again to kill at once)")
        self.stop_requested.set()

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        try:
            return self._serve()
        finally:
            self._stop_children()

    def _serve(self) -> int:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        fake_url = f"http://127.0.0.1:{self.fake_port}"
        flask_run = ["-m", "flask", "--app", "fake_payment_server", "run"]
        webhook_url = f"http://{_reachable(self.host)}:{self.port}/api/webhooks/payment-provider/"
        provider = self._start(
            "fake",
            "The fake payment provider",
            [*flask_run, "--host", "127.0.0.1", "--port", str(self.fake_port)],
            {"FAKE_PAYMENT_WEBHOOK_URL": webhook_url, **env},
        )
        if not self._wait_until_answers(f"{fake_url}/inspect", provider, PROVIDER_START_TIMEOUT):
            if self.stop_requested.is_set():
                return 0
            if not provider.running():
                return self._exited(provider)
            say(f"The fake provider did not answer {fake_url}/inspect in time.")
            return 1
        say(f"fake payment provider: {fake_url}  (GET /inspect, /payments)")

        api_env = {**env, "FAKE_PAYMENT_API": f"127.0.0.1:{self.fake_port}"}
        api = self._start(
            "api", "The API", ["manage.py", "runserver", _address(self.host, self.port)], api_env
        )
        self._start("work", "The background worker", ["manage.py", "run_worker"], api_env)
        api_url = f"http://{_reachable(self.host)}:{self.port}"
        if self._wait_until_answers(f"{api_url}/health/", api, API_START_TIMEOUT):
            say(f"API: {api_url}/  (docs: {api_url}/api/docs/)")
            say(f"API uses FAKE_PAYMENT_API=127.0.0.1:{self.fake_port}. Ctrl-C stops all three.")
        elif api.running() and not self.stop_requested.is_set():
            say(f"The API has not answered {api_url}/health/ yet; still waiting.")

        while not self.stop_requested.wait(POLL_INTERVAL):
            for child in self.children:
                if not child.running():
                    return self._exited(child)
        return 0

    def _start(self, name: str, description: str, args: list[str], env: dict) -> Child:
        child = Child(name, description, [sys.executable, *args], env)
        self.children.append(child)
        return child

    def _exited(self, child: Child) -> int:
        code = child.process.returncode
        if code < 0:
            say(f"{child.description} was killed by {_signal_name(-code)}; stopping.")
            return 128 - code
        say(f"{child.description} exited with status {code}; stopping.")
        return code

    def _wait_until_answers(self, url: str, child: Child, timeout: float) -> bool:
        """True once `url` answers 200; False if the child exits, a stop is asked for,
        or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.running() or self.stop_requested.is_set():
                return False
            try:
                with _opener.open(url, timeout=1) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, http.client.HTTPException, OSError):
                pass  # not listening yet, or not speaking HTTP yet
            self.stop_requested.wait(POLL_INTERVAL)
        return False

    def _stop_children(self) -> None:
        running = [child for child in self.children if child.running()]
        for child in running:
            # The child alone: runserver's autoreloader then stops its own server process.
            child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        signals_before = self.signals
        while any(child.running() for child in running) and time.monotonic() < deadline:
            if self.signals > signals_before:  # asked again while stopping: do not wait
                break
            time.sleep(POLL_INTERVAL)
        for child in self.children:
            if child.running():
                say(f"{child.description} did not stop in time: killing it.")
            # Also reaches anything the child left behind in its group.
            child.signal_group(signal.SIGKILL)
        for child in self.children:
            child.finish()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reachable(host: str) -> str:
    """Where to reach a server listening on `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value!r}")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the API (runserver) and the fake payment provider (flask) together."
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST") or "127.0.0.1",
        help="address the API listens on (env HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("PORT") or "8000",
        help="port of the API (env PORT, default 8000)",
    )
    parser.add_argument(
        "--fake-port",
        type=_port,
        default=os.environ.get("FAKE_PORT") or "5005",
        help="port of the fake provider on 127.0.0.1 (env FAKE_PORT, default 5005)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return Runner(args.host, args.port, args.fake_port).run()


if __name__ == "__main__":
    sys.exit(main())
