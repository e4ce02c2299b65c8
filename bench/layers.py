"""Where a request's time goes, by layer of the stack: a cProfile's own time per function,
summed per layer (`bench/inprocess.py --layers`).

A function belongs to the layer of the file it is in (LAYERS, first match). A built-in
(`getattr`, a `dict` method…), a function of Python's standard library outside LAYERS,
a package not listed, and the helpers of Django's that any layer calls (settings,
signals, time zones, thread-locals, the cache) belong to no layer by themselves: their
time goes to their callers, in the shares cProfile recorded for each (the time spent
in them under that caller), and on up the callers when those are unplaced too. The
database driver's own methods are named, not placed by file: `sqlite3.Cursor.execute`
is the database's work wherever it is called.

cProfile adds the same few hundred nanoseconds to every call it sees, so unprofiled the
layers of many small calls (DRF, the ORM) take less than their profiled share. Before
placing, each function's own time loses its calls' part of that overhead: the profiled
round's CPU time above the same requests' CPU time measured without the profiler,
divided evenly among the calls the profile counted (`shares(..., per_call=)`; CPU time,
which other processes on the machine do not stretch as they do wall time).
"""

from __future__ import annotations

import re
import sysconfig
from collections import defaultdict
from pathlib import Path

ROOT = re.escape(str(Path(__file__).resolve().parent.parent))
STDLIB = re.escape(sysconfig.get_paths()["stdlib"])
SITE = r"/site-packages/"

DATABASE = "database driver"
UNPLACED = "other"

# (layer, pattern on the file path), first match wins.
LAYERS: tuple[tuple[str, re.Pattern], ...] = tuple(
    (layer, re.compile(pattern))
    for layer, pattern in (
        (DATABASE, rf"{SITE}psycopg"),
        ("Django's ORM", rf"{SITE}django/db/"),
        ("DRF", rf"{SITE}(rest_framework|drf_spectacular)/"),
        (
            "the provider's HTTP client",
            rf"{SITE}(requests|urllib3|certifi|idna|charset_normalizer)/"
            rf"|^{STDLIB}/(http/client\.py|email/)",
        ),
        ("JSON", rf"{SITE}simplejson/|^{STDLIB}/json/"),
        ("Django's request handling", rf"{SITE}(django|whitenoise|gunicorn)/"),
        ("the harness", rf"^{ROOT}/bench/inprocess\.py$"),
        ("the limit views", rf"^{ROOT}/bench/"),
        (
            "ours: the request's edge",
            rf"^{ROOT}/(common/(middleware|ratelimit|clientip|api|exception_handler|errors)"
            rf"\.py$|observability/)",
        ),
        (
            "ours: rules, queries, the provider's client",
            rf"^{ROOT}/((cart|discount|payments|events|common|storefront)/|utils\.py$)",
        ),
    )
)
ORDER = (
    "Django's request handling",
    "DRF",
    "ours: the request's edge",
    "ours: rules, queries, the provider's client",
    "Django's ORM",
    DATABASE,
    "the provider's HTTP client",
    "JSON",
    "the limit views",
    "the harness",
    UNPLACED,
)
# Helpers of Django's any layer calls: placed, as built-ins are, by their callers.
_HELPERS = re.compile(rf"{SITE}(django/(utils|dispatch|conf|core/signals|core/cache)|asgiref)/")
# Built-ins that are the database's work: the driver's C code and SQLite itself.
_DATABASE_BUILTINS = re.compile(r"sqlite3\.|QueuedCursorWrapper|psycopg|'_sqlite")


def layer_of_path(path: str) -> str | None:
    if _HELPERS.search(path):
        return None
    for layer, pattern in LAYERS:
        if pattern.search(path):
            return layer
    return None


def calls(stats) -> int:
    """The calls a profile counted (built-ins' too)."""
    return sum(entry[1] for entry in stats.stats.values())


def shares(stats, per_call: float = 0.0) -> dict[str, float]:
    """Each layer's share of the profile's own time (a `pstats.Stats`), summing to 1;
    `per_call`: the profiler's own cost of one call, taken off each function's own time
    for each of its calls first."""
    # (file, line, name) -> (primitive calls, calls, own, cumulative, callers)
    entries = stats.stats
    split = _Splitter(entries)
    spent: dict[str, float] = defaultdict(float)
    for function, entry in entries.items():
        own = max(0.0, entry[2] - entry[1] * per_call)
        for layer, part in split.of(function).items():
            spent[layer] += own * part
    total = sum(spent.values()) or 1.0
    return {layer: seconds / total for layer, seconds in spent.items()}


class _Splitter:
    """Which layers a function's own time goes to, and in what parts (summing to 1)."""

    def __init__(self, entries) -> None:
        self.entries = entries
        self.known: dict[tuple, dict[str, float]] = {}

    def of(self, function) -> dict[str, float]:
        return self._parts(function, 2, frozenset()) or {UNPLACED: 1.0}

    def _parts(self, function, weight: int, seen: frozenset) -> dict[str, float]:
        # weight: which of a caller edge's times gives the callers' parts: for the
        # function itself its own time under each (2); for a caller unplaced too, the
        # time it took in all under each of its callers (3), since what is passed up is
        # time spent below it. Empty: only callers already on this walk (a cycle).
        key = (function, weight)
        if key in self.known:
            return self.known[key]
        path, _, name = function
        if path == "~" and _DATABASE_BUILTINS.search(name):
            parts = {DATABASE: 1.0}
        elif (layer := layer_of_path(path) if path != "~" else None) is not None:
            parts = {layer: 1.0}
        else:
            parts = self._by_callers(function, weight, seen | {function})
        if parts:  # (a cycle's split depends a little on where the walk came into it)
            self.known[key] = parts
        return parts

    def _by_callers(self, function, weight: int, seen: frozenset) -> dict[str, float]:
        entry = self.entries.get(function)
        # A caller already on this walk (a recursive call, a cycle through helpers)
        # passes nothing on: the time goes to the cycle's other callers.
        found = []
        for caller, edge in (entry[4] if entry else {}).items():
            if caller in seen or edge[weight] <= 0:
                continue
            parts = self._parts(caller, 3, seen)
            if parts:
                found.append((edge[weight], parts))
        total = sum(time for time, _ in found)
        placed: dict[str, float] = defaultdict(float)
        for time, parts in found:
            for layer, part in parts.items():
                placed[layer] += part * time / total
        return dict(placed)
