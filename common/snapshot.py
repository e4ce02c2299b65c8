"""Reads that see the database at one moment.

A cart as the API shows it takes several queries (the cart row, then its lines, payments
and refunds). Under PostgreSQL's default READ COMMITTED each query sees what was committed
when *it* started, and in autocommit mode SQLite is no different: a line change committed
between the queries would show lines that do not add up to the cart's subtotal.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, transaction


@contextmanager
def one_snapshot(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block in one transaction whose every query sees the same snapshot:
    REPEATABLE READ on PostgreSQL (reads only, so it never fails to serialize), a
    DEFERRED transaction on SQLite (a WAL snapshot that does not wait for writers).
    Inside a transaction already, the block simply runs in it (no savepoint: a read has
    nothing to roll back)."""
    connection = connections[using]
    if not connection.get_autocommit():
        yield
        return
    if connection.vendor == "sqlite":
        # The project opens SQLite transactions IMMEDIATE, taking the write lock at BEGIN
        # so two writers queue instead of deadlocking. A read needs no write lock: under
        # IMMEDIATE it would queue behind every writer (and each wait sleeps in SQLite's
        # busy handler). A DEFERRED BEGIN takes a WAL read snapshot at the first SELECT
        # and reads beside the writer. Nothing in the block writes, so the transaction
        # never has to upgrade its lock.
        mode = connection.transaction_mode
        connection.transaction_mode = "DEFERRED"
        try:
            with transaction.atomic(using=using):
                yield
        finally:
            connection.transaction_mode = mode
        return
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using):
            yield
        return
    # psycopg then opens the transaction with `BEGIN ISOLATION LEVEL REPEATABLE READ`:
    # the level rides on the BEGIN instead of costing a round trip of its own. It is put
    # back at once, so no later transaction of this connection inherits it.
    connection.ensure_connection()
    driver = connection.connection
    previous = driver.isolation_level
    driver.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with transaction.atomic(using=using):
            yield
    finally:
        if connection.connection is driver:
            try:
                driver.isolation_level = previous
            except psycopg.Error:
                connection.close()  # cannot be put back: not to be reused
