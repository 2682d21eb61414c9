"""One iteration in process: the Agent with the deterministic script model and the real tools
(no sandbox) on a real git repository; how each way a conversation can end is recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.events import Bus, Recorder
from ralph.models.base import ModelError, ModelRequest, Usage
from ralph.models.script import ScriptModel
from ralph.run.agent import CONTINUE_AFTER_MAX_TOKENS, Agent, IterationCut, IterationOutcome
from ralph.tools import make_toolset
from tests.helpers import closed_after_test, write_script
from tests.test_loop_runs import Spy

SYSTEM = "You harden repositories."
TASK = "Fix the bug. Output <promise>DONE</promise> when done."
USAGE = {"input_tokens": 1000, "output_tokens": 100}


def run_turns(
    repo: Path, turns: list[Any], *, max_turns: int = 50, budget: int | None = None
) -> tuple[IterationOutcome, Spy, Recorder]:
    """One iteration of `turns` (script turns); `budget`: tokens after which a stop is asked."""
    model = Spy(ScriptModel(write_script(repo.parent / "session.yaml", [turns])))
    tools, _ = make_toolset(RunConfig(repo=repo, sandbox="none"), repo)
    closed_after_test(tools)
    recorder = Recorder()
    agent = Agent(model, tools, Bus("run-agent", [recorder]), max_turns=max_turns)
    if budget is not None:
        agent.stop_check = lambda usage, cost: "budget" if usage.total >= budget else None
    return agent.iterate(SYSTEM, TASK, 1), model, recorder


def sent_texts(request: ModelRequest) -> list[str]:
    """The text blocks of the last (user) message of a request."""
    content = request.messages[-1]["content"]
    return [b["text"] for b in content if b.get("type") == "text"]


def test_tool_calls_run_in_order_and_the_final_message_ends_the_iteration(git_repo: Path) -> None:
    tools = [
        {"bash": {"command": "echo fixed > app.txt"}},
        {"str_replace_based_edit_tool": {"command": "view", "path": "app.txt"}},
    ]
    turns = [{"text": "Fixing.", "tools": tools, "usage": USAGE},
             {"text": "Fixed it. <promise>DONE</promise>", "usage": USAGE}]  # fmt: skip
    out, model, recorder = run_turns(git_repo, turns)
    assert (out.outcome, out.turns, out.tool_calls, out.tool_errors) == ("ended", 2, 2, 0)
    assert out.final_text == "Fixed it. <promise>DONE</promise>"
    assert out.usage == Usage(2000, 200)
    assert (git_repo / "app.txt").read_text() == "fixed\n"
    # The first request is the task alone; the second answers both calls, in order.
    first, second = model.requests
    assert [m["role"] for m in first.messages] == ["user"] and sent_texts(first) == [TASK]
    assert [m["role"] for m in second.messages] == ["user", "assistant", "user"]
    results = second.messages[-1]["content"]
    assert [r["tool_use_id"] for r in results] == ["toolu_script_1_1_1", "toolu_script_1_1_2"]
    assert "fixed" in results[1]["content"]
    finished = [e.data["tool"] for e in recorder.events if e.name == "tool_finished"]
    assert finished == ["bash", "str_replace_based_edit_tool"]


def test_a_failing_or_unknown_tool_is_an_error_result_the_model_reads(git_repo: Path) -> None:
    view = {"str_replace_based_edit_tool": {"command": "view", "path": "missing.txt"}}
    turns = [{"text": "Trying.", "tools": [view, {"nope": {}}, {"bash": {"command": "exit 3"}}]},
             "Could not."]  # fmt: skip
    out, model, _ = run_turns(git_repo, turns)
    assert (out.outcome, out.tool_calls, out.tool_errors) == ("ended", 3, 2)
    results = model.requests[1].messages[-1]["content"]
    assert [r.get("is_error", False) for r in results] == [True, True, False]
    assert "unknown tool 'nope'" in results[1]["content"]
    assert "[exit code 3]" in results[2]["content"]  # a command's failure is its output


def test_a_reply_cut_off_at_max_tokens_drops_its_tool_call_and_asks_to_go_on(
    git_repo: Path,
) -> None:
    cut = {"text": "Plan: create", "tools": [{"bash": {"command": "touch cut.txt"}}],
           "stop_reason": "max_tokens"}  # fmt: skip
    out, model, _ = run_turns(git_repo, [cut, "Shorter now. Done."])
    assert (out.outcome, out.turns, out.tool_calls) == ("ended", 2, 0)
    assert not (git_repo / "cut.txt").exists()  # a possibly cut-off call never runs
    second = model.requests[1]
    assert second.messages[1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Plan: create"}]}  # fmt: skip
    assert sent_texts(second) == [CONTINUE_AFTER_MAX_TOKENS]
    assert out.final_text == "Shorter now. Done."


def test_a_pause_turn_goes_on_without_a_final_message(git_repo: Path) -> None:
    out, model, _ = run_turns(
        git_repo, [{"text": "Thinking", "stop_reason": "pause_turn"}, "Done."]
    )
    assert (out.outcome, out.turns, out.final_text) == ("ended", 2, "Done.")
    assert len(model.requests) == 2


def test_a_refusal_ends_the_iteration_with_its_reason_and_no_final_message(
    git_repo: Path,
) -> None:
    turns = [{"text": "I can't help with that. <promise>DONE</promise>", "stop_reason": "refusal"}]
    out, _, _ = run_turns(git_repo, turns)
    assert out.outcome == "refused" and out.final_text is None  # its promise never counts
    assert out.error is not None and out.error.startswith("the model refused to continue")
    assert "I can't help with that." in out.error


def test_a_full_context_window_ends_the_iteration(git_repo: Path) -> None:
    turns = [{"text": "Reading.", "stop_reason": "model_context_window_exceeded"}]
    out, _, _ = run_turns(git_repo, turns)
    assert (out.outcome, out.final_text, out.turns) == ("context_exceeded", None, 1)


def test_the_turn_limit_ends_an_iteration_that_only_calls_tools(git_repo: Path) -> None:
    call = {"text": "More.", "tools": [{"bash": {"command": "echo x >> log.txt"}}]}
    out, model, _ = run_turns(git_repo, [call] * 5, max_turns=3)
    assert (out.outcome, out.turns, out.tool_calls, out.final_text) == ("max_turns", 3, 3, None)
    assert len(model.requests) == 3 and (git_repo / "log.txt").read_text() == "x\n" * 3


def test_a_budget_spent_mid_iteration_stops_before_the_next_tool_call(git_repo: Path) -> None:
    turns = [{"text": "Step 1.", "tools": [{"bash": {"command": "touch one.txt"}}], "usage": USAGE},
             {"text": "Step 2.", "tools": [{"bash": {"command": "touch two.txt"}}], "usage": USAGE},
             "Done."]  # fmt: skip
    out, model, _ = run_turns(git_repo, turns, budget=2000)
    assert (out.outcome, out.error, out.turns, out.tool_calls) == ("stopped", "budget", 2, 1)
    assert (git_repo / "one.txt").exists() and not (git_repo / "two.txt").exists()
    assert len(model.requests) == 2 and out.usage == Usage(2000, 200)


def test_a_promise_in_the_call_that_spends_the_budget_is_kept(git_repo: Path) -> None:
    turns = [{"text": "All done. <promise>DONE</promise>", "usage": USAGE}]
    out, _, _ = run_turns(git_repo, turns, budget=1000)
    assert out.outcome == "stopped" and out.final_text == "All done. <promise>DONE</promise>"


def test_a_promise_said_while_calling_tools_is_not_the_final_message(git_repo: Path) -> None:
    turns = [{"text": "I will say <promise>DONE</promise> later.",
              "tools": [{"bash": {"command": "true"}}]}, "Still working."]  # fmt: skip
    out, _, _ = run_turns(git_repo, turns)
    assert out.outcome == "ended" and out.final_text == "Still working."


class RevokedAfterOneCall(Spy):
    """The script model, until its key is revoked: the second call fails for good."""

    def complete(self, request: ModelRequest, on_event: Any = None) -> Any:
        if self.requests:
            raise ModelError("authentication failed: invalid x-api-key", fatal=True)
        return super().complete(request, on_event)


def test_a_fatal_model_error_cuts_the_iteration_and_carries_its_billed_calls(
    git_repo: Path,
) -> None:
    turns = [{"text": "Looking.", "tools": [{"bash": {"command": "true"}}], "usage": USAGE},
             {"text": "never sent", "usage": USAGE}]  # fmt: skip
    model = RevokedAfterOneCall(ScriptModel(write_script(git_repo.parent / "s.yaml", [turns])))
    tools, _ = make_toolset(RunConfig(repo=git_repo, sandbox="none"), git_repo)
    closed_after_test(tools)
    agent = Agent(model, tools, Bus("run-agent", [Recorder()]))
    with pytest.raises(IterationCut) as cut:
        agent.iterate(SYSTEM, TASK, 1)
    # The loop records what the iteration did before the error: the first call was billed.
    assert isinstance(cut.value.__cause__, ModelError) and cut.value.__cause__.fatal
    assert cut.value.outcome.usage == Usage(1000, 100) and cut.value.outcome.tool_calls == 1
