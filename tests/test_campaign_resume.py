"""`ralph resume CAMPAIGN` with `--more N` and new budgets, in process: `--more` for the phase
the campaign goes on with (the phases after it keep their limits), `--max-cost` /
`--max-tokens` / `--timeout` for the whole campaign, recorded in the campaign's config so a
later resume has them, and never raised by a repository file or a RALPH_* variable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ralph.errors import UsageError
from ralph.layers import COMMAND_LINE, parse_layer
from ralph.run.campaign import campaign_config
from ralph.run.campaign_run import resume_campaign, run_campaign
from ralph.store.journal import Journal
from tests.helpers import clean_env, git, run_here, write_script
from tests.test_campaign import (
    ONE_TURN,
    campaign_runs,
    interrupting_reliability,
    killed_before,
)
from tests.test_campaign import harden as harden  # the fixture: a campaign on a fresh repository
from tests.test_loop_runs import Spy


def turn(text: str) -> list[Any]:
    """One iteration: one model call of 1,100 tokens."""
    return [{"text": text, "usage": ONE_TURN}]


def campaign_row(repo: Path, campaign_id: str) -> dict[str, Any]:
    journal = Journal.open(repo, create=False)
    try:
        row = journal.get_campaign(campaign_id)
    finally:
        journal.close()
    assert row is not None
    return row


def started_events(repo: Path, run_id: str) -> list[dict[str, Any]]:
    journal = Journal.open(repo, create=False)
    try:
        rows = journal.conn.execute(
            "SELECT data FROM events WHERE run_id = ? AND name = 'run_started' ORDER BY id",
            (run_id,),
        ).fetchall()
    finally:
        journal.close()
    return [json.loads(r[0]) for r in rows]


def iterations_asked(spies: dict[str, list[Spy]], phase: str) -> list[int]:
    """The iterations the phase's model was asked for in its latest session."""
    return sorted({r.iteration for r in spies[phase][-1].requests})


