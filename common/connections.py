"""Finding PostgreSQL connections the server has closed, without a query.

Django's `CONN_HEALTH_CHECKS` sends `SELECT 1` before the first query of every request:
one more round trip per request, to notice the rare connection whose backend is gone
(a restart, `pg_terminate_backend`, an idle timeout). When the server ends a backend it
sends the client a FATAL error and closes the socket, so an idle connection whose socket
has anything to read is one the server has given up: that is checked locally, with
`select`, at no cost to the server.

`drop_closed_connections` (connected to `request_started` in `CommonConfig.ready`)
closes such a persistent connection before the request uses it; Django opens a new one on
its first query. (With `DB_POOL`, psycopg's pool checks each connection it hands out.)

A connection that is silently cut (no FIN, no error) is not seen; nor was it by `SELECT 1`
before it timed out. `DB_CONN_HEALTH_CHECKS=true` brings Django's own check back.
"""

import select

from django.db import connections


def server_closed(raw) -> bool:
    """True when psycopg's connection `raw`, idle, is closed or has something to read."""
    if raw.closed or raw.broken:
        return True
    try:
        readable, _, _ = select.select([raw.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def drop_closed_connections(**kwargs) -> None:
    for connection in connections.all(initialized_only=True):
        raw = connection.connection
        if (
            connection.vendor == "postgresql"
            and raw is not None
            and not connection.in_atomic_block
            and server_closed(raw)
        ):
            connection.close()
