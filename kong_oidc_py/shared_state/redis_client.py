"""One Redis client factory for everything the plugin keeps in Redis, as production runs Redis.

Topologies (chosen by which options are set, as in Kong Enterprise):
* standalone: `session_redis_host`/`port`/`database`;
* Sentinel: `session_redis_sentinel_master` + `session_redis_sentinel_nodes` (the client asks the
  sentinels for the current master and asks again after a connection to it fails);
* Cluster: `session_redis_cluster_nodes` (startup nodes; the client learns the slot map, follows
  MOVED/ASK up to `session_redis_cluster_max_redirections` times, and re-reads the map after a
  node fails).
Each may add TLS (`session_redis_ssl`, certificate and host name verified unless
`session_redis_ssl_verify` is false, SNI `session_redis_server_name`) and ACL auth
(`session_redis_username` + `session_redis_password`).

Failure policy: no client-side retries and bounded timeouts, so a down or slow Redis costs one
timeout and then fails closed (`RedisUnavailable` with a reason such as `redis_timeout`). Pools
reconnect on the next call, Sentinel re-resolves the master, Cluster refreshes its slot map:
recovery needs nobody. `RedisGuard` logs the first failure of an outage at warning (auth/ACL
problems at error: they are configuration, not weather) and the recovery once.

Cluster: `KeySpace` puts keys that must live together (a session, its lock and its revocation
record) under one hash tag, so they map to one slot whatever the topology.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from kong_oidc_py.errors import OIDCError

log = logging.getLogger("kong_oidc_py")

T = TypeVar("T")


class RedisUnavailable(OIDCError):
    """Redis did not answer in time, refused us, or could not serve the key. Fail closed."""

    def __init__(self, reason: str = "redis_unavailable", detail: str | None = None) -> None:
        super().__init__(reason, "shared state (Redis) is unavailable", detail)


@dataclass(frozen=True)
class RedisNode:
    host: str
    port: int = 6379


@dataclass(frozen=True)
class RedisSettings:
    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    database: int = 0
    prefix: str = "oidc"
    connect_timeout_ms: int = 2000
    read_timeout_ms: int = 2000
    max_connections: int = 64
    ssl: bool = False
    ssl_verify: bool = True
    server_name: str | None = None
    # CA bundle for ssl_verify; None = the system store (which honours SSL_CERT_FILE).
    ca_file: str | None = None
    cluster_nodes: tuple[RedisNode, ...] = ()
    cluster_max_redirections: int = 5
    sentinel_master: str | None = None
    sentinel_role: str = "master"
    sentinel_nodes: tuple[RedisNode, ...] = ()
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def mode(self) -> str:
        if self.cluster_nodes:
            return "cluster"
        if self.sentinel_master:
            return "sentinel"
        return "standalone"

    def describe(self) -> str:
        """Where we talk to, for logs (no credentials)."""
        if self.mode == "cluster":
            nodes = ",".join(f"{n.host}:{n.port}" for n in self.cluster_nodes)
            return f"cluster {nodes}"
        if self.mode == "sentinel":
            nodes = ",".join(f"{n.host}:{n.port}" for n in self.sentinel_nodes)
            return f"sentinel master {self.sentinel_master!r} via {nodes}"
        return f"{self.host}:{self.port}/{self.database}"

    @classmethod
    def from_config(cls, config: Any) -> "RedisSettings":
        """From a PluginConfig (or any object with the session_redis_* option names)."""

        def opt(name: str, default: Any) -> Any:
            value = getattr(config, f"session_redis_{name}", None)
            return default if value is None else value

        def nodes(name: str, host_key: str) -> tuple[RedisNode, ...]:
            return tuple(RedisNode(str(n.get(host_key) or "127.0.0.1"), int(n.get("port") or 6379))
                         for n in opt(name, ()))

        return cls(
            host=opt("host", "127.0.0.1"),
            port=int(opt("port", 6379)),
            username=opt("username", None) or None,
            password=opt("password", None) or None,
            database=int(opt("database", 0)),
            prefix=opt("prefix", "oidc"),
            connect_timeout_ms=int(opt("connect_timeout", 2000)),
            read_timeout_ms=int(opt("read_timeout", 2000)),
            ssl=bool(opt("ssl", False)),
            ssl_verify=bool(opt("ssl_verify", True)),
            server_name=opt("server_name", None) or None,
            cluster_nodes=nodes("cluster_nodes", "ip"),
            cluster_max_redirections=int(opt("cluster_max_redirections", 5)),
            sentinel_master=opt("sentinel_master", None) or None,
            sentinel_role=opt("sentinel_role", "master"),
            sentinel_nodes=nodes("sentinel_nodes", "host"),
            sentinel_username=opt("sentinel_username", None) or None,
            sentinel_password=opt("sentinel_password", None) or None,
        )


# -- the client -------------------------------------------------------------------------------


def _tls_kwargs(cfg: RedisSettings) -> dict[str, Any]:
    if not cfg.ssl:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required" if cfg.ssl_verify else "none",
        "ssl_check_hostname": cfg.ssl_verify,
        "ssl_ca_certs": cfg.ca_file,
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }


def _sni_connection_class(server_name: str) -> type:
    """An SSLConnection presenting (and verifying) `server_name` instead of the host we dial,
    for Redis behind an address that is not the name on its certificate."""
    from redis.connection import SSLConnection

    class SniSSLConnection(SSLConnection):
        def _wrap_socket_with_ssl(self, sock: Any) -> Any:
            # redis-py passes self.host as server_hostname; a connection is used by one thread at
            # a time, so swapping it for the handshake is safe.
            dialled = self.host
            self.host = server_name
            try:
                return super()._wrap_socket_with_ssl(sock)
            finally:
                self.host = dialled

    return SniSSLConnection


def make_redis_client(cfg: RedisSettings) -> Any:
    """A redis-py client for `cfg`'s topology: bounded pool, bounded timeouts, no retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    connect_s = cfg.connect_timeout_ms / 1000.0
    common: dict[str, Any] = {
        "username": cfg.username,
        "password": cfg.password,
        "socket_connect_timeout": connect_s,
        "socket_timeout": cfg.read_timeout_ms / 1000.0,
        **_tls_kwargs(cfg),
    }
    if cfg.mode == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        client = RedisCluster(
            startup_nodes=[ClusterNode(n.host, n.port) for n in cfg.cluster_nodes],
            # Keys on healthy masters stay usable while one master fails over.
            require_full_coverage=False,
            retry=Retry(NoBackoff(), 0),
            max_connections=cfg.max_connections,
            **common,
        )
        # MOVED/ASK hops per command (redis-py's name for Kong's cluster_max_redirections).
        client.RedisClusterRequestTTL = max(1, cfg.cluster_max_redirections)
        return client
    if cfg.mode == "sentinel":
        from redis.sentinel import Sentinel

        sentinel_kwargs = {
            "username": cfg.sentinel_username,
            "password": cfg.sentinel_password,
            "socket_connect_timeout": connect_s,
            "socket_timeout": cfg.read_timeout_ms / 1000.0,
            "retry": Retry(NoBackoff(), 0),
            **_tls_kwargs(cfg),
        }
        sentinel = Sentinel([(n.host, n.port) for n in cfg.sentinel_nodes], sentinel_kwargs=sentinel_kwargs, **common)
        return sentinel.master_for(cfg.sentinel_master, db=cfg.database, retry=Retry(NoBackoff(), 0),
                                   max_connections=cfg.max_connections)
    pool_kwargs = dict(common)
    if cfg.ssl:
        pool_kwargs.pop("ssl")
        pool_kwargs["connection_class"] = (_sni_connection_class(cfg.server_name) if cfg.server_name
                                           else redis.SSLConnection)
    pool = redis.BlockingConnectionPool(
        host=cfg.host,
        port=cfg.port,
        db=cfg.database,
        retry=Retry(NoBackoff(), 0),
        max_connections=cfg.max_connections,
        timeout=connect_s,  # waiting for a free pooled connection is bounded too
        **pool_kwargs,
    )
    return redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


