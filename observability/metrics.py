"""The service's Prometheus metrics, and what feeds them.

    metrics.observe_request(method="POST", route="/api/cart/{pk}/pay/", status=200, ...)
    render() -> (body, content type)      # what GET /metrics answers

Counters and histograms are `prometheus_client` metrics. Under gunicorn every worker
process counts on its own; with `PROMETHEUS_MULTIPROC_DIR` set (CoreRoot/gunicorn.py sets
it) each writes its values to files there and `render()` adds them up, so a scrape sees
the whole instance whichever worker answers it. Gauges of what is open right now
(attempts, refunds, the outbox's backlog) are read from the database at scrape time
instead: the database is the truth, no process has to remember, and the worker, which
delivers the events but is not scraped, needs no metrics of its own. If the database
does not answer, the scrape still answers, with the counters and without those gauges.

Fed by:
- `observability.middleware`: every request (count, latency, error codes; discount
  applications and refusals; rate-limited requests);
- `utils.ATTEMPT_OBSERVERS`: every HTTP attempt to the provider (latency, errors, retries);
- model signals on `Payment` and `Refund`: every status an attempt or a refund enters,
  whichever door (API, admin, `reconcile_payments`, a task) moved it.
"""

from __future__ import annotations

import logging
import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# A management command or the worker started with the same environment as gunicorn (one
# ConfigMap on Kubernetes) counts in multiprocess mode too: the directory must exist
# before the first metric opens its file there.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "http_requests_total", "Requests answered, by route template.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer a request, by route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_ERRORS = Counter(
    "http_errors_total", "Error answers by their error code.", ["route", "status", "code"]
)
RATE_LIMITED = Counter(
    "rate_limited_requests_total", "Requests refused by a rate limit (429).", ["route"]
)
DISCOUNT_APPLICATIONS = Counter(
    "discount_applications_total",
    "Discount codes sent to a cart: outcome is applied, or the refusal's error code.",
    ["outcome"],
)
PAYMENT_ATTEMPTS = Counter(
    "payment_attempts_started_total", "Attempts to charge a cart, as they are opened."
)
PAYMENT_OUTCOMES = Counter(
    "payment_outcomes_total",
    "Statuses payment attempts entered (success, failed, error, duplicate, unknown).",
    ["status", "decline_code", "error_code"],
)
REFUNDS = Counter(
    "refunds_total", "Statuses refunds entered (processing when asked for).", ["status", "reason"]
)
PROVIDER_LATENCY = Histogram(
    "payment_provider_request_duration_seconds",
    "Time of one HTTP attempt to the payment provider.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_ATTEMPTS = Counter(
    "payment_provider_requests_total",
    "HTTP attempts to the payment provider by outcome (status, or why there is none).",
    ["operation", "outcome"],
)
PROVIDER_ERRORS = Counter(
    "payment_provider_errors_total",
    "Attempts to the provider that got no usable answer (5xx, timeouts, lost connections).",
    ["operation", "outcome"],
)
PROVIDER_RETRIES = Counter(
    "payment_provider_retries_total", "Attempts that retried an earlier one.", ["operation"]
)

_ID_SEGMENT = re.compile(r"^(/payments|/refunds)/[^/]+")


# The methods a request is counted under; any other is "OTHER". The method is whatever the
# caller sent, and each label value is a series of its own: anyone could grow /metrics
# (and Prometheus's storage) without end by inventing methods. The route is already a
# template or "<unmatched>", and a status is one of a few hundred three-digit codes.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(*, method: str, route: str, status: int, seconds: float, code: str | None):
    method = method if method in HTTP_METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)
    if code:
        HTTP_ERRORS.labels(route, str(status), code).inc()
    if status == 429:
        RATE_LIMITED.labels(route).inc()
    if method == "POST" and route.endswith("/apply_discount/"):
        if 200 <= status < 300:
            DISCOUNT_APPLICATIONS.labels("applied").inc()
        elif 400 <= status < 500 and status != 429 and code:
            DISCOUNT_APPLICATIONS.labels(code).inc()


