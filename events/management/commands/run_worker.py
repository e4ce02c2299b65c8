"""The background worker: runs the queued tasks and keeps the outbox moving.

    python manage.py run_worker                  # what the Procfile's `worker` runs
    python manage.py run_worker --batch          # run what is queued, then exit

It is django-tasks-db's `db_worker` (every queue), plus a sweep at start and every
EVENTS_SWEEP_SECONDS that queues again the deliveries a crash lost
(`events.services.events_requeue_due`). Run as many as you like: a task is claimed by one
worker, and an event by one delivery. SIGTERM or Ctrl-C finishes the task under way, then
exits.
"""

from __future__ import annotations

import logging
import threading
from argparse import ArgumentTypeError

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# db_worker's own check of --interval: keyword arguments to call_command skip its parser,
# so run_worker's parser applies it (django-tasks-db is pinned; an upgrade that drops it
# fails at import, in every test).
from django_tasks_db.management.commands.db_worker import valid_interval

from events.services import events_requeue_due

logger = logging.getLogger(__name__)


def seconds(text: str) -> float:
    """--interval: db_worker's rule, and a message of our own for text that is no number
    (argparse would name the function: "invalid valid_interval value")."""
    try:
        return valid_interval(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number of seconds") from None


class Command(BaseCommand):
    help = "Run the background worker (event deliveries and every other task)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--interval",
            # A negative, NaN or infinite one would start a worker that dies on its
            # first idle poll (time.sleep refuses it).
            type=seconds,
            default=0.5,
            help="Seconds between looks for new tasks when none is waiting (default 0.5).",
        )
        parser.add_argument(
            "--batch", action="store_true", help="Run every queued task, then exit."
        )

    def handle(self, *, interval: float, batch: bool, verbosity: int, **options) -> None:
        self._sweep()
        if not batch:
            threading.Thread(target=self._sweep_forever, name="outbox-sweep", daemon=True).start()
        call_command(
            "db_worker",
            queue_name="*",
            interval=interval,
            batch=batch,
            reload=False,
            verbosity=verbosity,
        )

    def _sweep(self) -> None:
        try:
            events_requeue_due()
        except Exception:  # the database is away: the next sweep tries again
            logger.exception("The outbox sweep failed")

    def _sweep_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(settings.EVENTS_SWEEP_SECONDS):
            self._sweep()
            connection.close()  # this thread's own connection
