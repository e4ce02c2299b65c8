"""SQLite's writers wait their turn in one queue (common/sqlite): a writer that meets the
write lock taken waits until the transaction ahead ends, however short SQLite's own busy
timeout, instead of polling for it and failing with "database is locked"."""

import fcntl
import os
import threading
from contextlib import contextmanager

import pytest
from django.db import connection, connections, transaction

from cart.models import Cart
from cart.tests.factories import CartFactory
from common.sqlite.base import CursorWrapper, DatabaseCreation, DatabaseWrapper

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's writers queue"),
]

HOLD = 0.4  # seconds the first writer keeps its transaction open
BUSY_TIMEOUT_MS = 50  # SQLite's own wait, far shorter than HOLD


def queue_path() -> str:
    return f"{connection.settings_dict['NAME']}-writers"


def queue_is_free() -> bool:
    """Whether another open file of the queue could take its lock now."""
    fd = os.open(queue_path(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


@contextmanager
def queue_setting(enabled: bool):
    """WRITERS_QUEUE for the connections opened inside (each thread opens its own)."""
    settings_dict = connections.settings["default"]
    before = settings_dict.get("WRITERS_QUEUE", True)
    settings_dict["WRITERS_QUEUE"] = enabled
    try:
        yield
    finally:
        settings_dict["WRITERS_QUEUE"] = before


def writers_behind_a_long_transaction() -> dict[str, object]:
    """One thread holds a write transaction for HOLD seconds; meanwhile two others, with a
    busy timeout of BUSY_TIMEOUT_MS, write: a single INSERT outside a transaction and an
    INSERT in one. What each writer ended with (the new cart's id or the error)."""
    holding, done = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                CartFactory()
                holding.set()
                done.wait(HOLD)
        finally:
            connection.close()

    def writer(name: str, in_transaction: bool) -> None:
        try:
            holding.wait(5)
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if in_transaction:
                with transaction.atomic():
                    outcome[name] = CartFactory().pk
            else:
                outcome[name] = CartFactory().pk
        except Exception as exc:  # reported to the test
            outcome[name] = exc
        finally:
            connection.close()

    threads = [
        threading.Thread(target=first),
        threading.Thread(target=writer, args=("single insert", False)),
        threading.Thread(target=writer, args=("transaction", True)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcome


def test_writers_wait_for_the_transaction_ahead_instead_of_failing():
    outcome = writers_behind_a_long_transaction()

    assert set(outcome) == {"single insert", "transaction"}
    for name, result in outcome.items():
        assert not isinstance(result, Exception), f"{name}: {result!r}"
    assert Cart.objects.filter(pk__in=outcome.values()).count() == 2
    assert Cart.objects.count() == 3


def test_without_the_queue_sqlite_gives_up_after_its_busy_timeout():
    # What the queue prevents, shown on the same scenario: SQLite's busy handler alone.
    with queue_setting(False):
        outcome = writers_behind_a_long_transaction()

    assert set(outcome) == {"single insert", "transaction"}
    for name, result in outcome.items():
        assert isinstance(result, Exception), f"{name} did not wait: {result!r}"
        assert "database is locked" in str(result), name


def test_a_transaction_holds_the_queue_until_it_ends():
    assert queue_is_free()
    with transaction.atomic():
        CartFactory()
        assert not queue_is_free()
    assert queue_is_free()

    class Undone(Exception):
        pass

    def write_then_fail():
        with transaction.atomic():
            CartFactory()
            assert not queue_is_free()
            raise Undone  # rolls the transaction back

    with pytest.raises(Undone):
        write_then_fail()
    assert queue_is_free()
    assert Cart.objects.count() == 1


def test_reads_and_single_writes_outside_a_transaction_leave_the_queue_free():
    CartFactory()
    assert list(Cart.objects.values_list("currency", flat=True))

    assert queue_is_free()


def test_a_transaction_begun_and_committed_through_a_cursor_holds_the_queue_until_commit():
    with connection.cursor() as cursor:
        cursor.execute("BEGIN IMMEDIATE")
        CartFactory()  # inside it, as SQLite sees it
        assert not queue_is_free()
        cursor.execute("COMMIT")

    assert queue_is_free()
    assert Cart.objects.count() == 1


def test_a_manual_transaction_ended_by_turning_autocommit_on_frees_the_queue():
    transaction.set_autocommit(False)
    try:
        CartFactory()  # sqlite3 opens the transaction itself
        assert not queue_is_free()
    finally:
        transaction.set_autocommit(True)  # sqlite3 commits it as it goes back to autocommit

    assert queue_is_free()
    assert Cart.objects.count() == 1


def test_closing_the_connection_in_a_transaction_frees_the_queue():
    with transaction.atomic():
        CartFactory()
        assert not queue_is_free()

        connection.close()  # as a connection dropped mid-request: SQLite rolls it back

        assert queue_is_free()
    assert Cart.objects.count() == 0


def test_a_forked_process_queues_with_its_own_file():
    connection.ensure_connection()
    queue = connection.writers_queue
    with transaction.atomic():
        CartFactory()
        pid = os.fork()
        if pid == 0:  # the child: the parent's open file would share the parent's lock
            try:
                fd = queue._file()
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os._exit(0)  # waits behind the parent, as it should
            except BaseException:
                os._exit(2)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_in_memory_database_has_no_queue():
    memory = DatabaseWrapper({**connection.settings_dict, "NAME": ":memory:"}, alias="memory")
    memory.ensure_connection()
    try:
        assert memory.writers_queue is None
        with memory.cursor() as cursor:
            cursor.execute("CREATE TABLE t (x integer)")
            cursor.execute("INSERT INTO t VALUES (%s)", [1])
            cursor.execute("SELECT x FROM t WHERE x = %s", [1])
            assert cursor.fetchone() == (1,)
            # Still the backend's cursor: placeholders rewritten once, not queued.
            assert type(cursor.cursor) is CursorWrapper
    finally:
        memory.close()


def test_the_queue_file_goes_with_its_test_database(tmp_path):
    database = tmp_path / "test_other.sqlite3"
    database.write_bytes(b"")
    (tmp_path / "test_other.sqlite3-writers").write_bytes(b"")

    DatabaseCreation(connection)._destroy_test_db(str(database), verbosity=0)

    assert list(tmp_path.iterdir()) == []
