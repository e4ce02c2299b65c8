"""Django's SQLite backend with one queue for the database's writers
(`ENGINE: "common.sqlite"`, set in CoreRoot/settings.py; everything else is Django's, but
each statement's placeholders are rewritten for SQLite once, not on every run).

SQLite lets one connection write at a time. A writer that finds the write lock taken waits
in SQLite's busy handler, which polls: it sleeps 1, 2, 5, 10 ... up to 100 milliseconds
between tries, and whoever tries when the lock is free gets it, not whoever waited longest.
Under the production configuration's threads (CoreRoot/gunicorn.py: 2 workers x 4 threads,
8 writers) a transaction that took two milliseconds was answered after up to a second
(docs/benchmarks.md, "The SQLite writers' queue").

Here a writer first takes an exclusive `flock` on a file beside the database
(`<database>-writers`): waiters sleep in the kernel and the next one is woken when the
holder's transaction ends. It is held exactly while SQLite's write lock would be: from
`BEGIN IMMEDIATE` to COMMIT or ROLLBACK, and for the one statement of a write outside a
transaction. SQLite's own locking still decides who writes (the queue orders writers, it
guarantees nothing): a writer that does not queue (the sqlite3 shell, a backup) is waited
for by SQLite's busy handler as before.

Unlike SQLite's busy timeout (20 s, then "database is locked"), the queue waits until the
transaction ahead ends, as PostgreSQL waits for a row lock by default: transactions here
are short, and the provider is never called inside one. A process that dies releases its
place (the kernel drops its locks). `DB_SQLITE_WRITERS_QUEUE=false` turns it off; an
in-memory database has no file to lock and no queue.
"""
