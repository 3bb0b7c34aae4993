"""idp/health.py: the IdP state machine that makes failures visible without flooding the log."""

import contextlib
import logging
import threading

import pytest

from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.health import IdpHealth
from tests.support.clock import Clock

ISSUER = "https://idp.example.com/realms/test"


def err(cause, description="https://idp.example.com/realms/test/jwks answered HTTP 503"):
    return ProviderError("jwks_failed", description, cause=cause)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def health(clock):
    return IdpHealth(ISSUER, clock=clock, repeat_interval=20)


@contextlib.contextmanager
def watching(caplog, level=logging.INFO):
    """Capture only what is logged inside the block."""
    with caplog.at_level(level, logger="kong_oidc_py"):
        caplog.clear()
        yield


def lines(caplog):
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "kong_oidc_py"]


def test_the_first_failure_is_logged_at_error_with_issuer_stage_cause_and_description(health, caplog):
    with watching(caplog):
        health.failure("jwks", err("http_status"))
    assert lines(caplog) == [(logging.ERROR, f"oidc: IdP {ISSUER}: jwks failing (http_status): "
                                             "https://idp.example.com/realms/test/jwks answered HTTP 503")]


def test_a_repeat_of_the_same_cause_within_the_interval_is_not_logged(health, caplog):
    health.failure("jwks", err("timeout"))
    with watching(caplog):
        for _ in range(50):
            health.failure("jwks", err("timeout"))
    assert lines(caplog) == []


def test_a_repeat_after_the_interval_is_logged_once_at_warning_with_the_attempt_count(health, clock, caplog):
    health.failure("jwks", err("timeout"))
    for _ in range(4):
        health.failure("jwks", err("timeout"))
    clock.now += 20
    with watching(caplog):
        health.failure("jwks", err("timeout"))
        health.failure("jwks", err("timeout"))
    [(level, message)] = lines(caplog)
    assert level == logging.WARNING
    assert "still failing (timeout) for 20s, 5 failed attempts since the last report" in message


def test_an_idp_down_for_an_hour_logs_at_most_three_lines_a_minute(health, clock, caplog):
    with watching(caplog):
        for _ in range(3600):
            health.failure("jwks", err("unreachable"))
            clock.now += 1
    assert len(lines(caplog)) <= 3 * 60 + 1


def test_a_change_of_cause_is_logged_at_once(health, caplog):
    health.failure("discovery", err("timeout"))
    with watching(caplog):
        health.failure("discovery", err("issuer_mismatch", "metadata issuer 'a' is not the configured issuer 'b'"))
    assert lines(caplog) == [(logging.ERROR, f"oidc: IdP {ISSUER}: discovery failure changed from timeout to "
                                             "issuer_mismatch: metadata issuer 'a' is not the configured issuer 'b'")]


def test_recovery_is_logged_at_warning_with_the_outage_length(health, clock, caplog):
    health.failure("jwks", err("unreachable"))
    health.failure("jwks", err("unreachable"))
    clock.now += 95
    with watching(caplog):
        health.success("jwks")
    assert lines(caplog) == [(logging.WARNING, f"oidc: IdP {ISSUER}: jwks recovered after 95s "
                                               "(2 failed attempts, last cause unreachable)")]


def test_success_without_a_failure_logs_nothing(health, caplog):
    with watching(caplog, logging.DEBUG):
        health.success("jwks")
        health.success("discovery")
    assert lines(caplog) == []


def test_a_failure_after_recovery_is_a_first_failure_again(health, caplog):
    health.failure("jwks", err("timeout"))
    health.success("jwks")
    with watching(caplog):
        health.failure("jwks", err("timeout"))
    assert [level for level, _ in lines(caplog)] == [logging.ERROR]


def test_stages_are_tracked_separately(health):
    health.failure("discovery", err("timeout"))
    health.failure("jwks", err("no_usable_key"))
    health.success("jwks")
    assert health.failing("discovery").cause == "timeout"
    assert health.failing("jwks") is None


def test_the_last_failure_is_the_most_recent_of_the_stages_still_failing(health):
    assert health.last_failure() is None
    health.failure("discovery", err("timeout", "d"))
    health.failure("jwks", err("tls", "j"))
    assert health.last_failure().summary() == "jwks tls: j"
    health.success("jwks")
    assert health.last_failure().summary() == "discovery timeout: d"
    health.success("discovery")
    assert health.last_failure() is None


def test_the_snapshot_reports_each_stage(health, clock):
    health.failure("jwks", err("http_status", "x answered HTTP 500"))
    clock.now += 3
    assert health.snapshot() == {
        "discovery": {"state": "ok"},
        "jwks": {"state": "failing", "cause": "http_status", "description": "x answered HTTP 500",
                 "for_seconds": 3.0, "attempts": 1},
    }


def test_concurrent_failures_log_one_first_failure(health, caplog):
    barrier = threading.Barrier(20)

    def fail():
        barrier.wait(5)
        for _ in range(50):
            health.failure("jwks", err("unreachable"))

    with watching(caplog):
        threads = [threading.Thread(target=fail) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(lines(caplog)) == 1
    assert health.failing("jwks").attempts == 1000
