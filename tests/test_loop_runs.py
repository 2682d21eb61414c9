"""Whole runs in process: `execute()` builds the real loop (git workspace, journal, tools, gate,
guards) around the deterministic script model; each test is one way a run ends. The CLI's own
tests (exit codes, signals, resume) run it as a process; these need none."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ralph.config import RunConfig
from ralph.events import Recorder
from ralph.models.base import ModelRequest, ModelResponse, StreamCallback
from ralph.models.script import ScriptModel
from ralph.run.loop import RunResult
from ralph.run.runner import execute
from tests.helpers import git, make_repo, run_commits, write_script

TOKEN = "DONE"
PROMPT = f"Harden this repository. When all is done, output <promise>{TOKEN}</promise>."
USAGE = {"input_tokens": 1000, "output_tokens": 100}


class Spy:
    """The script model, keeping a copy of every request it was sent."""

    def __init__(self, model: ScriptModel) -> None:
        self.model, self.name = model, model.name
        self.requests: list[ModelRequest] = []

    def complete(
        self, request: ModelRequest, on_event: StreamCallback | None = None
    ) -> ModelResponse:
        self.requests.append(copy.deepcopy(request))
        return self.model.complete(request, on_event)


class Run:
    """One run's result, events, requests and repository."""

    def __init__(self, result: RunResult, events: Recorder, model: Spy, repo: Path) -> None:
        self.result, self.recorder, self.model, self.repo = result, events, model, repo

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e.data for e in self.recorder.events if e.name == name]

    def first_message(self, iteration: int) -> str:
        """The user message that started iteration `iteration`."""
        starts = [r for r in self.model.requests if r.iteration == iteration and r.turn == 1]
        return str(starts[0].messages[0]["content"][0]["text"])

    def commits(self) -> list[dict[str, str]]:
        return run_commits(self.repo, git(self.repo, "branch", "--show-current"))


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """run(iterations, **settings): a run of the script `iterations` on a fresh repository."""

    def start(iterations: list[Any], model: str | None = None, **settings: Any) -> Run:
        repo = make_repo(tmp_path / "repo", {"README.md": "# app\n"})
        spy = Spy(ScriptModel(write_script(tmp_path / "session.yaml", iterations, model)))
        monkeypatch.setattr("ralph.models.make_model", lambda cfg: spy)
        cfg = RunConfig(prompt=PROMPT, prompt_name="harden", completion_promise=TOKEN,
                        repo=repo, model=f"script:{tmp_path / 'session.yaml'}",
                        sandbox="none", quiet=True, **settings)  # fmt: skip
        recorder = Recorder()
        return Run(execute(cfg, [recorder]), recorder, spy, repo)

    return start


def create(path: str, text: str = "x\n") -> dict[str, Any]:
    return {"str_replace_based_edit_tool": {"command": "create", "path": path, "file_text": text}}


def step(path: str, final: str) -> list[Any]:
    """An iteration that writes `path`, then ends with `final`."""
    return [{"text": "Working.", "tools": [create(path)], "usage": USAGE}, final]


# --- the promise ---------------------------------------------------------------------------------


def test_an_accepted_promise_completes_the_run_with_each_iteration_committed(run: Any) -> None:
    r = run(
        [step("one.md", "Wrote one."), step("two.md", f"Wrote two. <promise>{TOKEN}</promise>")]
    )
    assert (r.result.status, r.result.iterations, r.result.exit_code) == ("completed", 2, 0)
    assert [c["subject"] for c in r.commits()] == [
        "ralph(harden): iteration 1/10 — Wrote one.",
        "ralph(harden): iteration 2/10 — Wrote two.",
    ]
    assert [e["accepted"] for e in r.events("promise_seen")] == [True]
    # Each iteration is a fresh conversation: the prompt and where the loop stands, nothing else.
    assert r.first_message(2) == f"{PROMPT}\n\n[ralph] Iteration 2 of 10."


def test_a_promise_said_before_the_final_message_does_not_end_the_run(run: Any) -> None:
    early = [{"text": f"I will output <promise>{TOKEN}</promise> at the end.",
              "tools": [create("one.md")]}, "Not finished yet."]  # fmt: skip
    r = run([early], max_iterations=2, stall_limit=0)
    assert (r.result.status, r.result.iterations) == ("max_iterations", 2)
    assert r.result.exit_code != 0 and not r.events("promise_seen")


def test_another_promise_is_reported_and_does_not_complete(run: Any) -> None:
    r = run([step("one.md", "Stuck: no access. <promise>BLOCKED</promise>")], max_iterations=1)
    assert r.result.status == "max_iterations"
    (seen,) = r.events("promise_seen")
    assert seen["token"] == "BLOCKED" and not seen["accepted"]
    assert seen["reasons"] == [f"not the completion promise ({TOKEN})"]
    assert r.commits()[0]["subject"].endswith("[promise: BLOCKED]")


# --- the completion gate -------------------------------------------------------------------------