def test_a_campaign_stopped_by_its_budget_goes_on_with_a_larger_one_recorded_for_later(
    harden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, repo, spies, _ = harden(
        {"reliability": [turn("Timeouts."), turn("Pooling.")],
         "observability": [turn("Logs."), turn("Metrics."), turn("Traces.")]},
        phases="reliability,observability",
        phase_max_iterations=2,
        max_tokens=1000,
    )  # fmt: skip
    cid = result.campaign_id
    assert [(o.phase, o.status) for o in result.phases] == [("reliability", "budget")]
    assert result.going_on() == f"ralph resume {cid} --more N (or a larger --max-cost, " + (
        "--max-tokens, --timeout)"
    )
    # Alone, resume says how to go on; a budget already used up is refused, campaign-wide.
    with pytest.raises(UsageError, match=r"already finished .*--more N.*or a larger budget"):
        resume_campaign(repo, cid)
    with pytest.raises(UsageError, match="--max-tokens 1000 leaves nothing to spend: the campaign"):
        resume_campaign(repo, cid, budgets={"max_tokens": 1000})
    # A repository file and this shell's RALPH_* variables would lift the budget: never read.
    (repo / "ralph.yaml").write_text("max_tokens: 1000000\nmax_cost: 1000\n")
    git(repo, "add", "ralph.yaml")
    git(repo, "commit", "-qm", "the agent's config")
    monkeypatch.setenv("RALPH_MAX_TOKENS", "1000000")
    resumed = resume_campaign(repo, cid, budgets={"max_tokens": 5000, "max_cost": None})
    # reliability went on in its own run at its second iteration, then observability ran.
    assert [(o.phase, o.status) for o in resumed.phases] == [
        ("reliability", "max_iterations"),
        ("observability", "max_iterations"),
    ]
    assert iterations_asked(spies, "reliability") == [2]
    assert iterations_asked(spies, "observability") == [1, 2]
    runs = campaign_runs(repo, cid)
    assert [(r["phase"], r["sessions"]) for r in runs] == [("reliability", 2), ("observability", 1)]
    # Recorded: the campaign's config, the resumed phase's run_started, each run's config.
    assert campaign_row(repo, cid)["config"]["max_tokens"] == 5000
    changed = started_events(repo, runs[0]["id"])[-1]["budgets_changed"]
    assert changed == {"max_tokens": {"was": 1000, "now": 5000}}
    for run in runs:
        assert started_events(repo, run["id"])[-1]["config"]["max_tokens"] == 5000
    # A later resume has the recorded budget: observability's third iteration (--more 1)
    # brings the campaign to 5,500 tokens, over 5,000: stopped there again.
    later = resume_campaign(repo, cid, more=1)
    assert iterations_asked(spies, "observability") == [3]
    assert later.status == "budget" and "token budget used: 5,500 of 5,000" in later.reason


def test_more_is_for_the_phase_the_campaign_goes_on_with_and_the_next_keep_their_limits(
    harden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, spies = harden.repo, harden.spies
    interrupt = interrupting_reliability(harden, monkeypatch)
    for phase in ("reliability", "observability"):
        harden.scripts[phase] = write_script(repo.parent / f"{phase}.yaml", [turn("Not done.")])
    flags = {"model": "claude-sonnet-5-5", "sandbox": "none", "quiet": True,
             "phases": "reliability,observability", "phase_max_iterations": 2}  # fmt: skip
    stopped = run_campaign(campaign_config(parse_layer(flags, COMMAND_LINE), repo, environ={}))
    assert [(o.phase, o.status) for o in stopped.phases] == [("reliability", "interrupted")]
    interrupt[0] = False
    with pytest.raises(UsageError, match=r"^--more 0: give the number of iterations"):
        resume_campaign(repo, stopped.campaign_id, more=0)
    resumed = resume_campaign(repo, stopped.campaign_id, more=3)
    # One iteration had ended: reliability goes on to 1 + 3, from the interrupted one.
    assert iterations_asked(spies, "reliability") == [2, 3, 4]
    assert iterations_asked(spies, "observability") == [1, 2]  # its own limit, not 3
    assert "--max-iterations 4" in resumed.phases[0].reason


def test_more_after_a_kill_between_phases_is_the_next_phases_limit(
    harden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with killed_before(monkeypatch, "observability"):
        harden(
            {"reliability": [turn("Not done.")], "observability": [turn("Not done either.")]},
            phases="reliability,observability,incident-response",
            phase_max_iterations=2,
        )
    repo, spies = harden.repo, harden.spies
    harden.scripts["incident-response"] = harden.scripts["observability"]
    (reliability,) = campaign_runs(repo, reliability_cid := _only_campaign(repo))
    # --more through a phase's run that is not the one going on: refused, saying which is.
    with pytest.raises(UsageError, match="goes on with phase observability: --more is for"):
        resume_campaign(repo, reliability["id"], more=1)
    resumed = resume_campaign(repo, reliability_cid, more=1, budgets={"timeout": "2h"})
    assert resumed.campaign_id == reliability_cid
    assert [(o.phase, o.status) for o in resumed.phases][1:] == [
        ("observability", "max_iterations"),
        ("incident-response", "max_iterations"),
    ]
    assert iterations_asked(spies, "observability") == [1]  # --more 1: its limit
    assert iterations_asked(spies, "incident-response") == [1, 2]  # its own
    runs = campaign_runs(repo, reliability_cid)
    observability, incident = runs[1], runs[2]
    assert started_events(repo, observability["id"])[0]["budgets_changed"] == {
        "timeout": {"was": None, "now": 7200.0}
    }
    assert not started_events(repo, incident["id"])[0]["budgets_changed"]
    assert started_events(repo, incident["id"])[0]["config"]["timeout"] == 7200.0
    assert campaign_row(repo, reliability_cid)["config"]["timeout"] == 7200.0


def _only_campaign(repo: Path) -> str:
    journal = Journal.open(repo, create=False)
    try:
        (row,) = journal.conn.execute("SELECT id FROM campaigns").fetchall()
    finally:
        journal.close()
    return str(row[0])


def test_resume_campaign_on_the_command_line_takes_more_and_budgets_or_says_why_not(
    harden: Any,
) -> None:
    """From the user's side: `ralph resume CAMPAIGN --more N --max-tokens …` goes on (the
    old code refused both); what cannot apply is one line on stderr and exit code 2."""
    result, repo, spies, _ = harden(
        {"reliability": [turn("Not done.")], "observability": [turn("Not done either.")]},
        phases="reliability,observability",
        phase_max_iterations=1,
        stop_on_failure=True,
    )
    cid = result.campaign_id
    assert [(o.phase, o.status) for o in result.phases] == [("reliability", "max_iterations")]
    assert result.going_on() == f"ralph resume {cid} --more N"  # the closing lines say so

    def ralph(*args: str) -> Any:
        return run_here(list(args), cwd=repo, command="ralph", env=clean_env())

    refused = [
        ("already finished", ralph("resume", cid)),
        ("already finished", ralph("resume", cid.rsplit("-", 1)[1])),  # a part of its id
        ("a larger budget alone does not continue it", ralph("resume", cid, "--max-cost", "5")),
        ("cannot be changed on resume", ralph("run", "--resume", cid, "--max-iterations", "3")),
        ("--more -1: give the number", ralph("resume", cid, "--more", "-1")),
    ]
    for why, proc in refused:
        assert proc.returncode == 2, (why, proc.stderr)
        assert proc.stderr.count("\n") == 1 and why in proc.stderr, proc.stderr
    (reliability,) = campaign_runs(repo, cid)
    suffix = reliability["id"].rsplit("-", 1)[1]  # a unique part of a phase's run id
    went_on = ralph("resume", suffix, "--more", "1", "--max-tokens", "90000", "--quiet")
    assert went_on.returncode == 3, went_on.stderr  # reliability ran one more, still no promise
    assert f"ralph harden: campaign {cid} max_iterations: stopped at phase reliability" in (
        went_on.stderr
    )
    assert iterations_asked(spies, "reliability") == [2] and "observability" not in spies
    assert campaign_row(repo, cid)["config"]["max_tokens"] == 90000
    assert f"  go on: ralph resume {cid} --more N\n" in went_on.stderr


def test_more_for_a_phase_that_is_skipped_is_not_used_and_a_line_says_so(
    harden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The campaign goes on with remediate, which is skipped (no task filed): `--more 1` was
    for it, so the phase after it keeps its own limit, and a line says --more was not used."""
    with killed_before(monkeypatch, "remediate"):
        harden({"reliability": [turn("Not done.")], "observability": [turn("Not done either.")]},
               phases="reliability,remediate,observability", phase_max_iterations=2)  # fmt: skip
    echoed: list[str] = []
    resumed = resume_campaign(harden.repo, _only_campaign(harden.repo), echo=echoed.append, more=1)
    assert [(o.phase, o.status) for o in resumed.phases][1:] == [
        ("remediate", "skipped"), ("observability", "max_iterations"),
    ]  # fmt: skip
    assert "ralph harden: --more 1 not used: phase remediate skipped" in echoed
    assert iterations_asked(harden.spies, "observability") == [1, 2]  # its own limit
