"""bench/layers.py: a profile's own time, by layer of the stack."""

import sysconfig
from pathlib import Path

import pytest

from bench import layers

ROOT = Path(layers.__file__).resolve().parent.parent
SITE = "/venv/lib/python3.11/site-packages"
STDLIB = sysconfig.get_paths()["stdlib"]
OURS = "ours: rules, queries, the provider's client"
EDGE = "ours: the request's edge"
# Functions as pstats names them: (file, line, name).
ORM_SAVE = (f"{SITE}/django/db/models/base.py", 1, "save")
OUR_APPLY = (f"{ROOT}/cart/services.py", 1, "apply")
GETATTR = ("~", 0, "<built-in method builtins.getattr>")


class _Stats:
    def __init__(self, entries):
        self.stats = entries


def _entry(own, callers=None, calls=1):
    # As pstats keeps them: (primitive calls, calls, own time, cumulative time, callers),
    # each caller's edge (calls, primitive calls, own time, cumulative time).
    return (calls, calls, own, own, callers or {})


def _edge(own, cumulative=None):
    return (1, 1, own, own if cumulative is None else cumulative)


def test_a_function_belongs_to_the_layer_of_its_file():
    assert layers.layer_of_path(f"{SITE}/django/db/models/base.py") == "Django's ORM"
    assert layers.layer_of_path(f"{SITE}/rest_framework/views.py") == "DRF"
    assert layers.layer_of_path(f"{SITE}/django/core/handlers/wsgi.py") == (
        "Django's request handling"
    )
    assert layers.layer_of_path(f"{SITE}/psycopg/cursor.py") == layers.DATABASE
    assert layers.layer_of_path(f"{ROOT}/common/ratelimit.py") == EDGE
    assert layers.layer_of_path(f"{ROOT}/cart/services.py") == OURS
    assert layers.layer_of_path(f"{ROOT}/storefront/access.py") == OURS
    assert layers.layer_of_path(f"{ROOT}/utils.py") == OURS
    # The provider client's deadlines are the client's, not the request's edge.
    assert layers.layer_of_path(f"{ROOT}/common/http.py") == OURS
    assert layers.layer_of_path(f"{STDLIB}/http/client.py") == "the provider's HTTP client"
    assert layers.layer_of_path(f"{ROOT}/bench/limits.py") == "the limit views"
    assert layers.layer_of_path(f"{ROOT}/bench/inprocess.py") == "the harness"


def test_only_our_own_files_are_ours():
    # Another package's utils.py or common/ directory, or the standard library's, is not.
    assert layers.layer_of_path(f"{SITE}/django_filters/utils.py") is None
    assert layers.layer_of_path(f"{SITE}/markdown_it/common/utils.py") is None
    assert layers.layer_of_path(f"{STDLIB}/uuid.py") is None
    # Helpers any layer calls belong to none by themselves.
    assert layers.layer_of_path(f"{SITE}/django/utils/timezone.py") is None
    assert layers.layer_of_path(f"{SITE}/django/dispatch/dispatcher.py") is None


def test_a_builtins_time_goes_to_its_callers_in_their_shares():
    helper = (f"{SITE}/django/utils/timezone.py", 1, "now")
    entries = {
        ORM_SAVE: _entry(1.0),
        OUR_APPLY: _entry(2.0),
        # getattr: 3 s, 1 s of it under the ORM and 2 s under a helper that ours calls.
        GETATTR: _entry(3.0, {ORM_SAVE: _edge(1.0), helper: _edge(2.0)}),
        helper: _entry(1.0, {OUR_APPLY: _edge(1.0, 3.0)}),
    }
    shares = layers.shares(_Stats(entries))
    total = 1 + 2 + 3 + 1
    assert shares["Django's ORM"] == pytest.approx((1 + 1) / total)
    assert shares[OURS] == pytest.approx((2 + 2 + 1) / total)
    assert sum(shares.values()) == pytest.approx(1)


def test_time_below_an_unplaced_caller_goes_where_that_caller_spent_it():
    # A helper called a thousand cheap times by the ORM and once by ours, that once
    # doing the expensive built-in call: the built-in's time is ours.
    helper = (f"{SITE}/django/utils/functional.py", 1, "helper")
    builtin = ("~", 0, "<built-in method zlib.compress>")
    entries = {
        ORM_SAVE: _entry(0.0),
        OUR_APPLY: _entry(0.0),
        helper: _entry(1.0, {ORM_SAVE: _edge(0.9, 0.9), OUR_APPLY: _edge(0.1, 5.1)}),
        builtin: _entry(5.0, {helper: _edge(5.0)}),
    }
    shares = layers.shares(_Stats(entries))
    assert shares[OURS] == pytest.approx((0.1 + 5.0 * 5.1 / 6.0) / 6.0)


def test_a_recursive_or_cyclic_helper_leaves_nothing_unplaced():
    first = (f"{STDLIB}/copy.py", 1, "deepcopy")
    second = (f"{STDLIB}/copy.py", 2, "_deepcopy_dict")
    entries = {
        OUR_APPLY: _entry(1.0),
        # deepcopy calls itself and _deepcopy_dict, which calls deepcopy back.
        first: _entry(2.0, {OUR_APPLY: _edge(1.0, 5.0), first: _edge(0.5), second: _edge(0.5)}),
        second: _entry(1.0, {first: _edge(1.0, 3.0)}),
        GETATTR: _entry(1.0, {first: _edge(0.5), second: _edge(0.5)}),
    }
    assert layers.shares(_Stats(entries)) == {OURS: pytest.approx(1.0)}


def test_the_profilers_overhead_is_taken_off_per_call():
    # 990 calls of DRF's and 10 of the ORM's, each layer profiled at 1 s, the profiler
    # costing 0.5 ms a call: DRF keeps 0.505 s, the ORM 0.995.
    drf = (f"{SITE}/rest_framework/views.py", 1, "dispatch")
    entries = {drf: _entry(1.0, calls=990), ORM_SAVE: _entry(1.0, calls=10)}
    assert layers.calls(_Stats(entries)) == 1000
    shares = layers.shares(_Stats(entries), per_call=0.0005)
    assert shares["DRF"] == pytest.approx((1.0 - 0.495) / 1.5)
    assert shares["Django's ORM"] == pytest.approx((1.0 - 0.005) / 1.5)


def test_the_database_drivers_builtins_are_the_databases_wherever_called():
    ours = (f"{ROOT}/common/compiled.py", 1, "run")
    execute = ("~", 0, "<method 'execute' of 'sqlite3.Cursor' objects>")
    entries = {ours: _entry(1.0), execute: _entry(3.0, {ours: _edge(3.0)})}
    assert layers.shares(_Stats(entries))[layers.DATABASE] == pytest.approx(0.75)


def test_time_nobody_can_place_is_other():
    orphan = ("~", 0, "<built-in method builtins.len>")
    assert layers.shares(_Stats({orphan: _entry(1.0)})) == {layers.UNPLACED: 1.0}
