"""A fleet workflow's input is not the operator's: whoever can start workflows on the
namespace writes its settings and prompt, so they may only tighten what the worker's own
configuration (its RALPH_* environment and the defaults) gives — as a repository's ralph.yaml
may only tighten the defaults. The repository's ralph.yaml is below the workflow's settings,
held to its own rule. Called as the worker's
activities call it (`run_config`), without a Temporal server."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ralph.errors import UsageError
from ralph.fleet.jobconfig import run_config
from ralph.fleet.model import RepoJob
from tests.helpers import make_repo

PROMPT = "Harden this repository. <promise>DONE</promise>\n"


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A worker's checkout, the worker's environment without RALPH_* settings."""
    for name in list(os.environ):
        if name.startswith("RALPH_"):
            monkeypatch.delenv(name)
    return make_repo(tmp_path / "checkout", {"README.md": "# app\n"})


def job(settings: dict[str, Any], prompt: str = PROMPT, **more: Any) -> RepoJob:
    return RepoJob(name="app", url="https://example.invalid/app.git", prompt=prompt,
                   prompt_name="inline", settings=settings, **more)  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"sandbox": "none"}, "sandbox: none is refused from a workflow's input"),
        ({"max_iterations": 50}, "max_iterations: 50 is refused"),
        ({"stall_limit": 0}, "turns the limit off"),
        ({"env": ["RALPH_TOKEN"]}, "can be set only by the operator"),
        ({"agent": "codex"}, "agent: codex is refused"),
        ({"agent_args": ["--dangerously-bypass-approvals-and-sandbox"]}, "agent_args is refused"),
        ({"pricing": {"m": {"input": 0, "output": 0}}}, "pricing is refused"),
    ],
)
def test_workflow_settings_that_loosen_the_workers_configuration_are_refused(
    checkout: Path, settings: dict[str, Any], said: str
) -> None:
    with pytest.raises(UsageError) as caught:
        run_config(job(settings), checkout)
    message = str(caught.value)
    assert message.startswith("fleet settings of app: ") and said in message, message
    assert "in the workers' environment" in message


def test_sandbox_none_asked_by_a_workflow_says_how_the_workers_operator_allows_it(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError) as caught:
        run_config(job({"sandbox": "none", "network": "on"}), checkout)
    assert "is looser than the workers' auto" in str(caught.value)
    assert "set RALPH_SANDBOX=none in the workers' environment" in str(caught.value)
    # The workers' operator allows it: then the workflow may ask for it (or anything stricter).
    monkeypatch.setenv("RALPH_SANDBOX", "none")
    assert run_config(job({"sandbox": "none"}), checkout).sandbox == "none"
    monkeypatch.setenv("RALPH_NETWORK", "off")
    with pytest.raises(UsageError, match="network: on is refused"):
        run_config(job({"network": "on"}), checkout)


def test_workflow_settings_that_tighten_apply_and_override_the_workers(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RALPH_MAX_ITERATIONS", "20")
    monkeypatch.setenv("RALPH_VERIFY", '["make lint"]')
    cfg = run_config(
        job({"max_iterations": 12, "network": "off", "verify": ["make lint", "make test"],
             "max_cost": 2.5}),
        checkout,
    )  # fmt: skip
    assert (cfg.max_iterations, cfg.network, cfg.max_cost) == (12, "off", 2.5)
    assert cfg.verify == ["make lint", "make test"] and cfg.pr is False
    with pytest.raises(UsageError, match=r"verify is refused .* removes the workers' entries"):
        run_config(job({"verify": ["make test"]}), checkout)


def test_a_workflows_prompt_front_matter_is_held_to_the_same_rule(checkout: Path) -> None:
    loose = "---\nsandbox: none\n---\nHarden it. <promise>DONE</promise>\n"
    with pytest.raises(UsageError) as caught:
        run_config(job({}, prompt=loose), checkout)
    assert "front matter" in str(caught.value) and "sandbox: none is refused" in str(caught.value)
    tight = "---\nmax_iterations: 4\n---\nHarden it. <promise>DONE</promise>\n"
    assert run_config(job({}, prompt=tight), checkout).max_iterations == 4


def test_a_workflows_prompt_naming_a_file_on_the_worker_is_refused(
    checkout: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "other-checkout" / "evil.md"
    elsewhere.parent.mkdir()
    elsewhere.write_text("---\nsandbox: none\n---\nAnything. <promise>DONE</promise>\n")
    with pytest.raises(UsageError, match="names a file on the worker"):
        run_config(job({}, prompt=str(elsewhere)), checkout)
    assert run_config(job({}, prompt="security"), checkout).prompt_name == "security"


def test_a_ralph_yaml_the_agent_tightened_does_not_make_the_workflows_settings_refused(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each iteration resolves the settings at the run branch's tip, where the agent may have
    edited ralph.yaml: its lower max_iterations must not turn the workflow's into a refusal."""
    (checkout / "ralph.yaml").write_text("max_iterations: 3\nmax_turns: 20\n")
    cfg = run_config(job({"max_iterations": 5}), checkout)
    assert (cfg.max_iterations, cfg.max_turns) == (5, 20)  # ralph.yaml applies below it
    # The workers' own configuration still bounds the workflow's settings...
    monkeypatch.setenv("RALPH_MAX_ITERATIONS", "8")
    with pytest.raises(UsageError, match="max_iterations: 9 is refused"):
        run_config(job({"max_iterations": 9}), checkout)
    # ...and ralph.yaml is still a repository file: it may only tighten.
    (checkout / "ralph.yaml").write_text("sandbox: none\n")
    with pytest.raises(UsageError, match=r"ralph.yaml: sandbox: none is refused"):
        run_config(job({"max_iterations": 5}), checkout)


def test_a_workflows_prompt_of_a_dash_is_refused_not_read_from_the_workers_stdin(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "sys.stdin", io.StringIO("---\nsandbox: none\n---\nAnything. <promise>X</promise>\n")
    )
    with pytest.raises(UsageError, match=r"the prompt of app is `-` \(standard input\)"):
        run_config(job({}, prompt="-"), checkout)
    assert sys.stdin.read().startswith("---")  # nothing was read from it


def test_a_campaigns_phases_are_the_workflows_to_choose_within_the_workers_limit(
    checkout: Path,
) -> None:
    cfg = run_config(
        job({"phases": ["security", "remediate"], "phase_max_iterations": 5}, prompt="",
            campaign=True),
        checkout,
    )  # fmt: skip
    assert (cfg.phases, cfg.phase_max_iterations) == (["security", "remediate"], 5)
    with pytest.raises(UsageError, match="phase_max_iterations: 40 is refused"):
        run_config(job({"phase_max_iterations": 40}, prompt="", campaign=True), checkout)
