import pytest

from kong_oidc_py.verification.token_cache import TokenCache


def test_a_stored_value_is_returned_before_its_deadline():
    cache = TokenCache(10, ttl=60)
    cache.put(b"k", "claims", now=1000, expires_at=1030)
    assert cache.get(b"k", now=1029.9) == "claims"


def test_an_entry_expires_at_the_token_expiry_when_that_comes_first():
    cache = TokenCache(10, ttl=60)
    cache.put(b"k", "claims", now=1000, expires_at=1030)
    assert cache.get(b"k", now=1030) is None


def test_an_entry_expires_after_the_ttl_when_that_comes_first():
    cache = TokenCache(10, ttl=60)
    cache.put(b"k", "claims", now=1000, expires_at=5000)
    assert cache.get(b"k", now=1060) is None


def test_an_entry_without_expiry_lives_for_the_ttl():
    cache = TokenCache(10, ttl=60)
    cache.put(b"k", "claims", now=1000, expires_at=None)
    assert cache.get(b"k", now=1059) == "claims"


def test_an_already_expired_value_is_not_stored():
    cache = TokenCache(10, ttl=60)
    cache.put(b"k", "claims", now=1000, expires_at=1000)
    assert len(cache) == 0


def test_an_expired_entry_is_dropped_when_read():
    cache = TokenCache(10, ttl=60)
    cache.put(b"k", "claims", now=1000, expires_at=None)
    cache.get(b"k", now=2000)
    assert len(cache) == 0


def test_the_cache_never_grows_past_its_size():
    cache = TokenCache(3, ttl=60)
    for i in range(10):
        cache.put(bytes([i]), i, now=1000, expires_at=None)
    assert len(cache) == 3


def test_eviction_drops_the_oldest_entry():
    cache = TokenCache(2, ttl=60)
    for i in range(3):
        cache.put(bytes([i]), i, now=1000 + i, expires_at=None)
    assert [cache.get(bytes([i]), now=1003) for i in range(3)] == [None, 1, 2]


@pytest.mark.parametrize(("size", "ttl"), [(0, 60), (10, 0)])
def test_a_cache_that_could_hold_nothing_is_refused(size, ttl):
    with pytest.raises(ValueError):
        TokenCache(size, ttl)
