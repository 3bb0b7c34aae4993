"""Is the IdP answering? One small state machine per provider, so its failures are seen.

Each stage (`discovery`, `jwks`) is either ok or failing with a cause (errors.PROVIDER_CAUSES).
What gets logged:

* the first failure, and every change of cause: error level, with the cause and a description
  (URL, HTTP status, configured vs discovered issuer, ... never a response body);
* a recovery (failing -> ok): warning level, with how long it failed;
* repeats of the same cause: at most one line per `repeat_interval` per stage and cause,
  counting the attempts in between, so an IdP that stays down costs a few lines a minute.

Kong copies the plugin server's stdout into its error log at `info`, which its default
`log_level = notice` hides; edge/kong_log.py replays the plugin's warnings and errors through
`kong.log.warn` / `kong.log.err` on the next request, so these lines show at Kong's default
level. That is why repeats are rate-limited here: every line costs a PDK call there.

Thread-safe: fetches run in background threads and in request threads at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from kong_oidc_py.errors import ProviderError

log = logging.getLogger("kong_oidc_py")

REPEAT_INTERVAL = 20.0  # seconds between two lines for one stage and cause: 3 a minute at most
STAGES = ("discovery", "jwks")


@dataclass(frozen=True)
class Failure:
    stage: str
    cause: str
    description: str
    since: float  # clock time the current cause was first seen
    attempts: int  # failed attempts with this cause

    def summary(self) -> str:
        return f"{self.stage} {self.cause}: {self.description}"


class IdpHealth:
    def __init__(
        self,
        issuer: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        repeat_interval: float = REPEAT_INTERVAL,
        logger: logging.Logger = log,
    ) -> None:
        self.issuer = issuer
        self._clock = clock
        self._repeat = repeat_interval
        self._log = logger
        self._lock = threading.Lock()
        self._failing: dict[str, Failure] = {}
        self._last_failure: Failure | None = None
        self._reported: dict[tuple[str, str], float] = {}  # (stage, cause) -> last line
        self._suppressed: dict[tuple[str, str], int] = {}

    # -- events -----------------------------------------------------------------------------

    def failure(self, stage: str, err: ProviderError) -> None:
        cause = getattr(err, "cause", "error")
        description = err.description
        now = self._clock()
        with self._lock:
            current = self._failing.get(stage)
            key = (stage, cause)
            if current is not None and current.cause == cause:
                failure = Failure(stage, cause, description, current.since, current.attempts + 1)
                self._failing[stage] = self._last_failure = failure
                last = self._reported.get(key, float("-inf"))
                if now - last < self._repeat:
                    self._suppressed[key] = self._suppressed.get(key, 0) + 1
                    return
                skipped = self._suppressed.pop(key, 0)
                self._reported[key] = now
                message = (
                    f"oidc: IdP {self.issuer}: {stage} still failing ({cause}) for {now - failure.since:.0f}s, "
                    f"{skipped + 1} failed attempts since the last report: {description}"
                )
                self._emit(logging.WARNING, message)
                return
            failure = Failure(stage, cause, description, now, 1)
            self._failing[stage] = self._last_failure = failure
            self._reported[key] = now
            self._suppressed.pop(key, None)
            if current is None:
                message = f"oidc: IdP {self.issuer}: {stage} failing ({cause}): {description}"
            else:
                message = f"oidc: IdP {self.issuer}: {stage} failure changed from {current.cause} to {cause}: {description}"
            self._emit(logging.ERROR, message)

    def success(self, stage: str) -> None:
        if stage not in self._failing:  # the common case: no lock
            return
        now = self._clock()
        with self._lock:
            current = self._failing.pop(stage, None)
            if current is None:
                return
            self._suppressed = {k: v for k, v in self._suppressed.items() if k[0] != stage}
            if self._last_failure is current:
                self._last_failure = next(iter(self._failing.values()), None)
            self._emit(
                logging.WARNING,
                f"oidc: IdP {self.issuer}: {stage} recovered after {now - current.since:.0f}s "
                f"({current.attempts} failed attempts, last cause {current.cause})",
            )

    def _emit(self, level: int, message: str) -> None:
        # Called with the lock held; logging handlers do their own locking.
        self._log.log(level, "%s", message)

    # -- readers ----------------------------------------------------------------------------

    def last_failure(self) -> Failure | None:
        """The most recent failure of a stage that is still failing, or None when all are ok."""
        return self._last_failure

    def failing(self, stage: str) -> Failure | None:
        return self._failing.get(stage)

    def snapshot(self) -> dict[str, dict]:
        """Per stage: {"state": "ok"} or {"state": "failing", cause, description, for_seconds,
        attempts}. For `check`/`explain` and tests."""
        now = self._clock()
        with self._lock:
            out: dict[str, dict] = {}
            for stage in STAGES:
                f = self._failing.get(stage)
                if f is None:
                    out[stage] = {"state": "ok"}
                else:
                    out[stage] = {
                        "state": "failing",
                        "cause": f.cause,
                        "description": f.description,
                        "for_seconds": round(now - f.since, 3),
                        "attempts": f.attempts,
                    }
            return out
