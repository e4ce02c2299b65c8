"""gunicorn settings for the API, read from the environment.

    gunicorn --config python:CoreRoot.gunicorn CoreRoot.wsgi

GUNICORN_WORKERS (processes, default 2), GUNICORN_THREADS (per process, default 4),
GUNICORN_TIMEOUT (default 30), GUNICORN_GRACEFUL_TIMEOUT (default 70),
GUNICORN_BIND (default 0.0.0.0:8000), GUNICORN_MAX_REQUESTS (requests before a worker is
replaced, default 100,000, 0: never).

GUNICORN_TIMEOUT bounds no request. The master restarts a worker process whose heartbeat
is older than it (gunicorn's arbiter, murder_workers), and a threaded (gthread) worker's
main thread beats about once a second while its threads serve requests of any length:
so it catches a worker whose main loop is stuck, or one that takes longer to load the app
at start. What bounds a pay is the payment client's timeouts (README, "Configuration").

In production gunicorn runs behind the reverse proxy of `deploy/nginx` (its own docs ask
for a buffering proxy): the proxy reads whole requests, so slow clients and chunked
bodies never hold a gunicorn thread, and its limits are below the ones here, so a
client always gets the proxy's JSON error rather than gunicorn's HTML one.
"""

import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM (a rollout, a scale-down) the workers stop accepting and the requests in
# progress get this long to finish before the master kills them. A pay may wait on the
# provider for three calls at their worst, about 65 s with the default client timeouts
# (README, "Pay and a slow provider"): cut off, its answer would be lost. Whatever stops
# gunicorn must wait longer (Kubernetes' grace period, Compose's stop_grace_period).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or "70")
# The service logs one line per request itself (observability.middleware), with the
# route template, the request id and the level an operator needs: gunicorn's own access
# log would say it again without them.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# Connections to the database are kept per thread (CONN_MAX_AGE); recycle workers now
# and then so a slow leak in any dependency cannot grow forever. A new worker imports
# Django and the app again (about half a second of CPU) and opens its connections: at
# 1,000 requests/s a worker, 10,000 meant that every ten seconds (the benchmark saw a
# restart in most of its 6-second runs), 100,000 every minute and a half. 0: never.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "100000"))
max_requests_jitter = max_requests // 10
# gunicorn's runtime control socket defaults to one path per user: several instances on
# one machine (tests, benchmarks) would fight over it, and nothing here uses it.
control_socket_disable = True

# Request limits, above the proxy's (deploy/nginx: request line and each header at most
# 4 KiB, 16 KiB of headers in all): whatever the proxy lets through, gunicorn takes.
limit_request_line = 8190  # the largest gunicorn allows
limit_request_field_size = 8190
limit_request_fields = 32768  # the largest gunicorn allows; 17 KiB hold fewer lines
# Idle keep-alive connections are closed after this; the proxy drops its idle upstream
# connections sooner (keepalive_timeout 1s), so it never reuses one being closed.
keepalive = 2

# Metrics of every worker process in one /metrics (prometheus-client's multiprocess mode):
# each process writes its values to files in this directory, set here, in the master,
# before any worker imports prometheus_client. Emptied when gunicorn starts, so counters
# restart from zero with the instance, as Prometheus expects.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")


def on_starting(server) -> None:
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server, worker) -> None:
    # Live gauges of a worker that is gone no longer count (counters keep their totals).
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
