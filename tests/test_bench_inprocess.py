"""bench/inprocess.py, the quick look at an endpoint's CPU, still serves its scenarios:
each line of its table is a scenario that answered 2xx every time (it stops on any other
answer)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _inprocess(*args: str) -> str:
    """Run bench/inprocess.py on a fresh SQLite file (the test run's settings left out)
    and give its output."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "FAKE_PAYMENT_API", "PYTEST_", "COV_"))
    }
    result = subprocess.run(
        [sys.executable, "bench/inprocess.py", *args, "--rounds", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_inprocess_measures_each_scenario_and_its_limit():
    out = _inprocess("--only", "get_cart,apply_discount,pay", "--requests", "3", "--warmup", "1")
    measured = dict(re.findall(r"^(\w+)\s+([0-9.]+)\s+[0-9.]+\s+[0-9.]+$", out, re.M))
    assert set(measured) == {
        "bare",
        "get_cart",
        "apply_discount",
        "pay",
        "limit_get_cart",
        "limit_apply_discount",
        "limit_pay",
    }
    assert all(float(ms) > 0 for ms in measured.values())


def test_calls_counts_the_python_calls_of_each_request():
    # A count the machine's speed does not move: each request of a scenario makes the
    # same calls, so reading a cart makes more than the bare endpoint's constant answer.
    out = _inprocess(
        "--only", "get_cart", "--no-limits", "--calls", "--requests", "5", "--warmup", "2"
    )
    calls = dict(re.findall(r"^(\w+)\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+([0-9]+)$", out, re.M))
    assert set(calls) == {"bare", "get_cart"}, out
    assert 0 < int(calls["bare"]) < int(calls["get_cart"])


def test_layers_shows_where_each_scenarios_time_goes():
    out = _inprocess("--only", "apply_discount", "--layers", "--requests", "50", "--warmup", "5")
    table = out[out.index("µs per request, by layer") :].splitlines()
    header = table[1].split()
    assert header == ["layer", "bare", "apply_discount", "limit_apply_discount"]
    rows = {
        line.rsplit(None, 3)[0].strip(): [float(v) for v in line.split()[-3:]]
        for line in table[2:]
    }
    # The limit view is plain Django: no DRF; the endpoint is DRF's and the ORM's, and
    # both send statements to SQLite.
    assert rows["DRF"][1] > 0
    assert rows["DRF"][2] == 0
    assert rows["Django's ORM"][1] > rows["Django's ORM"][2]
    assert rows["database driver"][1] > 0
    assert rows["database driver"][2] > 0
    assert rows["ours: rules, queries, the provider's client"][1] > 0
    # Little is left unplaced.
    assert rows.get("other", [0, 0, 0])[1] < 0.02 * rows["total"][1]
    # The layers share out the measured wall time, nothing more or less (shown to 10 µs).
    walls = dict(re.findall(r"^(\w+)\s+[0-9.]+\s+([0-9.]+)\s+[0-9.]+$", out, re.M))
    for column, name in enumerate(("bare", "apply_discount", "limit_apply_discount")):
        assert rows["total"][column] == pytest.approx(float(walls[name]) * 1000, abs=6)
