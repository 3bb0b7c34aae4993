"""The in-memory DPoP jti replay store: first use wins exactly once, even under races; expired
entries are retaken and swept; the size stays bounded."""

from __future__ import annotations

import sys
import threading

from kong_oidc_py.verification.replay import MemoryReplayStore


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_second_use_within_the_ttl_is_a_replay():
    store = MemoryReplayStore(10, clock=Clock())
    assert store.first_use("k", 10) is True
    assert store.first_use("k", 10) is False


def test_a_key_is_usable_again_once_its_entry_expired_even_before_a_sweep():
    clock = Clock()
    store = MemoryReplayStore(10, clock=clock, sweep_every=3600)
    store.first_use("k", 10)
    clock.now += 10.5
    assert store.first_use("k", 10) is True
    assert store.first_use("k", 10) is False


def test_integer_clocks_cannot_confuse_entries():
    # Deadlines of equal value (small ints are shared objects) must still be told apart.
    clock = Clock(0)
    store = MemoryReplayStore(10, clock=clock)
    assert store.first_use("a", 10) and store.first_use("b", 10)
    assert not store.first_use("a", 10) and not store.first_use("b", 10)


def test_the_sweep_drops_expired_entries_but_keeps_a_retaken_key():
    clock = Clock()
    store = MemoryReplayStore(100, clock=clock, sweep_every=1)
    for k in "abcd":
        store.first_use(k, 10)
    clock.now += 11
    assert store.first_use("a", 10)  # retaken: its old record must not delete the new entry
    clock.now += 1
    store.first_use("e", 10)  # triggers the sweep
    assert len(store) == 2 and not store.first_use("a", 10)


def test_the_store_stays_bounded_dropping_the_oldest():
    store = MemoryReplayStore(3, clock=Clock())
    for k in "abcdef":
        store.first_use(k, 10)
    assert len(store) == 3
    assert store.first_use("a", 10) and not store.first_use("f", 10)


def test_racing_uses_of_one_key_let_exactly_one_through():
    store = MemoryReplayStore(100_000)
    wins: list[bool] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for i in range(2000):
            wins.append(store.first_use(f"k{i}", 60))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython allows: races, if any, show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert wins.count(True) == 2000 and len(wins) == 16000


def test_a_proof_replayed_after_the_wall_clock_stepped_back_is_still_refused():
    # The store and the iat check read the same wall clock (time.time by default): stepping it
    # back keeps the entry alive for as long as the proof's iat is acceptable again.
    clock = Clock(10_000.0)
    store = MemoryReplayStore(10, clock=clock)
    assert store.first_use("jkt:jti", 320) is True
    clock.now += 400  # past the ttl on any clock that kept running ...
    clock.now -= 300  # ... but the wall clock was stepped back, so the proof's iat is fresh again
    assert store.first_use("jkt:jti", 320) is False


def test_the_default_clock_is_the_wall_clock_of_the_iat_check():
    import time

    assert MemoryReplayStore().clock is time.time
