"""The image's HEALTHCHECK (Dockerfile): is what this container runs alive?

    python /app/scripts/healthcheck.py                        # judges PID 1's command
    python scripts/healthcheck.py --command "gunicorn ..."    # judges this one (tests)

- The API (the command runs gunicorn): `GET /health/` on GUNICORN_BIND's port answers
  200. The request carries the first name of ALLOWED_HOSTS as its Host header: with
  ENV=PROD those are the public names only, and Django answers any other Host (such as
  127.0.0.1, where the check connects) with 400, so a check without it never passes.
  It connects to this container whatever the header says; host validation stays as
  configured.
- The worker (`manage.py run_worker`) serves no port: its database answers, as Compose's
  worker healthcheck asks (its tasks are queued there).
- Anything else (a one-off `migrate`, `reconcile_payments`, a shell) has nothing to
  check: healthy while it runs.

Exit 0 when healthy, 1 (with the reason on stderr) when not. No Django for the API's
check: it runs every few seconds and must not depend on the settings loading.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_ALLOWED_HOSTS = "localhost,127.0.0.1,[::1]"  # CoreRoot/settings.py's DEV default
ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}


def health_host(allowed_hosts: str) -> str:
    """A Host header ALLOWED_HOSTS accepts: its first name. A leading dot means the domain
    and its subdomains (Django), so the domain itself; `*` accepts anything."""
    names = [name.strip() for name in allowed_hosts.split(",") if name.strip()]
    first = names[0] if names else "localhost"
    return "localhost" if first == "*" else first.removeprefix(".")


def bound_address(bind: str) -> tuple[str, int]:
    """Where to reach gunicorn from inside the container, from GUNICORN_BIND."""
    host, _, port = bind.rpartition(":")
    if host in ANY_ADDRESS:
        host = "127.0.0.1"
    return host.strip("[]"), int(port) if port.isdigit() else 8000


def role(command: list[str]) -> str:
    words = {Path(word).name for word in command}  # gunicorn, /opt/venv/bin/gunicorn
    if "gunicorn" in words:
        return "api"
    if "run_worker" in words:
        return "worker"
    return "other"


def check_api() -> str | None:
    host, port = bound_address(os.environ.get("GUNICORN_BIND") or "0.0.0.0:8000")
    header = health_host(os.environ.get("ALLOWED_HOSTS") or DEV_ALLOWED_HOSTS)
    connection = http.client.HTTPConnection(host, port, timeout=2)
    try:
        connection.request("GET", "/health/", headers={"Host": header})
        status = connection.getresponse().status
    except OSError as exc:
        return f"GET http://{host}:{port}/health/ (Host: {header}): {exc}"
    finally:
        connection.close()
    if status != 200:
        return f"GET http://{host}:{port}/health/ (Host: {header}) answered {status}"
    return None


def check_worker() -> str | None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "CoreRoot.settings")
    sys.path.insert(0, str(ROOT))
    try:
        import django

        django.setup()
        from django.db import connection

        connection.ensure_connection()
    except Exception as exc:  # any failure is the answer: unhealthy, and why
        return f"the database: {type(exc).__name__}: {exc}"
    return None


def pid1_command() -> list[str]:
    raw = Path("/proc/1/cmdline").read_bytes()
    return [word.decode(errors="replace") for word in raw.split(b"\0") if word]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--command", help="judge this command line instead of PID 1's")
    args = parser.parse_args()
    command = shlex.split(args.command) if args.command else pid1_command()
    checks = {"api": check_api, "worker": check_worker}
    check = checks.get(role(command))
    problem = check() if check else None
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
