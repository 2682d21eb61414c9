"""Guards that stop a run by themselves: budgets, stalls, repeated failures, repetition."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..config import RunConfig
from ..models.base import Usage
from ..status import Outcome

FAILED_OUTCOMES = {o.value for o in Outcome if o.failure}
# The budgets, as settings: the guard each is checked by has the same name.
BUDGETS = ("max_cost", "max_tokens", "timeout")
TOOL_STORM = 5  # an iteration whose tool calls (at least this many) all failed counts as failed


@dataclass
class Stop:
    """Why the run stops: status (budget | stalled | failed) and a one-line reason."""

    status: str
    guard: str
    reason: str


@dataclass
class IterationRecord:
    """What the guards need to know about a finished iteration."""

    outcome: str
    files_changed: int
    accepted: bool
    final_text: str | None
    tool_calls: int = 0
    tool_errors: int = 0
    error: str | None = None


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@dataclass
class Guards:
    """Tracks spend and progress across iterations and says when to stop."""

    cfg: RunConfig
    usage: Usage = field(default_factory=Usage)  # the run's totals so far
    cost_usd: float | None = 0.0
    elapsed_before: float = 0.0  # seconds spent by earlier processes of a resumed run
    started: float = field(default_factory=time.monotonic)
    stalled_in_a_row: int = 0
    failed_in_a_row: int = 0
    last_errors: list[str] = field(default_factory=list)
    recent_finals: list[str] = field(default_factory=list)

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def budget_stop(self, usage: Usage | None = None, cost: float | None = None) -> Stop | None:
        """A budget that has run out, counting an iteration in progress (usage, cost)."""
        total = self.usage + (usage or Usage())
        spent = None if self.cost_usd is None or cost is None else self.cost_usd + cost
        cfg = self.cfg
        if cfg.max_cost is not None and spent is not None and spent >= cfg.max_cost:
            return Stop(
                "budget", "max_cost", f"cost budget used: ${spent:.4f} of ${cfg.max_cost:.2f}"
            )
        if cfg.max_tokens is not None and total.total >= cfg.max_tokens:
            return Stop(
                "budget", "max_tokens", f"token budget used: {total.total:,} of {cfg.max_tokens:,}"
            )
        if cfg.timeout is not None and self.elapsed() >= cfg.timeout:
            return Stop(
                "budget",
                "timeout",
                f"time budget used: {_fmt_duration(self.elapsed())} of {_fmt_duration(cfg.timeout)}",
            )
        return None

    def add(self, usage: Usage, cost: float | None) -> None:
        """Count a finished iteration's spend."""
        self.usage += usage
        self.cost_usd = None if self.cost_usd is None or cost is None else self.cost_usd + cost

    def after_iteration(self, rec: IterationRecord) -> Stop | None:
        """Update stall and failure streaks; a Stop when one reaches its limit."""
        failed = rec.outcome in FAILED_OUTCOMES or (
            rec.tool_calls >= TOOL_STORM and rec.tool_errors == rec.tool_calls
        )
        if failed:
            self.failed_in_a_row += 1
            self.last_errors.append(rec.error or f"all {rec.tool_calls} tool calls failed")
        else:
            self.failed_in_a_row = 0
            self.last_errors.clear()
        final = " ".join((rec.final_text or "").split())
        repeated = (
            bool(final)
            and len(self.recent_finals) >= 2
            and all(f == final for f in self.recent_finals[-2:])
        )
        self.recent_finals = [*self.recent_finals[-1:], final]
        stalled = (rec.files_changed == 0 and not rec.accepted) or repeated
        self.stalled_in_a_row = self.stalled_in_a_row + 1 if stalled else 0

        if self.failed_in_a_row >= self.cfg.max_failures:
            return Stop(
                "failed",
                "max_failures",
                f"{self.failed_in_a_row} failed iterations in a row; last error: {self.last_errors[-1]}",
            )
        limit = self.cfg.stall_limit
        if limit and self.stalled_in_a_row >= limit:
            why = "repeated the same final message" if repeated else "changed no file"
            return Stop(
                "stalled",
                "stall",
                f"{self.stalled_in_a_row} iterations in a row made no progress (last one {why}); "
                "raise --stall-limit or set it to 0 to turn this off",
            )
        return self.budget_stop()
