import threading

import pytest

from kong_oidc_py.idp.singleflight import SingleFlight


def _start_followers(flight, key, count, results, fn):
    threads = [threading.Thread(target=lambda: results.append(_call(flight, key, fn))) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def _call(flight, key, fn):
    try:
        return flight.do(key, fn)
    except Exception as exc:  # noqa: BLE001
        return exc


def _wait_until(predicate):
    event = threading.Event()
    for _ in range(2000):
        if predicate():
            return
        event.wait(0.005)
    raise AssertionError("condition never became true")


def test_concurrent_callers_for_one_key_share_one_call():
    flight = SingleFlight()
    release = threading.Event()
    calls = []

    def fn():
        calls.append(1)
        release.wait(10)
        return "value"

    results: list = []
    leader = threading.Thread(target=lambda: results.append(flight.do("k", fn)))
    leader.start()
    _wait_until(lambda: calls)
    followers = _start_followers(flight, "k", 20, results, fn)
    _wait_until(lambda: all(t.is_alive() for t in followers))
    release.set()
    for t in [leader, *followers]:
        t.join(10)
    assert len(calls) == 1
    assert results == ["value"] * 21


def test_an_exception_reaches_every_waiter():
    flight = SingleFlight()
    release = threading.Event()
    calls = []

    def fn():
        calls.append(1)
        release.wait(10)
        raise RuntimeError("idp down")

    results: list = []
    leader = threading.Thread(target=lambda: results.append(_call(flight, "k", fn)))
    leader.start()
    _wait_until(lambda: calls)
    followers = _start_followers(flight, "k", 5, results, fn)
    release.set()
    for t in [leader, *followers]:
        t.join(10)
    assert len(results) == 6
    assert all(isinstance(r, RuntimeError) for r in results)


def test_a_running_call_does_not_block_other_keys():
    flight = SingleFlight()
    release = threading.Event()
    started = threading.Event()

    def slow():
        started.set()
        release.wait(10)

    leader = threading.Thread(target=lambda: flight.do("a", slow))
    leader.start()
    started.wait(10)
    try:
        assert flight.do("b", lambda: "b") == "b"
    finally:
        release.set()
        leader.join(10)


def test_a_finished_call_is_not_reused():
    flight = SingleFlight()
    calls = []
    flight.do("k", lambda: calls.append(1))
    flight.do("k", lambda: calls.append(1))
    assert len(calls) == 2


def test_the_leader_sees_its_own_exception():
    flight = SingleFlight()
    with pytest.raises(ValueError):
        flight.do("k", lambda: int("x"))
    assert not flight.in_flight("k")
