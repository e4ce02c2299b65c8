"""Log records that say which request they belong to, as text (DEV) or JSON (PROD).

    LOGGING = observability.logs.logging_config(json_lines=True, level="INFO")

Every record passes `RequestIdFilter` at the handler, so every line, whichever logger
wrote it (ours, Django's, the payment client's), carries `request_id` ("-" outside a
request). `LOG_FORMAT=json` writes one JSON object per line (python-json-logger): time,
level, logger, message, request_id, process and the record's extra fields (the request line adds
method, route, path, status, duration_ms, cart_id, error_code). `LOG_FORMAT=text` is the
same information for a person at a terminal.
"""

from __future__ import annotations

import logging

from observability.context import current_request_id


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(process)d"


def formatter(*, json_lines: bool) -> dict:
    if json_lines:
        return {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        }
    return {"format": TEXT_FORMAT}


def logging_config(*, json_lines: bool, level: str) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "observability.logs.RequestIdFilter"}},
        "formatters": {"service": formatter(json_lines=json_lines)},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "service",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }
