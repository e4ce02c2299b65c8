"""bench/layers.py: a profile's own time, by layer of the stack."""

import pytest

from bench import layers

SITE = "/venv/lib/python3.11/site-packages"


class _Stats:
    def __init__(self, entries):
        self.stats = entries


def _entry(own, callers=None):
    # (primitive calls, calls, own time, cumulative time, callers)
    return (1, 1, own, own, callers or {})


def test_a_function_belongs_to_the_layer_of_its_file():
    assert layers.layer_of_path(f"{SITE}/django/db/models/base.py") == "Django ORM"
    assert layers.layer_of_path(f"{SITE}/rest_framework/views.py") == "DRF"
    assert layers.layer_of_path(f"{SITE}/django/core/handlers/wsgi.py") == (
        "Django request handling"
    )
    assert layers.layer_of_path(f"{SITE}/psycopg/cursor.py") == "database driver"
    assert layers.layer_of_path("/app/common/ratelimit.py") == "ours: the request's edge"
    assert layers.layer_of_path("/app/cart/services.py") == ("ours: rules, queries and the client")
    # Helpers any layer calls belong to none by themselves.
    assert layers.layer_of_path(f"{SITE}/django/utils/timezone.py") is None
    assert layers.layer_of_path(f"{SITE}/django/dispatch/dispatcher.py") is None


def test_a_builtins_time_goes_to_its_callers_in_their_shares():
    orm = (f"{SITE}/django/db/models/base.py", 1, "save")
    ours = ("/app/cart/services.py", 1, "apply")
    helper = (f"{SITE}/django/utils/timezone.py", 1, "now")
    getattr_ = ("~", 0, "<built-in method builtins.getattr>")
    entries = {
        orm: _entry(1.0),
        ours: _entry(2.0),
        # getattr: 3 s, called for 1 s by the ORM and 2 s by a helper that ours calls.
        getattr_: _entry(3.0, {orm: (1, 1, 1.0, 1.0), helper: (1, 1, 2.0, 2.0)}),
        helper: _entry(1.0, {ours: (1, 1, 1.0, 3.0)}),
    }
    shares = layers.shares(_Stats(entries))
    total = 1 + 2 + 3 + 1
    assert shares["Django ORM"] == pytest.approx((1 + 1) / total)
    assert shares["ours: rules, queries and the client"] == pytest.approx((2 + 2 + 1) / total)
    assert sum(shares.values()) == pytest.approx(1)


def test_the_database_drivers_builtins_are_the_databases_wherever_called():
    ours = ("/app/common/compiled.py", 1, "run")
    execute = ("~", 0, "<method 'execute' of 'sqlite3.Cursor' objects>")
    entries = {ours: _entry(1.0), execute: _entry(3.0, {ours: (1, 1, 3.0, 3.0)})}
    assert layers.shares(_Stats(entries))["database driver"] == pytest.approx(0.75)


def test_time_nobody_can_place_is_other():
    orphan = ("~", 0, "<built-in method builtins.len>")
    assert layers.shares(_Stats({orphan: _entry(1.0)})) == {layers.UNPLACED: 1.0}
