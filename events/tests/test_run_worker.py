"""`manage.py run_worker`'s arguments: a bad one is refused before the worker starts, with
a clear message, not a worker that starts and dies on its first idle poll (which its
supervisor would restart, and restart)."""

import pytest
from django.core.management import CommandError, call_command

from events.management.commands import run_worker


@pytest.fixture
def db_worker(monkeypatch):
    """What run_worker hands to django-tasks-db's `db_worker`, which is not started; nor
    are the outbox sweeps."""
    calls = []
    monkeypatch.setattr(
        run_worker, "call_command", lambda name, **options: calls.append((name, options))
    )
    monkeypatch.setattr(run_worker.Command, "_sweep", lambda self: None)
    monkeypatch.setattr(run_worker.Command, "_sweep_forever", lambda self: None)
    return calls


def test_the_interval_and_batch_reach_db_worker(db_worker):
    call_command("run_worker", "--interval", "0.1", "--batch")

    [(name, options)] = db_worker
    assert name == "db_worker"
    assert (options["queue_name"], options["interval"], options["batch"]) == ("*", 0.1, True)


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        ("-1", "Must be zero or greater"),
        ("nan", "Must be a finite floating point value"),
        ("inf", "Must be a finite floating point value"),
        ("abc", "'abc' is not a number of seconds"),
    ],
)
def test_a_bad_interval_is_refused_before_the_worker_starts(db_worker, interval, message):
    with pytest.raises(CommandError, match=f"argument --interval: {message}"):
        call_command("run_worker", f"--interval={interval}")

    assert db_worker == []
