"""The benchmark counts, halfway through each production run, the kept-alive connections
each worker holds (bench/run.py `connections_per_worker`): the kernel picks the worker
that accepts each of wrk's connections, and a run where one worker got nearly all of
them measures that, not the endpoint (one process is one CPU at most). Such a run is
measured again, as one disturbed by other processes is."""

import os
import socket

from bench.run import Result, connections_per_worker, split_is_even, split_note, split_text


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