def observe_provider_attempt(*, method: str, path: str, outcome: str, seconds: float, retry: int):
    operation = method + " " + _ID_SEGMENT.sub(r"\1/{id}", path)
    PROVIDER_LATENCY.labels(operation).observe(seconds)
    PROVIDER_ATTEMPTS.labels(operation, outcome).inc()
    if not outcome.isdigit() or int(outcome) >= 500:
        PROVIDER_ERRORS.labels(operation, outcome).inc()
    if retry:
        PROVIDER_RETRIES.labels(operation).inc()


def observe_payment(*, status: str, created: bool, decline_code: str, error_code: str) -> None:
    if created:
        PAYMENT_ATTEMPTS.inc()
    if status != "processing":
        PAYMENT_OUTCOMES.labels(status, decline_code or "", error_code or "").inc()


def observe_refund(*, status: str, reason: str) -> None:
    REFUNDS.labels(status, reason).inc()


class OpenLedgerCollector:
    """Attempts and refunds open right now, counted in the database at scrape time."""

    def collect(self):
        from django.db.models import Count

        from payments.models import (
            OPEN_ATTEMPT_STATUSES,
            OPEN_REFUND_STATUSES,
            Payment,
            Refund,
        )

        for name, model, statuses, text in (
            ("payment_attempts_open", Payment, OPEN_ATTEMPT_STATUSES, "Attempts not settled"),
            ("refunds_open", Refund, OPEN_REFUND_STATUSES, "Refunds not settled"),
        ):
            counts = dict(
                model.objects.filter(status__in=statuses)
                .values_list("status")
                .annotate(n=Count("pk"))
                .order_by()
            )
            family = GaugeMetricFamily(
                name,
                f"{text}: processing (being sent) or unknown (sent, outcome not known).",
                labels=["status"],
            )
            for status in statuses:
                family.add_metric([str(status)], counts.get(status, 0))
            yield family


class OutboxCollector:
    """The events not delivered to the shop yet, in one query at scrape time.

    Pending and failed events are found through the `event_status_next` index (status
    first), so a scrape costs in proportion to the backlog, not to every event ever sent.
    """

    def collect(self):
        from django.db.models import Count, Min, Q
        from django.utils import timezone

        from events.models import Event, EventStatus

        undelivered = (EventStatus.PENDING, EventStatus.FAILED)
        rows = {
            row["status"]: row
            for row in Event.objects.filter(status__in=undelivered)
            .values("status")
            .annotate(
                n=Count("pk"), tried=Count("pk", filter=Q(attempts__gt=0)), oldest=Min("created")
            )
            .order_by()
        }
        backlog = GaugeMetricFamily(
            "events_outbox_backlog",
            "Events not delivered to the shop: pending (to be sent, or retried after a"
            " failed try) or failed (retries ran out: redeliver from the admin).",
            labels=["status"],
        )
        for status in undelivered:
            backlog.add_metric([str(status)], rows.get(status, {}).get("n", 0))
        yield backlog
        pending = rows.get(EventStatus.PENDING, {})
        yield GaugeMetricFamily(
            "events_outbox_failing",
            "Pending events tried at least once and not delivered yet: the shop's endpoint"
            " answered no 2xx (or the first try is under way).",
            value=pending.get("tried", 0),
        )
        oldest = pending.get("oldest")
        yield GaugeMetricFamily(
            "events_outbox_oldest_pending_age_seconds",
            "Seconds since the oldest pending event happened (0: nothing pending).",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0,
        )


def render() -> tuple[bytes, str]:
    """The exposition of this instance: every process's counters, and the gauges read
    from the database (left out, with a warning, when it does not answer)."""
    from django.db import DatabaseError

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
    else:
        from prometheus_client import REGISTRY as counted
    read = CollectorRegistry()
    read.register(OpenLedgerCollector())
    read.register(OutboxCollector())
    try:
        from_database = generate_latest(read)
    except DatabaseError as exc:
        logger.warning("/metrics: the database gauges are left out: %s", exc)
        from_database = b""
    return generate_latest(counted) + from_database, CONTENT_TYPE_LATEST
