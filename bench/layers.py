"""Where a request's CPU goes, by layer of the stack: a cProfile's own time per function,
summed per layer (`bench/inprocess.py --layers`).

A function belongs to the layer of the file it is in (LAYERS, first match). A built-in
(`getattr`, a `dict` method, the SQLite driver's `execute`…) or a function of Python's
standard library belongs to no layer by itself: its time is split among its callers, in
the shares cProfile recorded for each, and goes to the callers' layers (up the chain of
callers when they are unplaced too); so is a helper of Django's any layer calls
(settings, signals, time zones, thread-locals). A database driver's own methods are named, not
placed by file: `sqlite3.Cursor.execute` is the database's work, wherever it is called.

cProfile's overhead is per Python call, so a layer of many small Python calls reads a
larger share than it takes unprofiled; the shares compare two requests profiled alike
(an endpoint and its limit view), not absolute costs.
"""

from __future__ import annotations

import re
from collections import defaultdict

# (layer, pattern on the file path), first match wins.
LAYERS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (layer, re.compile(pattern))
    for layer, pattern in (
        ("database driver", r"/site-packages/psycopg|/site-packages/psycopg_pool/"),
        ("Django ORM", r"/site-packages/django/db/"),
        ("DRF", r"/site-packages/(rest_framework|drf_spectacular)/"),
        ("provider's HTTP client", r"/site-packages/(requests|urllib3|certifi)/|/http/client\.py"),
        ("JSON", r"/site-packages/simplejson/|/json/"),
        (
            "Django request handling",
            r"/site-packages/(django|asgiref|whitenoise|gunicorn)/",
        ),
        ("the benchmark's own views", r"/bench/"),
        (
            "ours: the request's edge",
            r"/(common/(middleware|ratelimit|clientip|api|exception_handler|http|errors)"
            r"|observability/)",
        ),
        (
            "ours: rules, queries and the client",
            r"/(cart|discount|payments|events|common)/|/utils\.py",
        ),
    )
)
DATABASE = "database driver"
# Built-in methods that are the database's work (the driver's C code, the server's
# answer waited for, SQLite itself).
_DATABASE_BUILTINS = re.compile(r"sqlite3\.|QueuedCursorWrapper|psycopg|'_sqlite")
UNPLACED = "other"
_MAX_DEPTH = 8


# Helpers any layer calls (settings, signals, time zones, thread-locals, the cache):
# placed, as built-ins are, by their callers.
_HELPERS = re.compile(
    r"/site-packages/(django/(utils|dispatch|conf|core/signals|core/cache)|asgiref)/"
)


def layer_of_path(path: str) -> str | None:
    if _HELPERS.search(path):
        return None
    for layer, pattern in LAYERS:
        if pattern.search(path):
            return layer
    return None


def shares(stats) -> dict[str, float]:
    """Each layer's share of the profile's own time (a `pstats.Stats`), summing to 1."""
    entries = stats.stats  # (file, line, name) -> (cc, nc, own, cumulative, callers)
    total = sum(entry[2] for entry in entries.values()) or 1.0
    spent: dict[str, float] = defaultdict(float)
    for function, entry in entries.items():
        for layer, seconds in _placed(entries, function, entry[2], 0).items():
            spent[layer] += seconds
    return {layer: seconds / total for layer, seconds in spent.items()}


def _placed(entries, function, seconds: float, depth: int) -> dict[str, float]:
    """`seconds` of `function`'s own time, by layer."""
    path, _, name = function
    if path == "~" and _DATABASE_BUILTINS.search(name):
        return {DATABASE: seconds}
    layer = layer_of_path(path) if path != "~" else None
    if layer is not None:
        return {layer: seconds}
    callers = entries.get(function, (0, 0, 0, 0, {}))[4]
    own = sum(caller[2] for caller in callers.values())
    if depth >= _MAX_DEPTH or not callers or own <= 0:
        return {UNPLACED: seconds}
    placed: dict[str, float] = defaultdict(float)
    for caller, recorded in callers.items():
        part = seconds * recorded[2] / own
        for layer, value in _placed(entries, caller, part, depth + 1).items():
            placed[layer] += value
    return placed


ORDER = (
    "Django request handling",
    "DRF",
    "ours: the request's edge",
    "ours: rules, queries and the client",
    "Django ORM",
    DATABASE,
    "provider's HTTP client",
    "JSON",
    "the benchmark's own views",
    UNPLACED,
)
