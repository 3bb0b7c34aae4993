"""Findings of `check`: one line each for people, a stable JSON document for CI.

Nothing here prints a configuration value of a secret option: findings are built from field
names, rule messages (which never echo a secret, config.py) and non-secret values.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from kong_oidc_py.config import SECRET_OPTIONS

SEVERITIES = ("error", "warning", "info")
MASK = "********"


@dataclass(frozen=True)
class Finding:
    severity: str        # error | warning | info
    code: str            # stable identifier, e.g. no_guard, config_invalid, idp_unreachable
    where: str           # "route orders, plugin oidc", "issuer https://...", "file"
    location: str        # position in the file: services[0].routes[1].plugins[0] (or "")
    field: str           # the option concerned ("" when none)
    message: str
    fix: str = ""

    def line(self) -> str:
        at = f" [{self.location}]" if self.location else ""
        field = f" {self.field}:" if self.field else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.severity.upper():7} {self.where}{at}{field} {self.message}{fix}"


class Report:
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self.instances: list[dict[str, Any]] = []
        self.issuers: list[dict[str, Any]] = []

    def add(self, severity: str, code: str, where: str, message: str, *, location: str = "",
            field: str = "", fix: str = "") -> None:
        assert severity in SEVERITIES, severity
        finding = Finding(severity, code, where, location, field, message, fix)
        if finding not in self.findings:
            self.findings.append(finding)

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def exit_code(self, strict: bool) -> int:
        if self.count("error"):
            return 1
        if strict and self.count("warning"):
            return 2
        return 0

    def to_json(self, strict: bool) -> dict[str, Any]:
        return {
            "file": self.path,
            "ok": self.exit_code(strict) == 0,
            "exit_code": self.exit_code(strict),
            "summary": {s: self.count(s) for s in SEVERITIES},
            "instances": self.instances,
            "issuers": self.issuers,
            "findings": [asdict(f) for f in self.findings],
        }

    def render(self, strict: bool) -> str:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        lines = [f.line() for f in sorted(self.findings, key=lambda f: order[f.severity])]
        n = len(self.instances)
        lines.append(
            f"{self.path}: {n} oidc instance{'s' if n != 1 else ''}, {self.count('error')} error(s), "
            f"{self.count('warning')} warning(s), {self.count('info')} note(s)"
        )
        return "\n".join(lines) + "\n"

    def dumps(self, strict: bool) -> str:
        return json.dumps(self.to_json(strict), indent=2, sort_keys=True) + "\n"


def mask_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy with every secret option's value replaced (for printing)."""
    return {k: (MASK if k in SECRET_OPTIONS and v not in (None, "") else v) for k, v in config.items()}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Captured:
    messages: list[tuple[str, str]]  # (level name lower-cased, message)


@contextmanager
def captured_logs() -> Iterator[Captured]:
    """The plugin's own warnings (logger kong_oidc_py) while the block runs, instead of on
    stderr: check and explain report them as findings / notes. The product never logs a
    token or a secret, so the messages are safe to show."""
    logger = logging.getLogger("kong_oidc_py")
    handler = _Collect()
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    out = Captured([])
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate
        out.messages.extend((r.levelname.lower(), r.getMessage()) for r in handler.records)
