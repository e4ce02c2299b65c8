"""The benchmark measures the bare endpoint again at the end of each configuration and
says how far the machine's speed moved in between (bench/run.py `bare_drift_note`): on a
shared VM it drifts within minutes, unseen by "others' CPU", and ratios with it."""

from bench.run import DRIFT_WARNING, bare_drift_note


def test_a_steady_machine_is_reported_as_such():
    note = bare_drift_note("sync", 1500.0, 1530.0)
    assert note == (
        "sync: the bare endpoint served 1,500.0 requests/s at the start and 1,530.0 at the "
        "end (+2%)."
    )


def test_a_drift_beyond_the_warning_says_the_ratios_may_have_moved_too():
    slower = bare_drift_note("prod", 1532.0, 595.0)
    assert "(-61%)" in slower
    assert "the ratios of the rows measured in between" in slower
    edge = 1000.0 * (1 + DRIFT_WARNING)
    assert "ratios" not in bare_drift_note("sync", 1000.0, edge - 1)
    assert "ratios" in bare_drift_note("sync", 1000.0, edge + 1)
