"""Production Redis shapes on loopback for tests: a 3-master Cluster with replicas, a Sentinel
setup (master, replica, three sentinels) and TLS certificates. Built from Debian's redis-server
(tests/support/redis_server.py), random ports, no persistence."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.redis_server import RedisServer

SLOTS = 16384


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Cluster:
    masters: list[RedisServer]
    replicas: list[RedisServer]

    @property
    def nodes(self) -> list[RedisServer]:
        return self.masters + self.replicas

    def master_for_slot(self, slot: int) -> RedisServer:
        for node in self.nodes:
            try:
                info = redis.Redis(port=node.port, socket_timeout=1).execute_command("CLUSTER", "SLOTS")
            except redis.RedisError:
                continue
            for start, end, primary, *_ in info:
                if start <= slot <= end:
                    port = primary[1]
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no node serves slot {slot}")


@contextlib.contextmanager
def redis_cluster(masters: int = 3, replicas_per_master: int = 1) -> Iterator[Cluster]:
    args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
            # A replica with a stale link still takes over: the test kills masters on purpose.
            "--cluster-replica-validity-factor", "0")
    started: list[RedisServer] = []
    try:
        for _ in range(masters * (1 + replicas_per_master)):
            started.append(RedisServer(extra_args=args).start())
        primary, secondary = started[:masters], started[masters:]
        clients = [redis.Redis(port=n.port, socket_timeout=2) for n in started]
        for c in clients[1:]:
            c.execute_command("CLUSTER", "MEET", "127.0.0.1", started[0].port)
        per = SLOTS // masters
        for i, c in enumerate(clients[:masters]):
            end = SLOTS - 1 if i == masters - 1 else (i + 1) * per - 1
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * per, end)
        ids = [c.execute_command("CLUSTER", "MYID") for c in clients]
        ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
        _wait(lambda: all(len(c.execute_command("CLUSTER", "NODES").splitlines()) == len(started) for c in clients),
              20, "cluster nodes to meet")
        for j, c in enumerate(clients[masters:]):
            c.execute_command("CLUSTER", "REPLICATE", ids[j % masters])
        _wait(lambda: all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients),
              30, "cluster_state:ok")
        _wait(lambda: all(c.info("replication").get("master_link_status") == "up" for c in clients[masters:]),
              30, "replicas in sync")
        for c in clients:
            c.close()
        yield Cluster(primary, secondary)
    finally:
        for node in started:
            node.stop()


@dataclass
class SentinelSetup:
    name: str
    master: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer]

    def current_master_port(self) -> int:
        for s in self.sentinels:
            try:
                addr = redis.Redis(port=s.port, socket_timeout=1).execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                return int(addr[1])
            except (redis.RedisError, TypeError):
                continue
        raise AssertionError("no sentinel answers")


@contextlib.contextmanager
def redis_sentinel(name: str = "oidc-master") -> Iterator[SentinelSetup]:
    started: list[RedisServer] = []
    try:
        master = RedisServer().start()
        started.append(master)
        replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(master.port))).start()
        started.append(replica)
        _wait(lambda: redis.Redis(port=replica.port).info("replication").get("master_link_status") == "up",
              20, "replica in sync")
        sentinels = []
        for _ in range(3):
            s = RedisServer(sentinel_of=(name, master.port)).start()
            started.append(s)
            sentinels.append(s)
        setup = SentinelSetup(name, master, replica, sentinels)
        # Sentinels must have found each other and the replica before a failover can happen.
        def ready(s: RedisServer) -> bool:
            state = redis.Redis(port=s.port, socket_timeout=1).sentinel_master(name)
            return int(state["num-other-sentinels"]) == 2 and int(state["num-slaves"]) == 1

        _wait(lambda: all(ready(s) for s in sentinels), 30, "sentinels to discover each other")
        yield setup
    finally:
        for node in started:
            node.stop()


@dataclass(frozen=True)
class TlsFiles:
    ca: str
    cert: str
    key: str
    other_ca: str  # a CA that did not sign the server certificate


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


@contextlib.contextmanager
def tls_files(dns_name: str = "redis.test") -> Iterator[TlsFiles]:
    """A CA and a server certificate for `dns_name` and 127.0.0.1."""
    directory = tempfile.mkdtemp(prefix="kong-oidc-tls-")
    try:
        ca_key, ca_cert = _ca("kong-oidc-py test CA")
        _, other = _ca("unrelated CA")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        yield TlsFiles(
            ca=_write(os.path.join(directory, "ca.pem"), ca_cert.public_bytes(pem)),
            cert=_write(os.path.join(directory, "server.pem"), cert.public_bytes(pem)),
            key=_write(os.path.join(directory, "server.key"), key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
            other_ca=_write(os.path.join(directory, "other.pem"), other.public_bytes(pem)),
        )
    finally:
        for f in os.listdir(directory):
            os.unlink(os.path.join(directory, f))
        os.rmdir(directory)
