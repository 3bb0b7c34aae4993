"""pytest fixtures for the loopback servers several suites share, one per test module. The
server classes stay importable without these (tests/upstream/echo.py is also a command)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.redis_server import RedisServer
from tests.upstream.echo import EchoUpstream


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoUpstream]:
    """The echo upstream: Kong's service, answering with what it received."""
    with EchoUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server (a missing redis-server fails the test, as CI installs it)."""
    with RedisServer() as server:
        yield server
