"""The backend's `DatabaseWrapper` (Django loads `<ENGINE>.base`); see the package's
docstring for why the writers queue."""

from __future__ import annotations

import fcntl
import os
from contextlib import suppress
from functools import partial

from django.db.backends.sqlite3 import base


class WritersQueue:
    """One connection's place in the queue of the database's writers: an exclusive flock
    on `path`, through this connection's own open file (two connections of one process
    queue like two processes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.held = False
        self._fd: int | None = None
        self._pid: int | None = None

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            # A file opened before a fork is shared with the child, and so would be its
            # lock: a forked process opens its own (and leaves the parent's alone).
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
            self.held = False
        return self._fd

    def enter(self) -> bool:
        """Wait for this connection's turn to write; False if it already has it."""
        fd = self._file()
        if self.held:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.held = True
        return True

    def leave(self) -> None:
        if self.held and self._pid == os.getpid():
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.held = False

    def close(self) -> None:
        self.leave()
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = self._pid = None


def _reads_only(sql: str) -> bool:
    # A SELECT never takes SQLite's write lock (WAL); anything else might, and queues.
    return sql.lstrip()[:6].upper() == "SELECT"


# The ORM's SQL ("%s" placeholders) as SQLite takes it ("?"), by statement text: Django
# rewrites every statement with a regular expression on every run, 4 % of the CPU of an
# apply discount (its code's lookup is 3 KB of SQL). The hot statements are the same few
# texts every time; long ones (bulk inserts, long IN lists) are not kept, and the cache
# is emptied when full, so unusual ones cannot grow it.
_CONVERTED: dict[str, str] = {}
_CONVERTED_MAX = 2048
_LONGEST_KEPT = 16_384


class CursorWrapper(base.SQLiteCursorWrapper):
    """Django's SQLite cursor, each statement's placeholders rewritten once."""

    def convert_query(self, query, *, param_names=None):
        if param_names is not None:  # "pyformat" (named) parameters: Django's way
            return super().convert_query(query, param_names=param_names)
        if "%" not in query:
            return query  # nothing to rewrite
        converted = _CONVERTED.get(query)
        if converted is None:
            converted = super().convert_query(query)
            if len(query) <= _LONGEST_KEPT:
                if len(_CONVERTED) >= _CONVERTED_MAX:
                    _CONVERTED.clear()
                _CONVERTED[query] = converted
        return converted


class QueuedCursorWrapper(CursorWrapper):
    """A statement that may write, sent outside a transaction (a single INSERT, say:
    SQLite runs it in a transaction of its own), waits for its turn like a transaction."""

    def __init__(self, connection, queue: WritersQueue) -> None:
        super().__init__(connection)
        self.queue = queue

    # Every statement comes through here: plain calls, not a context manager (whose
    # generator cost more Python calls than the statement's own wrapping).
    def execute(self, query, params=None):
        if _reads_only(query):
            return super().execute(query, params)
        self._take_turn()
        try:
            return super().execute(query, params)
        finally:
            self._end_turn()

    def executemany(self, query, param_list):
        if _reads_only(query):
            return super().executemany(query, param_list)
        self._take_turn()
        try:
            return super().executemany(query, param_list)
        finally:
            self._end_turn()

    def _take_turn(self) -> None:
        if not self.connection.in_transaction:
            self.queue.enter()  # (nothing to wait for when this connection has its turn)

    def _end_turn(self) -> None:
        # The turn ends with the transaction: at once for a statement SQLite ran in a
        # transaction of its own, at COMMIT or ROLLBACK for a BEGIN (atomic()'s, or one
        # sent through a cursor).
        if not self.connection.in_transaction:
            self.queue.leave()


class DatabaseCreation(base.DatabaseCreation):
    def _destroy_test_db(self, test_database_name, verbosity):
        super()._destroy_test_db(test_database_name, verbosity)
        if not self.is_in_memory_db(test_database_name):
            with suppress(FileNotFoundError):
                os.remove(_queue_path(test_database_name))


def _queue_path(database: str) -> str:
    return f"{database}-writers"


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation
    writers_queue: WritersQueue | None = None

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        # The file is known now: a test run renames the database after this wrapper
        # was made.
        wanted = None
        if self.settings_dict.get("WRITERS_QUEUE", True) and not self.is_in_memory_db():
            wanted = _queue_path(str(self.settings_dict["NAME"]))
        if self.writers_queue is not None and self.writers_queue.path != wanted:
            self.writers_queue.close()
            self.writers_queue = None
        if wanted is not None and self.writers_queue is None:
            self.writers_queue = WritersQueue(wanted)
        return connection

    def create_cursor(self, name=None):
        if self.writers_queue is None:
            return self.connection.cursor(factory=CursorWrapper)
        return self.connection.cursor(
            factory=partial(QueuedCursorWrapper, queue=self.writers_queue)
        )

    def _start_transaction_under_autocommit(self):
        # atomic()'s BEGIN IMMEDIATE takes SQLite's write lock: queue for it first.
        entered = self.writers_queue is not None and self.writers_queue.enter()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            if entered:
                self.writers_queue.leave()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._leave_queue_when_done()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._leave_queue_when_done()

    def _set_autocommit(self, autocommit):
        try:
            return super()._set_autocommit(autocommit)
        finally:
            if autocommit:
                # Back to autocommit, sqlite3 commits a transaction it had opened itself
                # (set_autocommit(False), then a write): the turn ends with it.
                self._leave_queue_when_done()

    def _close(self):
        try:
            return super()._close()
        finally:
            if self.writers_queue is not None:
                self.writers_queue.close()

    def _leave_queue_when_done(self) -> None:
        # A COMMIT that failed leaves the transaction open (its ROLLBACK follows): the
        # turn is kept until it has ended.
        if self.writers_queue is None:
            return
        try:
            still_open = self.connection is not None and self.connection.in_transaction
        except base.Database.ProgrammingError:  # closed: SQLite rolled it back
            still_open = False
        if not still_open:
            self.writers_queue.leave()
