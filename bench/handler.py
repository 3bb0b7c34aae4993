"""The plugin's own work on the bearer allow path, in process: Plugin.access on a repeat token
against the same five PDK calls made with no plugin work, side by side in one run.

    .venv/bin/python bench/handler.py [--json] [--quick]

The PDK object is the one our listener hands to handlers (edge/pdk_tree.py on an Event); its
connection is a stand-in that answers at once (get_headers, get_path; None otherwise), so what
is timed is Python only: no socket, no other process. `calls_only` makes the five calls of the
allow path with their real arguments; `access` is the whole handler; `plugin_work` is the
difference. The round trips themselves are bench/listener.py's subject.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import bench_main  # noqa: E402

from kong_oidc_py.edge.handler import Plugin  # noqa: E402
from kong_oidc_py.edge.pdk_tree import pdk_object  # noqa: E402
from kong_oidc_py.edge.rpc_channel import Event  # noqa: E402
from tests.support.fake_idp import FakeIdP  # noqa: E402
from tests.support.keys import claims, rsa_key  # noqa: E402


class _Conn:
    """Answers every PDK call at once: records the method, replies to the wait."""

    def __init__(self, headers: dict) -> None:
        self.headers = headers
        self.last: str | None = None
        self.sent: list = []

    def reply(self, msgid, error, result) -> None:
        data = result["Data"]
        self.last = data["Method"] if isinstance(data, dict) else None
        self.sent.append((self.last, data["Args"] if isinstance(data, dict) else None))

    def step(self, event: Event) -> tuple:
        event.pending = (self, 0)
        if self.last == "kong.request.get_headers":
            return self, 0, self.headers, False
        if self.last == "kong.request.get_path":
            return self, 0, "/api/x", False
        return self, 0, None, False


def _event(conn: _Conn) -> Event:
    return Event(1, "oidc", "access", (conn, 0), conn.step, lambda: None, lambda event: None)


def _time(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def run(quick: bool) -> dict:
    rounds, n = (3, 300) if quick else (9, 20000)
    key = rsa_key("bench-rsa")
    with FakeIdP() as idp:
        idp.set_keys(key)
        token = key.sign(claims(idp.issuer, lifetime=3600, sub="user-1"))
        headers = {"authorization": [f"Bearer {token}"], "x-user-id": ["spoofed"], "host": ["api.example.com"],
                   "user-agent": ["bench"], "accept": ["*/*"]}
        plugin = Plugin({"issuer": idp.issuer, "audience_required": ["api"], "upstream_headers_claims": ["sub"],
                         "upstream_headers_names": ["X-User-Id"]})
        conn = _Conn(headers)
        for _ in range(50):  # discovery, JWKS, token cache, memos; queued start warnings replayed
            plugin.access(pdk_object(_event(conn), False))
        conn.sent.clear()
        plugin.access(pdk_object(_event(conn), False))
        calls = list(conn.sent)

        def access() -> None:
            plugin.access(pdk_object(_event(conn), False))

        def calls_only() -> None:
            kong = pdk_object(_event(conn), False)
            for method, args in calls:
                kong.call(method, *args)

        measured: dict[str, list[float]] = {"access": [], "calls_only": []}
        for r in range(rounds):
            for name, fn in ((("access", access), ("calls_only", calls_only)) if r % 2 == 0
                             else (("calls_only", calls_only), ("access", access))):
                measured[name].append(_time(fn, n))
    us = {k: statistics.median(v) for k, v in measured.items()}
    return {
        "access_us": us["access"],
        "calls_only_us": us["calls_only"],
        "plugin_work_us": us["access"] - us["calls_only"],
        "pdk_calls": [method for method, _ in calls],
        "rounds_us": {k: [round(x, 2) for x in v] for k, v in measured.items()},
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "method": f"{rounds} rounds of {n} events each, alternating order, median of rounds; in process",
    }


def show(report: dict) -> None:
    print(f"  access {report['access_us']:.2f} us, the same calls alone {report['calls_only_us']:.2f} us: "
          f"plugin work {report['plugin_work_us']:.2f} us per bearer allow event")
    print(f"  calls: {', '.join(report['pdk_calls'])}")
    print(f"  {report['method']}; load average after {report['load_average_after']}")


def main(argv: list[str] | None = None) -> dict:
    return bench_main(argv, __doc__, run, show)


if __name__ == "__main__":
    main()