# -- failures ---------------------------------------------------------------------------------


def classify(err: BaseException) -> str:
    """A stable reason for a redis-py/OS failure (never the message: it may carry key names)."""
    from redis import exceptions as rx

    if isinstance(err, (rx.AuthenticationError, rx.AuthenticationWrongNumberOfArgsError)):
        return "redis_auth_failed"
    if isinstance(err, rx.NoPermissionError):
        return "redis_acl_denied"
    if isinstance(err, rx.ReadOnlyError):
        return "redis_read_only"
    if type(err).__name__ in ("MasterNotFoundError", "SlaveNotFoundError"):
        return "redis_no_master"
    if isinstance(err, (rx.ClusterDownError, rx.SlotNotCoveredError, rx.ClusterError)):
        return "redis_cluster_down"
    chain: BaseException | None = err
    while chain is not None:
        if isinstance(chain, ssl.SSLError) or "SSL" in type(chain).__name__:
            return "redis_tls_failed"
        chain = chain.__cause__ or chain.__context__
    text = str(err)
    if "SSL" in text or "certificate" in text:
        return "redis_tls_failed"
    if "WRONGPASS" in text or "invalid username-password" in text or "NOAUTH" in text:
        return "redis_auth_failed"
    if isinstance(err, (rx.TimeoutError, TimeoutError)):
        return "redis_timeout"
    if isinstance(err, (rx.ConnectionError, OSError)):
        return "redis_unreachable"
    return "redis_error"


