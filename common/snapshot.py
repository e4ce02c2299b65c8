"""Reads that see the database at one moment.

A cart as the API shows it takes several queries (the cart row, then its lines, payments
and refunds). Under PostgreSQL's default READ COMMITTED each query sees what was committed
when *it* started, and in autocommit mode SQLite is no different: a line change committed
between the queries would show lines that do not add up to the cart's subtotal.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction


@contextmanager
def one_snapshot(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block in one transaction whose every query sees the same snapshot:
    REPEATABLE READ on PostgreSQL (reads only, so it never fails to serialize), the
    transaction itself on SQLite. Inside a transaction already, the block simply runs
    in it (no savepoint: a read has nothing to roll back)."""
    connection = connections[using]
    if not connection.get_autocommit():
        yield
        return
    with transaction.atomic(using=using):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield
