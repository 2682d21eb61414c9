"""`ralph harden` campaigns in process: the built-in loops one after another on one branch,
each phase a real run (git workspace, journal, gate, guards) of the script model, then the
task-list run over the tasks the audits filed; campaign-wide budgets, stop-on-failure,
resume mid-phase and between phases, the report's coverage of the 40 items."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ralph.errors import Interrupted, UsageError
from ralph.layers import COMMAND_LINE, parse_layer
from ralph.models.script import ScriptModel
from ralph.run import campaign_run
from ralph.run.campaign import campaign_config, find_campaign
from ralph.run.campaign_run import resume_campaign, run_campaign
from ralph.run.hardening import campaign_report
from ralph.run.prompt import load_prompt
from ralph.store.journal import Journal
from tests.helpers import git, make_repo, write_script
from tests.test_loop_runs import USAGE, Spy, create

ONE_TURN = {"input_tokens": 1000, "output_tokens": 100}  # 1,100 tokens a model call


def audit_file(phase: str, notes: dict[str, str] | None = None) -> tuple[str, str]:
    """A progress file that passes the phase's gate: every heading, every box ticked (or
    `notes[box]` after it, e.g. an N/A reason or a task id)."""
    spec = load_prompt(phase)
    art = spec.settings["artifacts"][0]
    lines = [f"# {phase}", ""]
    for heading in art.get("headings", []):
        lines += [f"## {heading}", "", "Recorded.", ""]
    lines += ["## Checklist", ""]
    for box in art.get("boxes", []):
        note = (notes or {}).get(box, "")
        mark = " " if note.startswith("N/A") else "x"
        lines.append(f"- [{mark}] {box} {note}".rstrip())
    text = "\n".join(lines) + "\n"
    for needle in art.get("contains", []):
        text += f"\n{needle}\n"
    return art["path"], text


def step(tools: list[Any], final: str) -> list[Any]:
    return [{"text": "Working.", "tools": tools, "usage": USAGE}, final]


REMEDIATION = """\
# Remediation tasks

- [ ] SEC-001: Add rate limiting to POST /login
  priority: high
  Where: app.py. Found: sdlc/security-audit.md
  verify: test -f limit.py
- [ ] SEC-002: Rotate the leaked key
  priority: low
"""


def security_completes() -> list[Any]:
    path, text = audit_file(
        "security",
        {
            "Rate limiting implemented": "- SEC-001 filed",
            "Secrets rotated and vaulted": "- SEC-002 filed",
            "XML external entities": "N/A: no XML parsing anywhere",
        },
    )
    return [
        step(
            [create(path, text), create("sdlc/remediation-tasks.md", REMEDIATION)],
            "Audited; two findings filed. <promise>SECURITY_AUDIT_COMPLETE</promise>",
        )
    ]


@pytest.fixture
def harden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """harden(scripts, **flags): a campaign on a fresh repository; `scripts` maps a phase to
    its iterations. Returns (result, repo, spies per phase, echoed lines)."""
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n", "app.py": "print('hi')\n"})
    spies: dict[str, list[Spy]] = {}
    scripts: dict[str, Path] = {}

    def model(cfg: Any) -> Spy:
        spy = Spy(ScriptModel(scripts[cfg.prompt_name]))
        spies.setdefault(cfg.prompt_name, []).append(spy)
        return spy

    monkeypatch.setattr("ralph.models.make_model", model)

    def start(phase_scripts: dict[str, list[Any]], **flags: Any) -> Any:
        for phase, iterations in phase_scripts.items():
            scripts[phase] = write_script(tmp_path / f"{phase}.yaml", iterations)
        given = {"model": "claude-sonnet-5-5", "sandbox": "none", "quiet": True, **flags}
        cfg = campaign_config(parse_layer(given, COMMAND_LINE), repo, environ={})
        echoed: list[str] = []
        return run_campaign(cfg, None, echoed.append), repo, spies, echoed

    start.repo = repo
    start.spies = spies
    start.scripts = scripts
    return start


def campaign_runs(repo: Path, campaign_id: str) -> list[dict[str, Any]]:
    journal = Journal.open(repo, create=False)
    try:
        return journal.campaign_runs(campaign_id)
    finally:
        journal.close()


def test_a_campaign_runs_the_loops_on_one_branch_then_fixes_the_tasks_they_filed(
    harden: Any,
) -> None:
    result, repo, spies, echoed = harden(
        {
            "security": security_completes(),
            "reliability": [["Looked at timeouts; not done."]] * 2,
            "remediate": [
                step([create("limit.py")], "Limited. <task-done>SEC-001</task-done>"),
                [
                    "Needs a person. <task-blocked>SEC-002: rotation needs the vault owner</task-blocked>"
                ],
            ],
        },
        phases="security,reliability,remediate",
        phase_max_iterations=2,
    )
    # reliability ended without its promise: reported, and the campaign went on.
    assert [(o.phase, o.status) for o in result.phases] == [
        ("security", "completed"),
        ("reliability", "max_iterations"),
        ("remediate", "completed"),
    ]
    assert result.status == "max_iterations" and result.exit_code == 3
    assert "reliability ended without the promise" in result.reason
    # Each phase ran its own prompt with its own promise and limit.
    assert (
        "Security hardening" in spies["security"][0].requests[0].messages[0]["content"][0]["text"]
    )
    assert (
        "[ralph] Iteration 1 of 2."
        in spies["reliability"][0].requests[0].messages[0]["content"][0]["text"]
    )
    remediate_first = spies["remediate"][0].requests[0].messages[0]["content"][0]["text"]
    assert "Task SEC-001: Add rate limiting to POST /login" in remediate_first  # priority first
    # One branch: every phase's commits on it, one after another.
    branch = result.branch
    assert branch.startswith("ralph/harden-")
    subjects = git(repo, "log", "--format=%s", f"main..{branch}").splitlines()
    assert [s.split(":")[0] for s in reversed(subjects)] == [
        "ralph(security)",
        "ralph(remediate)",
        "ralph(remediate)",
    ]  # fmt: skip  (reliability changed no file)
    tasks_md = git(repo, "show", f"{branch}:sdlc/remediation-tasks.md")
    assert "- [x] SEC-001: Add rate limiting" in tasks_md
    assert "SEC-002: Rotate the leaked key (blocked: rotation needs the vault owner)" in tasks_md
    # The journal: one campaign, its phases' runs linked to it.
    runs = campaign_runs(repo, result.campaign_id)
    assert [(r["phase"], r["status"]) for r in runs] == [
        ("security", "completed"), ("reliability", "max_iterations"), ("remediate", "completed"),
    ]  # fmt: skip
    assert {r["branch"] for r in runs} == {branch}
    # The report: phases, the 40 items' coverage, the remediation table.
    report = result.report.read_text()
    phases = report.replace("\\_", "_")  # Markdown escapes
    assert "| security | completed: promise SECURITY_AUDIT_COMPLETE accepted | 1 |" in phases
    assert "| reliability | max_iterations: reached --max-iterations 2 without" in phases
    assert (
        "| remediate | completed: all 2 tasks closed (1 done, 1 blocked, 0 deferred; 2 filed "
        "by the campaign's agents, with their own verify) | 2 |" in phases
    )
    assert "The hardening document's 40 items:" in report
    assert "| Secrets rotated and vaulted | security | became task: SEC-002 (blocked) |" in report
    assert "| Rate limiting implemented | security | done |" in report
    assert "| Database failover tested | reliability | not audited |" in report
    assert "| Penetration test completed | security | done |" in report
    sec1 = next(line for line in report.splitlines() if line.startswith("| SEC-001 |"))
    first_fix = git(repo, "rev-parse", f"{branch}~1")
    assert f"| done: filed by the campaign's agents: its verify is the agents', not the " \
        f"operator's | `{first_fix[:8]}` |" in sec1  # fmt: skip
    assert any("phase reliability stopped at max iterations" in line for line in echoed)


def test_coverage_of_the_40_items() -> None:
    from ralph.run.hardening import coverage

    text = (
        "## Checklist\n\n### OWASP Top 10 (2017)\n\n- [x] Injection: fixed\n"
        "- [ ] XML external entities N/A: no XML parsing\n\n### OWASP Top 10:2025\n\n"
        "- [x] A01 Broken Access Control\n\n### Hardening\n\n- [x] Penetration test done\n"
        "- [ ] Secrets rotated and vaulted: SEC-002\n- [ ] Rate limiting\n"
        "- [ ] WAF/DDoS protection enabled N/A: no public endpoint, internal service only\n"
    )
    found = coverage({"sdlc/security-audit.md": text}, {"SEC-002": {"status": "pending"}})
    by_item = {c.item: c for c in found}
    assert len(found) == 40
    assert by_item["Penetration test completed"].state == "done"
    # A heading over boxes: done when each box under it is ticked or N/A.
    assert (by_item["OWASP Top 10 addressed"].state, by_item["OWASP Top 10 addressed"].detail) == (
        "done", "3 boxes",
    )  # fmt: skip
    assert by_item["Secrets rotated and vaulted"].state == "task"
    assert by_item["Secrets rotated and vaulted"].detail == "SEC-002 (pending)"
    assert by_item["Rate limiting implemented"].state == "open"
    waf = by_item["WAF/DDoS protection enabled"]
    assert (waf.state, waf.detail) == ("n/a", "no public endpoint, internal service only")
    assert by_item["Auto-scaling configured"].state == "not audited"


def test_stop_on_failure_stops_at_the_phase_without_its_promise(harden: Any) -> None:
    result, repo, spies, _ = harden(
        {"reliability": [["Not done."]], "observability": [["unused"]]},
        phases="reliability,observability",
        phase_max_iterations=1,
        stop_on_failure=True,
    )
    assert [(o.phase, o.status) for o in result.phases] == [("reliability", "max_iterations")]
    assert "observability" not in spies
    assert result.status == "max_iterations" and "--stop-on-failure" in result.reason
    # Nothing was committed: no empty branch is left, the checkout is back where it was.
    assert git(repo, "branch", "--list", "ralph/harden-*") == ""
    assert git(repo, "branch", "--show-current") == "main"
    with pytest.raises(UsageError, match="already finished"):
        resume_campaign(repo, result.campaign_id)


def test_show_and_resume_find_a_campaign_alike(harden: Any, tmp_path: Path) -> None:
    """`ralph show CAMPAIGN` and `ralph resume CAMPAIGN` name a campaign one way
    (`find_campaign`): its id, a unique part of it or `latest`; the same line for a checkout
    without a journal and for a reference that names no campaign."""
    fresh = make_repo(tmp_path / "fresh")
    for call in (campaign_report, resume_campaign):
        with pytest.raises(UsageError, match=r"^no runs recorded in .*; `ralph runs` lists them$"):
            call(fresh, "harden-x")
    result, repo, _spies, _ = harden({}, phases="remediate")
    for call in (campaign_report, resume_campaign):
        with pytest.raises(UsageError, match=r"^no campaign 'nope' in .*; `ralph runs` lists its"):
            call(repo, "nope")
    suffix = result.campaign_id.rsplit("-", 1)[1]
    for ref in (result.campaign_id, suffix, "latest"):
        main, row = find_campaign(repo, ref)
        assert (main, row["id"], row["status"]) == (repo, result.campaign_id, "completed")
    assert f"# Hardening campaign `{result.campaign_id}`" in campaign_report(repo, suffix)
    with pytest.raises(UsageError, match="already finished"):
        resume_campaign(repo, suffix)


def test_budgets_cover_the_whole_campaign(harden: Any) -> None:
    """--max-tokens counts every phase: the second phase starts with the first one's tokens
    and runs out of budget in its first iteration (on its own it would have had room)."""
    result, _, _, _ = harden(
        {"reliability": [[{"text": "Not done.", "usage": ONE_TURN}]],
         "observability": [[{"text": "Not done.", "usage": ONE_TURN}]]},
        phases="reliability,observability",
        phase_max_iterations=1,
        max_tokens=1500,
    )  # fmt: skip
    assert [(o.phase, o.status) for o in result.phases] == [
        ("reliability", "max_iterations"),
        ("observability", "budget"),
    ]
    assert result.status == "budget" and "token budget used: 2,200 of 1,500" in result.reason
    assert result.usage.total == 2200


class Interrupting(Spy):
    """The script model, interrupted (as by a signal) at model call `at`."""

    def __init__(self, model: ScriptModel, at: int) -> None:
        super().__init__(model)
        self.at = at

    def complete(self, request: Any, on_event: Any = None) -> Any:
        if len(self.requests) + 1 == self.at:
            self.requests.append(request)
            raise Interrupted("SIGINT")
        return super().complete(request, on_event)


def interrupting_reliability(harden: Any, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each phase's model is its script, spied on (in `harden.spies`); while the flag returned
    is set, reliability's session is interrupted in its second iteration."""
    interrupt = [True]

    def model(cfg: Any) -> Spy:
        script = ScriptModel(harden.scripts[cfg.prompt_name])
        cut = cfg.prompt_name == "reliability" and interrupt[0]
        spy = Interrupting(script, 2) if cut else Spy(script)
        harden.spies.setdefault(cfg.prompt_name, []).append(spy)
        return spy

    monkeypatch.setattr("ralph.models.make_model", model)
    return interrupt


def test_resume_continues_mid_phase_at_its_iteration_then_the_next_phases(
    harden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, spies = harden.repo, harden.spies
    interrupt = interrupting_reliability(harden, monkeypatch)
    sessions = {
        "security": security_completes(),
        "reliability": [
            [{"text": "Timeouts recorded.", "usage": ONE_TURN}],
            [{"text": "Pooling recorded.", "usage": ONE_TURN}],
        ],
        "remediate": [
            step([create("limit.py")], "Limited. <task-done>SEC-001</task-done>"),
            ["<task-blocked>SEC-002: needs a person</task-blocked>"],
        ],
    }
    for phase, iterations in sessions.items():
        harden.scripts[phase] = write_script(repo.parent / f"{phase}.yaml", iterations)
    flags = {"model": "claude-sonnet-5-5", "sandbox": "none", "quiet": True,
             "phases": "security,reliability,remediate", "phase_max_iterations": 2}  # fmt: skip
    cfg = campaign_config(parse_layer(flags, COMMAND_LINE), repo, environ={})
    stopped = run_campaign(cfg)
    assert stopped.status == "interrupted" and stopped.exit_code == 130
    assert [(o.phase, o.status) for o in stopped.phases] == [
        ("security", "completed"),
        ("reliability", "interrupted"),
    ]
    assert "remediate" not in spies
    interrupt[0] = False
    resumed = resume_campaign(repo, stopped.campaign_id)
    assert resumed.campaign_id == stopped.campaign_id
    assert [(o.phase, o.status) for o in resumed.phases] == [
        ("security", "completed"),
        ("reliability", "max_iterations"),
        ("remediate", "completed"),
    ]
    # reliability went on at its second iteration (the interrupted one), not from the start.
    assert {r.iteration for r in spies["reliability"][-1].requests} == {2}
    assert len(spies["security"]) == 1  # a completed phase is not run again
    runs = campaign_runs(repo, stopped.campaign_id)
    assert [r["phase"] for r in runs] == ["security", "reliability", "remediate"]
    assert runs[1]["sessions"] == 2  # the same run, resumed
    assert "- [x] SEC-001" in git(repo, "show", f"{resumed.branch}:sdlc/remediation-tasks.md")


@contextmanager
def killed_before(monkeypatch: pytest.MonkeyPatch, phase: str) -> Iterator[None]:
    """The campaign in the block is killed (KeyboardInterrupt) as `phase` would begin; after
    the block, phases run as they do."""
    real = campaign_run._Campaign.run_phase

    def killed(self: Any, name: str, resume: Any = None) -> Any:
        if name == phase:
            raise KeyboardInterrupt
        return real(self, name, resume)

    monkeypatch.setattr(campaign_run._Campaign, "run_phase", killed)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(campaign_run._Campaign, "run_phase", real)


def test_resume_between_phases_starts_the_next_phase(
    harden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with killed_before(monkeypatch, "observability"):
        harden(
            {"reliability": [["Not done."]], "observability": [["Not done either."]]},
            phases="reliability,observability",
            phase_max_iterations=1,
        )
    repo = harden.repo
    journal = Journal.open(repo, create=False)
    try:
        (row,) = journal.conn.execute("SELECT id, status FROM campaigns").fetchall()
    finally:
        journal.close()
    assert row["status"] == "interrupted"
    resumed = resume_campaign(repo, row["id"])
    assert [(o.phase, o.status) for o in resumed.phases] == [
        ("reliability", "max_iterations"),
        ("observability", "max_iterations"),
    ]
    assert len(harden.spies["reliability"]) == 1  # not run again
    assert [r["phase"] for r in campaign_runs(repo, row["id"])] == ["reliability", "observability"]


def test_the_remediate_phase_uses_taskmaster_when_the_repository_does(harden: Any) -> None:
    import json

    tm = {"master": {"tasks": [{"id": 1, "title": "SEC-001: Escape output", "status": "pending",
                                "dependencies": [], "priority": "high", "verify": "test -f esc.py"}]}}  # fmt: skip
    path = harden.repo / ".taskmaster" / "tasks" / "tasks.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(tm, indent=2) + "\n")
    git(harden.repo, "add", "-A")
    git(harden.repo, "commit", "-qm", "taskmaster")
    result, repo, _spies, _ = harden(
        {"remediate": [step([create("esc.py")], "Escaped. <task-done>1</task-done>")]},
        phases="remediate",
    )
    assert [(o.phase, o.status) for o in result.phases] == [("remediate", "completed")]
    shown = json.loads(git(repo, "show", f"{result.branch}:.taskmaster/tasks/tasks.json"))
    assert shown["master"]["tasks"][0]["status"] == "done"


def test_a_remediate_phase_with_no_task_filed_is_skipped(harden: Any) -> None:
    result, repo, spies, _echoed = harden({}, phases="remediate")
    assert [(o.phase, o.status) for o in result.phases] == [("remediate", "skipped")]
    assert result.status == "completed"
    assert "remediate" not in spies
    assert git(repo, "branch", "--list", "ralph/harden-*") == ""  # nothing made, nothing left


def test_bad_phases_are_refused_before_anything_is_created(harden: Any) -> None:
    with pytest.raises(UsageError, match="unknown phase 'securty'"):
        harden({}, phases="securty,remediate")
    assert not (harden.repo / ".ralph").exists()


def test_cli_harden_end_to_end_opens_one_pull_request_for_the_campaign(tmp_path: Path) -> None:
    """`ralph harden` as a process: two phases on one branch (each ends without its promise
    and the campaign goes on), one pull request whose body is the campaign's report."""
    import subprocess

    from tests.fakegithub import FakeGitHub
    from tests.helpers import clean_env, run_cli

    token = "ghp_" + "HardenE2e" * 4
    with FakeGitHub("octo", "app", token=token, repos_root=tmp_path / "remotes") as gh:
        bare = gh.bare_repo("octo", "app")
        bare.parent.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        repo = make_repo(tmp_path / "work")
        git(repo, "remote", "add", "origin", str(bare))
        git(repo, "push", "-q", str(bare), "main")
        note = {"bash": {"command": "mkdir -p notes && date +%s%N > notes/$(date +%s%N).txt"}}
        script = write_script(tmp_path / "s.yaml", [step([note], "Recorded a note.")])
        env = clean_env(GITHUB_API_URL=gh.url, GITHUB_TOKEN=token, RALPH_GITHUB_REPO="octo/app")
        for name in ("GITHUB_SERVER_URL", "GH_TOKEN"):
            env.pop(name, None)
        proc = run_cli(
            ["harden", "--phases", "reliability,observability", "--phase-max-iterations", "1",
             "--model", f"script:{script}", "--sandbox", "none", "--quiet", "--pr",
             "--pr-label", "hardening", "--output-format", "json"],
            cwd=repo, env=env, command="ralph",
        )  # fmt: skip
        assert proc.returncode == 3, proc.stderr  # phases ended without their promise
        [pr] = gh.pulls()
    branch = pr["head"]["ref"]
    assert branch.startswith("ralph/harden-") and pr["base"]["ref"] == "main"
    assert pr["title"] == "ralph harden: 0 of 2 phases complete" and pr["draft"]
    assert "# Hardening campaign" in pr["body"] and "## Checklist coverage" in pr["body"]
    assert "| reliability | max\\_iterations" in pr["body"]
    assert "| observability | max\\_iterations" in pr["body"]
    assert [label["name"] for label in pr["labels"]] == ["hardening"]
    subjects = git(repo, "log", "--format=%s", f"main..{branch}").splitlines()
    assert [s.split(":")[0] for s in subjects] == ["ralph(observability)", "ralph(reliability)"]
    assert "phase reliability stopped at max iterations" in proc.stderr
    assert "ralph harden: pull request http" in proc.stderr
    # --output-format json: one result on stdout, the campaign's (not one per phase).
    import json

    (line,) = proc.stdout.splitlines()
    shown = json.loads(line)
    assert shown["status"] == "max_iterations" and shown["exit_code"] == 3
    assert [p["phase"] for p in shown["phases"]] == ["reliability", "observability"]
    assert shown["branch"] == branch and shown["pr_url"] == pr["html_url"]
    # `ralph show CAMPAIGN`: the campaign's report.
    report = run_cli(["show", shown["campaign_id"]], cwd=repo, command="ralph")
    assert report.returncode == 0, report.stderr
    assert f"# Hardening campaign `{shown['campaign_id']}`" in report.stdout


def test_a_version_3_journal_gains_campaigns_and_its_runs_are_no_campaigns_phase(
    tmp_path: Path,
) -> None:
    import sqlite3

    from ralph.run.campaign import campaign_of
    from ralph.store import schema
    from ralph.store.schema import db_path, migrate

    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n"})
    path = db_path(repo)
    path.parent.mkdir(parents=True)
    old = sqlite3.connect(path, isolation_level=None)
    assert migrate(old, schema.MIGRATIONS[:3]) == 3
    old.execute("INSERT INTO runs (id, prompt_name, started) VALUES ('old-run', 'security', 1.0)")
    old.close()
    journal = Journal.open(repo)
    try:
        assert journal.conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 4
        row = journal.conn.execute("SELECT campaign_id, phase FROM runs").fetchone()
        assert tuple(row) == (None, None)
        assert journal.conn.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == 0
    finally:
        journal.close()
    assert campaign_of(repo, "old-run") is None and campaign_of(repo, "latest") is None


def test_a_campaign_in_a_worktree_leaves_the_checkout_alone(harden: Any) -> None:
    """--worktree: every phase works in the campaign's one worktree (the remediation run
    reads the task file the audit wrote there); the user's checkout stays on main."""
    result, repo, _, _ = harden(
        {
            "security": security_completes(),
            "remediate": [
                step([create("limit.py")], "Limited. <task-done>SEC-001</task-done>"),
                ["<task-blocked>SEC-002: needs a person</task-blocked>"],
            ],
        },
        phases="security,remediate",
        worktree=True,
    )
    assert [(o.phase, o.status) for o in result.phases] == [
        ("security", "completed"),
        ("remediate", "completed"),
    ]
    assert git(repo, "branch", "--show-current") == "main"
    assert not (repo / "sdlc").exists() and not (repo / "limit.py").exists()
    runs = campaign_runs(repo, result.campaign_id)
    assert len({r["worktree"] for r in runs}) == 1 and runs[0]["worktree"]
    assert (Path(runs[0]["worktree"]) / "limit.py").is_file()
    assert "- [x] SEC-001" in git(repo, "show", f"{result.branch}:sdlc/remediation-tasks.md")


def test_ralph_runs_names_each_phases_campaign_and_leaves_other_runs_as_they_were(
    harden: Any,
) -> None:
    """The morning after: `ralph runs` (table and --json) says which runs are phases of which
    campaign and where each stands in it; a run outside a campaign is listed as before."""
    import json

    from ralph.store.history import format_runs
    from tests.helpers import clean_env, run_here

    repo = harden.repo
    harden.scripts["security"] = write_script(repo.parent / "plain.yaml", [["Not done."]])
    plain = run_here(
        ["run", "security", "--model", "claude-sonnet-5-5", "--sandbox", "none", "--quiet",
         "--max-iterations", "1"],
        cwd=repo, command="ralph", env=clean_env(),
    )  # fmt: skip
    assert plain.returncode == 3, plain.stderr
    before = json.loads(run_here(["runs", "--json"], cwd=repo, command="ralph").stdout)
    header = format_runs(before).splitlines()[0]
    assert header.split()[-2:] == ["ITERATIONS", "COST"]  # no campaign yet: no CAMPAIGN column
    result, _, _, _ = harden(
        {"reliability": [["Not done."]], "observability": [["Not done either."]]},
        phases="reliability,observability",
        phase_max_iterations=1,
    )
    shown = json.loads(run_here(["runs", "--json"], cwd=repo, command="ralph").stdout)
    observability, reliability, outside = shown
    cid = result.campaign_id
    for run, phase, number in ((reliability, "reliability", 1), (observability, "observability", 2)):  # fmt: skip
        assert (run["prompt"], run["campaign_id"], run["phase"]) == (phase, cid, phase)
        assert (run["phase_number"], run["phase_count"]) == (number, 2)
    assert outside == before[0]  # the same keys and values: no campaign_id, no phase
    assert not {"campaign_id", "phase"} & set(outside)
    table = run_here(["runs"], cwd=repo, command="ralph").stdout.splitlines()
    assert table[0].split()[-2:] == ["COST", "CAMPAIGN"]
    assert table[1].startswith(observability["id"]) and table[1].endswith(f"  {cid} 2/2")
    assert table[2].startswith(reliability["id"]) and table[2].endswith(f"  {cid} 1/2")
    assert table[3].startswith(outside["id"]) and table[3].split()[-1] == "?"  # COST: last
    starts = {line.index("CAMPAIGN") if "CAMPAIGN" in line else line.index(cid) for line in table[:3]}  # fmt: skip
    assert len(starts) == 1  # one column, aligned
    # `ralph show RUN` of a phase names its campaign.
    show = run_here(["show", reliability["id"]], cwd=repo, command="ralph").stdout
    assert f"campaign  {cid}, phase reliability (1 of 2)" in show