_CONFIG_REASONS = {
    "redis_auth_failed": "check session_redis_username/session_redis_password",
    "redis_acl_denied": "the Redis ACL user needs GET SET DEL EXISTS SMEMBERS EVALSHA SCRIPT (SADD TTL EXPIRE in scripts) on the prefix's keys",
    "redis_tls_failed": "check session_redis_ssl, session_redis_ssl_verify, session_redis_server_name and the CA",
    "redis_read_only": "the configured node is a replica: point at the master (or use Sentinel)",
}


class RedisGuard:
    """Runs Redis calls; every failure becomes `RedisUnavailable(reason)`, logged once per outage."""

    def __init__(self, client: Any, settings: RedisSettings, *, component: str = "shared state",
                 error: Callable[[str, str], Exception] | None = None) -> None:
        from redis import exceptions as rx

        self.client = client
        self.settings = settings
        self.component = component
        self._errors = (rx.RedisError, OSError)
        self._error = error or (lambda reason, detail: RedisUnavailable(reason, detail))
        self._lock = threading.Lock()
        self.down_reason: str | None = None

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            result = fn(*args, **kwargs)
        except self._errors as err:
            reason = classify(err)
            self._failed(what, reason, err)
            raise self._error(reason, f"{what}: {type(err).__name__}") from None
        if self.down_reason is not None:
            self._recovered()
        return result

    def _failed(self, what: str, reason: str, err: BaseException) -> None:
        with self._lock:
            first = self.down_reason != reason
            self.down_reason = reason
        if not first:
            log.debug("oidc: %s: Redis %s failed: %s", self.component, what, reason)
            return
        hint = _CONFIG_REASONS.get(reason)
        level = logging.ERROR if hint else logging.WARNING
        log.log(level, "oidc: %s: Redis (%s) %s failed: %s (%s)%s; requests that need it fail closed until it answers",
                self.component, self.settings.describe(), what, reason, type(err).__name__,
                f"; {hint}" if hint else "")

    def _recovered(self) -> None:
        with self._lock:
            was, self.down_reason = self.down_reason, None
        if was is not None:
            log.warning("oidc: %s: Redis (%s) answers again after %s", self.component, self.settings.describe(), was)


# -- key names --------------------------------------------------------------------------------


class KeySpace:
    """Key names under `prefix`, hash-tagged per owner: `prefix:{tag}:kind`.

    The tag is an HMAC of the owner's id (a session id, a sid, a sub) under a key derived from
    the session secret: listing Redis reveals no usable id, and everything one owner has (a
    session record, its refresh lock, its revocation record) shares one Cluster slot.
    """

    def __init__(self, prefix: str, key: bytes) -> None:
        self.prefix = prefix
        self._key = key

    def digest(self, kind: str, owner: str) -> str:
        return hmac.new(self._key, f"{kind}\x00{owner}".encode("utf-8"), hashlib.sha256).hexdigest()[:40]

    def key(self, kind: str, owner: str, what: str) -> str:
        return f"{self.prefix}:{{{kind}:{self.digest(kind, owner)}}}:{what}"
