"""A clock a test moves by hand, for code that takes `clock=` (a monotonic or wall-clock
callable): `clock = Clock(); clock.now += 601` is the cache TTL passing without sleeping."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
