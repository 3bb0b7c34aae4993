"""State shared by every plugin server of a deployment (Redis): sessions, revocations, the
back-channel logout index, and later DPoP replay entries.

redis_client.py  `RedisSettings` (Kong Enterprise option names), `make_redis_client` (standalone,
                 TLS, ACL, Sentinel, Cluster), `RedisGuard` (every failure -> `RedisUnavailable`
                 with a reason; logged once per outage), `KeySpace` (hash-tagged key names)
"""

from kong_oidc_py.shared_state.redis_client import (
    KeySpace,
    RedisGuard,
    RedisNode,
    RedisSettings,
    RedisUnavailable,
    make_redis_client,
)

__all__ = ["KeySpace", "RedisGuard", "RedisNode", "RedisSettings", "RedisUnavailable", "make_redis_client"]
