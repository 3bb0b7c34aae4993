"""pytest fixtures for the real oidc-provider (tests/support/idp.py stays importable without pytest,
so `make demo` does not need the test extras)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from .idp import OidcProvider, ProviderStartError


def _start_or_fail(provider: OidcProvider) -> OidcProvider:
    try:
        return provider.start()
    except ProviderStartError as exc:
        provider.close()
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """One provider with the default config for the whole session. Do not restart it."""
    provider = _start_or_fail(OidcProvider())
    try:
        yield provider
    finally:
        provider.close()


@pytest.fixture
def oidc_provider_factory() -> Iterator[Callable[..., OidcProvider]]:
    """`make(config=None, **kw) -> started OidcProvider`, stopped at teardown (for rotation, TTLs...)."""
    made: list[OidcProvider] = []

    def make(config: dict[str, Any] | None = None, **kw: Any) -> OidcProvider:
        provider = OidcProvider(config, **kw)
        made.append(provider)
        return _start_or_fail(provider)

    try:
        yield make
    finally:
        for provider in made:
            provider.close()
