"""pytest fixture for the echo upstream (tests/upstream/echo.py stays importable without pytest:
it is also a command)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.upstream.echo import EchoUpstream


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoUpstream]:
    """One echo upstream per test module: Kong's service, answering with what it received."""
    with EchoUpstream() as up:
        yield up