def test_a_rejected_promise_is_explained_in_the_next_iteration_then_accepted(run: Any) -> None:
    too_soon = step("notes.md", f"Done. <promise>{TOKEN}</promise>")
    really = step("fixed.txt", f"Fixed now. <promise>{TOKEN}</promise>")
    r = run([too_soon, really], verify=["test -f fixed.txt"])
    assert (r.result.status, r.result.iterations) == ("completed", 2)
    assert [e["accepted"] for e in r.events("promise_seen")] == [False, True]
    reasons = r.events("promise_seen")[0]["reasons"]
    assert len(reasons) == 1 and reasons[0].startswith("verify `test -f fixed.txt` exited 1")
    assert "test -f fixed.txt" in r.first_message(2)
    assert "test -f fixed.txt" not in r.first_message(1)


def test_a_missing_artifact_rejects_the_promise(run: Any) -> None:
    r = run(
        [step("notes.md", f"Done. <promise>{TOKEN}</promise>")],
        max_iterations=1,
        artifacts=["AUDIT.md"],
    )
    assert r.result.status == "max_iterations"
    (seen,) = r.events("promise_seen")
    assert not seen["accepted"] and "AUDIT.md" in seen["reasons"][0]


# --- guards --------------------------------------------------------------------------------------


def test_iterations_that_change_nothing_stall_the_run(run: Any) -> None:
    idle = [{"text": "Looking.", "tools": [{"bash": {"command": "ls"}}]}, "Nothing to do."]
    r = run([idle], stall_limit=2)
    assert (r.result.status, r.result.iterations) == ("stalled", 2)
    assert "--stall-limit" in r.result.reason and r.result.exit_code != 0
    assert r.commits() == []
    (tripped,) = r.events("guard_tripped")
    assert tripped["guard"] == "stall"


def test_a_stall_limit_of_0_lets_the_run_go_on(run: Any) -> None:
    r = run([["Nothing to do."]], stall_limit=0, max_iterations=3)
    assert (r.result.status, r.result.iterations) == ("max_iterations", 3)


def test_a_token_budget_spent_mid_iteration_commits_its_work_and_stops(run: Any) -> None:
    first = [{"text": "Step.", "tools": [create("one.md")], "usage": USAGE},
             {"text": "More.", "tools": [create("two.md")], "usage": USAGE},
             "Done."]  # fmt: skip
    r = run([first], max_tokens=2000)
    assert (r.result.status, r.result.iterations) == ("budget", 1)
    assert r.result.reason == "token budget used: 2,200 of 2,000"
    assert r.result.usage.total == 2200 and r.result.exit_code != 0
    assert (r.repo / "one.md").exists() and not (r.repo / "two.md").exists()
    (commit,) = r.commits()
    assert git(r.repo, "show", "--name-only", "--format=", commit["sha"]) == "one.md"


def test_a_promise_in_the_call_that_spends_the_budget_still_completes(run: Any) -> None:
    done = [{"text": "Step.", "tools": [create("one.md")], "usage": USAGE},
            {"text": f"All done. <promise>{TOKEN}</promise>", "usage": USAGE}]  # fmt: skip
    r = run([done], max_tokens=2000)
    assert (r.result.status, r.result.iterations) == ("completed", 1)


def test_a_cost_budget_stops_the_run_at_the_call_that_spends_it(run: Any) -> None:
    # claude-sonnet-4-6: $3 per million input tokens; 500k input tokens cost $1.50 a call.
    big = {"input_tokens": 500_000, "output_tokens": 0}
    spend = [{"text": "Step.", "tools": [create("a.md")], "usage": big},
             {"text": "Did a step.", "usage": big}]  # fmt: skip
    r = run([spend, spend], model="claude-sonnet-4-6", max_cost=4.0)
    assert (r.result.status, r.result.iterations) == ("budget", 2)
    assert r.result.reason == "cost budget used: $4.5000 of $4.00"
    assert r.result.cost_usd == pytest.approx(4.5)
    assert len(r.model.requests) == 3  # iteration 2's first call spent it


def test_refusals_in_a_row_trip_the_circuit_breaker(run: Any) -> None:
    refusal = [{"text": "I can't help with that.", "stop_reason": "refusal"}]
    r = run([refusal], max_failures=2)
    assert (r.result.status, r.result.iterations) == ("failed", 2)
    assert "2 failed iterations in a row" in r.result.reason
    assert "the model refused to continue" in r.result.reason
    assert [e["outcome"] for e in r.events("iteration_ended")] == ["refused", "refused"]


def test_a_reply_cut_off_at_max_tokens_goes_on_in_the_same_iteration(run: Any) -> None:
    cut = {"text": "Writing", "tools": [create("cut.md")], "stop_reason": "max_tokens"}
    r = run([[cut, {"text": "Again.", "tools": [create("ok.md")]},
              f"Done. <promise>{TOKEN}</promise>"]])  # fmt: skip
    assert (r.result.status, r.result.iterations) == ("completed", 1)
    assert not (r.repo / "cut.md").exists() and (r.repo / "ok.md").exists()
    assert len(r.model.requests) == 3


def test_max_iterations_ends_a_run_that_keeps_working(run: Any) -> None:
    r = run([step("a.md", "Step.")], max_iterations=2)
    assert (r.result.status, r.result.iterations) == ("max_iterations", 2)
    assert "--max-iterations 2" in r.result.reason
    assert len(r.commits()) == 1  # the second iteration rewrote a.md with the same text
