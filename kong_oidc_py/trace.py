"""A recorder for the decision, for `kong-oidc-py explain`.

The decision code (Gateway.handle, the extractor, the verifier, the policy matcher) takes an
optional `trace` and appends a Step where it decides something. It is None on every request
Kong sends, so the hot path pays one `is not None` test per hook and allocates nothing; explain
passes a Trace and so shows what the real code did, not what a re-implementation thinks it
would do.

Steps never carry the token or any of its segments: hooks describe checks with configuration
values, header parameters (alg, kid, typ) and claim values, exactly what the decision log may
show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    stage: str          # request, policy, browser, token, header, key, signature, claim, requirement, consumer, decision
    check: str          # what was looked at: "alg", "aud", a policy name, "location", ...
    ok: bool | None     # True passed, False failed (the decision follows), None informational
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable extras (never the token)


class Trace:
    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, stage: str, check: str, ok: bool | None, detail: str = "", **data: Any) -> None:
        self.steps.append(Step(stage, check, ok, detail, data))

    def stage(self, name: str) -> list[Step]:
        return [s for s in self.steps if s.stage == name]
