"""Usage limits of an agent CLI (a subscription's five-hour limit, a Codex rate limit).

An iteration that hits one is not a failure: it waits until the limit resets (shown and
journaled, at most `usage_limit_wait` seconds) and runs again, or, with a fallback agent,
runs on that agent instead until the limit has reset.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ..errors import Interrupted
from ..events import Bus
from ..models.base import ModelError, Usage
from ..run.agent import IterationCut, IterationOutcome
from ..run.signals import STOP
from .base import IterationAgent, StopCheck

USAGE_LIMIT = "usage_limit"  # the outcome of an iteration that hit a usage limit
CHECK_EVERY_S = 1.0  # how often budgets are looked at while waiting


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class LimitAware:
    """Wraps the run's agent: waits out its usage limits, or hands the iteration over."""

    def __init__(
        self,
        primary: IterationAgent,
        name: str,
        bus: Bus,
        *,
        max_wait: float,
        fallback: IterationAgent | None = None,
        fallback_name: str = "",
    ) -> None:
        self.primary = primary
        self.name = name
        self.bus = bus
        self.max_wait = max_wait
        self.fallback = fallback
        self.fallback_name = fallback_name
        self.limited_until = 0.0  # the primary's limit, while the fallback stands in

    def iterate(
        self, system: str, user_text: str, iteration: int, stop_check: StopCheck
    ) -> IterationOutcome:
        while True:
            if self.fallback is not None and time.time() < self.limited_until:
                return self._on_fallback(system, user_text, iteration, stop_check)
            out = self.primary.iterate(system, user_text, iteration, stop_check)
            if out.outcome != USAGE_LIMIT:
                return out
            until = getattr(self.primary, "limited_until", None) or time.time() + 3600
            if self.fallback is not None:
                self.limited_until = until
                # A warning: every view shows it, the journal keeps it with the iteration.
                self.bus.emit(
                    "warning",
                    level="warning",
                    message=f"{self.name} reached its usage limit (resets {_clock(until)}); "
                    f"running on {self.fallback_name} until then",
                    agent=self.name,
                    fallback=self.fallback_name,
                    until=until,
                )
                return self._on_fallback(system, user_text, iteration, stop_check)
            try:
                stopped = self._wait(until, stop_check)
            except (Interrupted, ModelError) as exc:  # the limited iteration's calls count
                raise IterationCut(out) from exc
            if stopped is not None:
                return stopped

    def _on_fallback(
        self, system: str, user_text: str, iteration: int, stop_check: StopCheck
    ) -> IterationOutcome:
        assert self.fallback is not None
        return self.fallback.iterate(system, user_text, iteration, stop_check)

    def _wait(self, until: float, stop_check: StopCheck) -> IterationOutcome | None:
        """Sleep until `until`; an outcome when a budget stops the run meanwhile. A limit
        that resets later than the bound ends the run (resumable) instead."""
        wait = max(0.0, until - time.time())
        if wait > self.max_wait:
            raise ModelError(
                f"{self.name} reached its usage limit, which resets at {_clock(until)}: later "
                f"than --usage-limit-wait ({self.max_wait:.0f}s) allows; resume the run after "
                "that, raise --usage-limit-wait, or pass --fallback-agent",
                fatal=True,
            )
        reason = f"{self.name} usage limit, resets {_clock(until)}"
        # Journaled, and notified (ralph.notify); never counted as a failure.
        self.bus.emit(
            "usage_limit_wait",
            level="warning",
            agent=self.name,
            reason=f"{self.name} usage limit",
            until=_clock(until),
            wait_s=round(wait, 1),
        )
        # The live view shows a countdown for this.
        self.bus.emit("model_retry", level="warning", wait_s=round(wait, 1), reason=reason)
        while True:
            left = until - time.time()
            if left <= 0:
                return None
            with STOP.interruptible():
                time.sleep(min(CHECK_EVERY_S, left))
            why = stop_check(Usage(), 0.0)
            if why:
                return IterationOutcome("stopped", error=why)

    def close(self) -> None:
        for agent in (self.primary, self.fallback):
            getattr(agent, "close", lambda: None)()
