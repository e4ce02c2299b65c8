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


def test_a_worker_restarted_in_the_last_run_is_named_as_the_drifts_likely_cause():
    note = bare_drift_note("prod", 4987.4, 3461.9, restarts=1)
    assert "(-31%)" in note
    assert "1 worker restarted by `max_requests` during the run at the end" in note
    assert "machine's speed moved" not in note
    # A restart that moved nothing is not news.
    assert bare_drift_note("prod", 1500.0, 1530.0, restarts=1).endswith("(+2%).")


def test_a_row_measured_again_says_what_disturbed_each_run():
    from bench.run import Result, repeated_note

    bare = Result(name="bare", label="bare endpoint `GET /bench/bare/`")
    bare.attempts = [(0.0, 4760.6, [6, 2]), (0.0, 4987.4, [4, 4])]
    cart = Result(name="get_cart", label="get cart `GET /api/cart/{id}/`")
    cart.attempts = [(22.0, 3000.0, None), (3.0, 3500.0, None)]
    once = Result(name="create_cart", label="create cart `POST /api/cart/`")
    once.attempts = [(0.0, 1300.0, [4, 4])]
    note = repeated_note({"bare": bare, "get_cart": cart, "create_cart": once}, 15)
    assert "bare endpoint 4761 req/s (connections 6/2), 4987 req/s (undisturbed)" in note
    assert "get cart 3000 req/s (others' CPU 22%), 3500 req/s (undisturbed)" in note
    assert "create cart" not in note
    assert repeated_note({"create_cart": once}, 15) == ""
