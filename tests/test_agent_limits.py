"""Usage limits of an agent CLI, in process with stand-in agents: wait until the reset and
run again, hand over to the fallback until the reset, or stop when the reset is too far.

The clock is the test's (`Clock`): a reset is reached when the test says, never by how fast
a loaded machine gets through the calls before it."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from ralph.agents import limits
from ralph.agents.base import StopCheck
from ralph.agents.limits import LimitAware
from ralph.events import Bus, Recorder
from ralph.models.base import ModelError, Usage
from ralph.run.agent import IterationCut, IterationOutcome

NO_STOP: StopCheck = lambda usage, cost: None  # noqa: E731


class Clock:
    """time.time and time.sleep for the module under test and this one: sleeping moves the
    clock on at once."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(limits, "time", fake)
    monkeypatch.setattr(sys.modules[__name__], "time", fake, raising=False)
    yield fake


time = Clock()  # replaced per test by the `clock` fixture


class Scripted:
    """An agent whose iterations end as scripted: a usage limit (resetting `after` seconds
    from then) or a normal end."""

    def __init__(self, *limits: float | None) -> None:
        self.limits = list(limits)
        self.calls = 0
        self.limited_until: float | None = None

    def iterate(
        self, system: str, user_text: str, iteration: int, stop_check: StopCheck
    ) -> IterationOutcome:
        self.calls += 1
        after = self.limits.pop(0) if self.limits else None
        if after is not None:
            self.limited_until = time.time() + after
            return IterationOutcome("usage_limit")
        self.limited_until = None
        return IterationOutcome("ended", final_text=f"done by call {self.calls}")


def test_a_limit_is_waited_out_and_the_iteration_runs_again() -> None:
    recorder = Recorder()
    agent = Scripted(0.3)
    wrapped = LimitAware(agent, "claude-code", Bus("run", [recorder]), max_wait=60)
    out = wrapped.iterate("system", "prompt", 1, NO_STOP)
    assert out.outcome == "ended" and agent.calls == 2
    (wait,) = recorder.named("usage_limit_wait")
    assert wait.data["agent"] == "claude-code" and 0 <= wait.data["wait_s"] <= 0.3
    assert recorder.named("model_retry")  # the live view's countdown


def test_the_fallback_runs_until_the_reset_then_the_agent_again() -> None:
    recorder = Recorder()
    agent, fallback = Scripted(0.5), Scripted()
    wrapped = LimitAware(agent, "codex", Bus("run", [recorder]), max_wait=0,
                         fallback=fallback, fallback_name="builtin")  # fmt: skip
    assert wrapped.iterate("s", "p", 1, NO_STOP).final_text == "done by call 1"  # the fallback's
    assert (
        wrapped.iterate("s", "p", 2, NO_STOP).final_text == "done by call 2"
    )  # still the fallback's
    assert agent.calls == 1 and fallback.calls == 2
    time.sleep(0.6)
    assert wrapped.iterate("s", "p", 3, NO_STOP).final_text == "done by call 2"  # the agent's again
    assert agent.calls == 2
    assert "running on builtin" in recorder.named("warning")[0].data["message"]


def test_a_reset_beyond_the_bound_stops_the_run_and_a_budget_stops_the_wait() -> None:
    wrapped = LimitAware(Scripted(7200), "claude-code", Bus("run"), max_wait=3600)
    with pytest.raises(IterationCut, match="usage_limit") as cut:
        wrapped.iterate("s", "p", 1, NO_STOP)
    # The run ends (fatal), with the limited iteration as what it did.
    assert (
        isinstance(cut.value.__cause__, ModelError) and cut.value.outcome.outcome == "usage_limit"
    )
    assert "later than --usage-limit-wait" in cut.value.__cause__.message
    waiting = LimitAware(Scripted(30), "claude-code", Bus("run"), max_wait=3600)

    def budget(usage: Usage, cost: float | None) -> str | None:
        return "time budget used" if usage == Usage() else None

    out = waiting.iterate("s", "p", 1, budget)
    assert out.outcome == "stopped" and out.error == "time budget used"
