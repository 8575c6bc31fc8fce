"""Calls for many servers: a few requests at a time per API client, however many calls run."""

from __future__ import annotations

import threading
import time

from providers.calls import CALLS, Gate, pooled


def most_in_flight(gates: tuple[Gate, Gate]) -> int:
    """The most requests in flight at once while two calls for 16 servers each run together,
    each through its gate."""
    flying = most = 0
    lock = threading.Lock()

    def request(_: int) -> None:
        nonlocal flying, most
        with lock:
            flying += 1
            most = max(most, flying)
        time.sleep(0.2)
        with lock:
            flying -= 1

    calls = [threading.Thread(target=pooled, args=(request, range(16), gate)) for gate in gates]
    for call in calls:
        call.start()
    for call in calls:
        call.join(30)
    return most


def test_calls_for_many_at_once_share_their_clients_requests_in_flight() -> None:
    shared = Gate()
    assert most_in_flight((shared, shared)) <= CALLS  # a run's cohorts, on one cloud client
    assert most_in_flight((Gate(), Gate())) > CALLS  # two clients: each has its own
