"""The benchmark counts, halfway through each production run, the kept-alive connections
each worker holds (bench/run.py `connections_per_worker`): the kernel picks the worker
that accepts each of wrk's connections, and a run where one worker got nearly all of
them measures that, not the endpoint (one process is one CPU at most). Such a run is
measured again, as one disturbed by other processes is."""

import os
import socket

from bench.run import (
    Attempt,
    Result,
    connections_per_worker,
    kept_run,
    split_excess,
    split_is_even,
    split_note,
    split_text,
)


def test_counts_the_connections_a_process_accepted_on_the_port():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [listener.accept()[0] for _ in clients]
    try:
        # This process holds both ends: only the accepted ones are on the port.
        assert connections_per_worker([os.getpid()], port) == [3]
        accepted[0].close()
        clients[0].close()
        assert connections_per_worker([os.getpid()], port) == [2]
        other = socket.create_server(("127.0.0.1", 0))
        assert connections_per_worker([os.getpid()], other.getsockname()[1]) == [0]
        other.close()
    finally:
        for sock in [*clients, *accepted, listener]:
            sock.close()


def test_a_process_that_is_gone_holds_none():
    assert connections_per_worker([2**22 + 1], 1) == [0]


def test_even_means_no_worker_above_its_share_plus_one():
    assert split_is_even([4, 4])
    assert split_is_even([5, 3])
    assert not split_is_even([6, 2])
    assert not split_is_even([1, 7])
    assert split_is_even([3, 3, 2])
    assert not split_is_even([5, 2, 1])
    assert split_is_even([])  # not sampled (the sync configuration)
    assert split_is_even([0, 0])


def test_the_note_lists_each_row_kept():
    rows = {
        "bare": Result(name="bare", label="bare", split=[3, 5]),
        "get_cart": Result(name="get_cart", label="get cart", split=[4, 4]),
        "provider": Result(name="provider", label="provider"),
    }
    note = split_note(rows)
    assert note.endswith(": bare 5/3, get_cart 4/4.")
    assert split_text(None) == "—"


def _run(others: float, split: list[int] | None) -> tuple[float, dict, Attempt]:
    return others, {"split": split}, Attempt()


def test_the_row_keeps_the_quietest_even_run():
    runs = [_run(1.0, [7, 1]), _run(9.0, [5, 3]), _run(3.0, [4, 4])]
    assert kept_run(runs) is runs[2]
    assert split_excess([4, 4]) == 0
    assert split_excess([5, 3]) == 1
    assert split_excess([8, 0]) == 4


def test_when_no_run_was_even_the_most_even_is_kept_not_the_quietest():
    # As a run of 2026-12-01: 8/0 served 228 requests/s, 6/2 583, the quietest was 8/0.
    runs = [_run(2.0, [6, 2]), _run(0.5, [8, 0]), _run(1.0, [7, 1]), _run(3.0, [6, 2])]
    assert kept_run(runs) is runs[0]


def test_the_sync_configuration_keeps_the_quietest():
    runs = [_run(4.0, None), _run(2.0, None)]
    assert kept_run(runs) is runs[1]
