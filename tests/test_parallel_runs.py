"""A parallel run (`pytest -n 2`) runs every test the serial run does.

Schemathesis gives each API operation's item of `tests/test_schemathesis.py::test_operation`
the same node id, and pytest-xdist's scope schedulers (`--dist loadgroup`, `loadscope`,
`loadfile`) queue tests by node id: they would run one operation of eighteen and report
the run as passed. conftest.py refuses such a run before any test starts."""

import os
import subprocess
import sys

from conftest import ROOT


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    """pytest in a child process, on its own SQLite files: never the test databases (or the
    fake provider) of the run this test is part of."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    for name in ("FAKE_PAYMENT_API", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--no-cov", "-p", "no:randomly", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_a_scope_scheduler_that_would_leave_out_schemathesis_operations_is_refused():
    result = run_pytest("-n", "2", "--dist", "loadgroup", "tests/test_schemathesis.py")

    assert result.returncode == 4, result.stdout[-2000:] + result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "--dist loadgroup would run only one of the tests sharing" in output
    assert "tests/test_schemathesis.py::test_operation" in output
    assert "passed" not in output  # refused before any test ran


def test_a_scope_scheduler_runs_when_no_tests_share_a_node_id():
    result = run_pytest("-n", "2", "--dist", "loadgroup", "common/tests/test_money.py", "-q")

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
