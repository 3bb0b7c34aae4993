"""edge/kong_log.py: the plugin's warnings and errors replayed at their level through kong.log."""

import logging

import pytest

from kong_oidc_py.edge.kong_log import KongLogBridge


class RecordingKongLog:
    def __init__(self):
        self.calls = []

    def err(self, text):
        self.calls.append(("err", text))

    def warn(self, text):
        self.calls.append(("warn", text))


class Kong:
    def __init__(self):
        self.log = RecordingKongLog()


@pytest.fixture
def logger():
    bridge = KongLogBridge(capacity=3)
    lg = logging.getLogger("kong_oidc_py.test_bridge")
    lg.addHandler(bridge)
    lg.propagate = False
    yield lg, bridge
    lg.removeHandler(bridge)


def test_warnings_and_errors_replay_at_their_level(logger):
    lg, bridge = logger
    lg.warning("oidc: keys are stale for %s", "https://idp")
    lg.error("oidc: discovery failed")
    kong = Kong()
    bridge.drain(kong)
    assert kong.log.calls == [("warn", "oidc: keys are stale for https://idp"), ("err", "oidc: discovery failed")]


def test_info_records_are_not_replayed(logger):
    lg, bridge = logger
    lg.info("oidc: routine")
    assert not bridge.pending()


def test_a_drained_record_is_replayed_once(logger):
    lg, bridge = logger
    lg.error("oidc: once")
    bridge.drain(Kong())
    kong = Kong()
    bridge.drain(kong)
    assert kong.log.calls == []


def test_a_full_queue_counts_what_it_dropped_and_says_so(logger):
    lg, bridge = logger
    for i in range(5):
        lg.error("oidc: failure %d", i)
    kong = Kong()
    bridge.drain(kong)
    assert [text for _, text in kong.log.calls[:3]] == ["oidc: failure 0", "oidc: failure 1", "oidc: failure 2"]
    assert "2 more warnings/errors were dropped" in kong.log.calls[3][1]
