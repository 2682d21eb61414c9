"""End to end: the real CLI, a scripted model, real tools and a real git repository.

The promise cases run the CLI's entry point in this process (`run_here`): they are about the
loop, not the process; `test_promise_on_iteration_k` runs it as a process of its own."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import clean_env, git, make_repo, run_cli, run_commits, run_here, write_script

TOKEN = "HARDENED"
PROMPT = f"Harden this repository. When everything is done, output <promise>{TOKEN}</promise>.\n"


def work_turn(i: int) -> dict[str, Any]:
    """A turn that changes the repository, so the iteration makes progress."""
    return {
        "text": f"Working on step {i}.",
        "tools": [
            {"bash": {"command": f"echo step {i} >> progress.txt"}},
            {
                "str_replace_based_edit_tool": {
                    "command": "create",
                    "path": f"notes/step-{i}.md",
                    "file_text": f"# Step {i}\n",
                }
            },
        ],
    }


def setup(tmp_path: Path, iterations: list[Any]) -> tuple[Path, Path, Path]:
    repo = make_repo(tmp_path / "repo")
    prompt = tmp_path / "harden.md"
    prompt.write_text(PROMPT)
    script = write_script(tmp_path / "session.yaml", iterations)
    return repo, prompt, script


def ralph(repo: Path, prompt: Path, script: Path, *extra: str, process: bool = False) -> Any:
    """`ralph-loop PROMPT --model script:SCRIPT ...`: in this process, or in its own."""
    args = [str(prompt), "--model", f"script:{script}", "--repo", str(repo), "--sandbox", "none"]
    return (run_cli if process else run_here)([*args, *extra], cwd=repo)


def branch_of(repo: Path) -> str:
    branches = git(repo, "branch", "--list", "ralph/*", "--format=%(refname:short)").split()
    assert len(branches) == 1, branches
    return branches[0]


@pytest.mark.parametrize("k", [1, 3])
def test_promise_on_iteration_k(tmp_path: Path, k: int) -> None:
    iterations = [[work_turn(i), f"Step {i} done."] for i in range(1, k)]
    iterations.append([work_turn(k), f"All done.\n<promise>{TOKEN}</promise>"])
    repo, prompt, script = setup(tmp_path, iterations)
    proc = ralph(repo, prompt, script, "--max-iterations", "5", process=True)
    assert proc.returncode == 0, proc.stderr
    branch = branch_of(repo)
    assert branch.startswith("ralph/harden-")
    commits = run_commits(repo, branch)
    assert [c["iteration"] for c in commits] == [str(i) for i in range(1, k + 1)]
    assert commits[-1]["subject"].startswith(f"ralph(harden): iteration {k}/5 — ")
    git(repo, "checkout", "-q", branch)
    assert (repo / "progress.txt").read_text().splitlines() == [
        f"step {i}" for i in range(1, k + 1)
    ]
    assert (repo / "notes" / f"step-{k}.md").read_text() == f"# Step {k}\n"


def test_never_promised_exits_3_after_max_iterations(tmp_path: Path) -> None:
    repo, prompt, script = setup(tmp_path, [[work_turn(i), "Not done yet."] for i in range(1, 5)])
    proc = ralph(repo, prompt, script, "--max-iterations", "4")
    assert proc.returncode == 3, proc.stderr
    assert len(run_commits(repo, branch_of(repo))) == 4


NOT_DONE = {
    "bare token": TOKEN,
    "bare token in a sentence": f"I am finished: {TOKEN}",
    "fenced code": f"The rule says:\n```\n<promise>{TOKEN}</promise>\n```\nNot yet.",
    "inline code": f"I will say `<promise>{TOKEN}</promise>` when done.",
    "echoed prompt in a quote block": f"```text\n{PROMPT}```",
    "other token": "I am stuck. <promise>BLOCKED</promise>",
}


@pytest.mark.parametrize("final", list(NOT_DONE.values()), ids=list(NOT_DONE))
def test_final_message_without_a_real_promise_is_not_done(tmp_path: Path, final: str) -> None:
    repo, prompt, script = setup(tmp_path, [[work_turn(1), final], [work_turn(2), final]])
    proc = ralph(repo, prompt, script, "--max-iterations", "2")
    assert proc.returncode == 3, proc.stderr
    assert len(run_commits(repo, branch_of(repo))) == 2
    if "BLOCKED" in final:
        assert "BLOCKED" in proc.stderr  # reported, but the loop goes on


def test_promise_in_tool_input_or_earlier_message_is_not_done(tmp_path: Path) -> None:
    iteration = [
        {
            "text": f"<promise>{TOKEN}</promise> (an earlier message of the iteration)",
            "tools": [{"bash": {"command": f"echo '<promise>{TOKEN}</promise>' >> said.txt"}}],
        },
        "Finished this step; more to do.",
    ]
    repo, prompt, script = setup(tmp_path, [iteration, iteration])
    proc = ralph(repo, prompt, script, "--max-iterations", "2")
    assert proc.returncode == 3, proc.stderr


def test_last_message_with_only_tool_calls_continues(tmp_path: Path) -> None:
    # An earlier turn says the promise; the last one only calls tools, and --max-turns ends
    # the iteration there: it has no final message, so it is not done.
    said = {
        "text": f"All done. <promise>{TOKEN}</promise>",
        "tools": [{"bash": {"command": "echo said >> progress.txt"}}],
    }
    only_tools = {"tools": [{"bash": {"command": "echo more >> progress.txt"}}]}
    repo, prompt, script = setup(tmp_path, [[said, only_tools], [said, only_tools]])
    proc = ralph(repo, prompt, script, "--max-iterations", "2", "--max-turns", "2")
    assert proc.returncode == 3, proc.stderr
    assert len(run_commits(repo, branch_of(repo))) == 2


def test_a_promise_only_in_a_tool_result_is_not_done(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"NOTES.md": f"When done say <promise>{TOKEN}</promise>\n"})
    prompt = tmp_path / "harden.md"
    prompt.write_text(PROMPT)
    iteration = [
        {"text": "Reading the notes.", "tools": [{"bash": {"command": "cat NOTES.md"}}]},
        {"text": "Read the notes; more to do.", "tools": [{"bash": {"command": "date > t"}}]},
        "Step done; not finished.",
    ]
    script = write_script(tmp_path / "session.yaml", [iteration])
    proc = ralph(repo, prompt, script, "--max-iterations", "2")
    assert proc.returncode == 3, proc.stderr
    with sqlite3.connect(repo / ".ralph" / "ralph.db") as db:
        outputs = [r[0] for r in db.execute("SELECT output FROM tool_calls WHERE tool = 'bash'")]
    assert any(f"<promise>{TOKEN}</promise>" in (o or "") for o in outputs), outputs


def spend(tokens: int) -> dict[str, int]:
    return {"input_tokens": tokens, "output_tokens": 10}


def test_a_promise_in_the_call_that_spends_the_budget_completes(tmp_path: Path) -> None:
    # The last call of the iteration both finishes the work and uses up --max-tokens: the
    # budget was spent on work that finished, so the run completes.
    iteration = [
        {**work_turn(1), "usage": spend(100)},
        {"text": f"All done.\n<promise>{TOKEN}</promise>", "usage": spend(5000)},
    ]
    repo, prompt, script = setup(tmp_path, [iteration])
    proc = ralph(repo, prompt, script, "--max-iterations", "3", "--max-tokens", "1000")
    assert proc.returncode == 0, proc.stderr
    assert "No promise" not in proc.stderr + proc.stdout
    (commit,) = run_commits(repo, branch_of(repo))
    assert commit["subject"].endswith("— All done.")


@pytest.mark.parametrize("last", ["Not done yet.", {**work_turn(2)}], ids=["text", "tools"])
def test_a_budget_spent_without_the_promise_still_stops_the_run(tmp_path: Path, last: Any) -> None:
    turn = {"text": last} if isinstance(last, str) else last
    iteration = [{**work_turn(1), "usage": spend(100)}, {**turn, "usage": spend(5000)}, "x"]
    repo, prompt, script = setup(tmp_path, [iteration])
    proc = ralph(repo, prompt, script, "--max-iterations", "3", "--max-tokens", "1000")
    assert proc.returncode == 4, proc.stderr
    git(repo, "checkout", "-q", branch_of(repo))
    assert not (repo / "notes" / "step-2.md").exists()  # the tool calls of that turn never ran


def test_inline_prompt_and_completion_promise_flag(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    script = write_script(tmp_path / "s.yaml", [[work_turn(1), "done <promise>SHIP_IT</promise>"]])
    proc = run_cli(
        [
            "SECURITY HARDENING: audit everything.",
            "--completion-promise",
            "SHIP_IT",
            "--model",
            f"script:{script}",
            "--sandbox",
            "none",
        ],
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr


def test_ralph_run_is_the_same_command(tmp_path: Path) -> None:
    repo, prompt, script = setup(tmp_path, [[work_turn(1), f"<promise>{TOKEN}</promise>"]])
    proc = run_cli(
        ["run", str(prompt), "--model", f"script:{script}", "--sandbox", "none"],
        cwd=repo,
        command="ralph",
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing/prompt.md"], "does not exist"),
        (["p.md", "--max-iterations", "-2"], "cannot be negative"),
        (["p.md", "--max-iterations", "0"], "needs a budget"),
        (["p.md", "--sandbox", "maybe"], "sandbox"),
        (["p.md", "--repo", "/nonexistent/dir"], "does not exist"),
        (["p.md", "--model", "script:/nonexistent.yaml"], "cannot read model script"),
        (["bad.md"], "invalid YAML"),
        (["empty.md"], "empty"),
        (["p.md", "--timeout", "soon"], "not a duration"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "p.md").write_text(PROMPT)
    (repo / "bad.md").write_text("---\nmax_turns: [\n---\nbody\n")
    (repo / "empty.md").write_text("---\nmax_turns: 3\n---\n\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prompts")
    proc = run_cli(args, cwd=repo)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (repo / ".ralph").exists()
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["main"]


def test_help_documents_options_and_exit_codes(tmp_path: Path) -> None:
    proc = run_cli(["--help"], cwd=tmp_path, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0
    for option in (
        "--max-iterations",
        "--completion-promise",
        "--model",
        "--repo",
        "--max-turns",
        "--dry-run",
        "--max-cost",
        "--timeout",
        "--worktree",
        "--sandbox",
        "--pr",
    ):
        assert option in proc.stdout
    assert "130 interrupted" in " ".join(proc.stdout.split())


def test_dry_run_prints_config_and_first_request(tmp_path: Path) -> None:
    import json

    repo = make_repo(tmp_path / "repo")
    (tmp_path / "p.md").write_text(PROMPT)  # outside the repo: a dry run checks for a clean tree
    proc = run_cli(
        [str(tmp_path / "p.md"), "--dry-run", "--sandbox", "none"],
        cwd=repo,
        env=clean_env(ANTHROPIC_API_KEY="sk-ant-not-a-real-key"),  # it checks credentials too
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["config"]["completion_promise"] == TOKEN
    request = data["request"]
    assert [t["name"] for t in request["tools"]] == ["bash", "str_replace_based_edit_tool"]
    assert request["messages"][0]["content"].startswith("Harden this repository.")
    assert TOKEN in request["system"]
    assert not (repo / ".ralph").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-iterations", "50"], "--max-iterations cannot be changed on resume"),
        (["--no-quiet", "--stall-limit", "3"], "--stall-limit cannot be changed on resume"),
        (["p.md"], "--resume RUN takes no PROMPT"),
    ],
)
def test_resume_refuses_what_it_would_ignore(tmp_path: Path, args: list[str], message: str) -> None:
    # A resumed run keeps its recorded settings; an option it would drop is refused up front.
    repo = make_repo(tmp_path / "repo")
    proc = run_cli(["--resume", "20250101-000000-aaaa", *args], cwd=repo, env=clean_env())
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    # `ralph resume` has no such options at all.
    proc = run_cli(
        ["resume", "20250101-000000-aaaa", "--max-iterations", "50"],
        cwd=repo,
        command="ralph",
        env=clean_env(),
    )
    assert proc.returncode == 2 and "No such option: --max-iterations" in proc.stderr


def test_resume_alone_reaches_the_journal(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    proc = run_cli(["--resume", "2025", "--repo", str(repo)], cwd=tmp_path, env=clean_env())
    assert proc.returncode == 2 and "no runs recorded" in proc.stderr, proc.stderr


def _run_options() -> dict[str, str]:
    """Each option of `ralph-loop` as its names (`-q, --quiet / --no-quiet`) -> its help."""
    from typer.main import get_command

    from ralph.cli import app

    command = get_command(app).commands["run"]  # type: ignore[attr-defined]
    out = {}
    for param in command.params:
        if param.param_type_name == "option":
            out[" ".join(sorted([*param.opts, *param.secondary_opts]))] = param.help or ""
    return out


def _help_default(text: str) -> str | None:
    match = re.search(r"\(default:? (.+?)(?=[:;,)])", text)
    return match.group(1) if match else None


def test_readme_option_table_matches_help() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("Options of `ralph-loop`", 1)[1].split("### Exit codes", 1)[0]
    rows = {}
    for line in table.splitlines():
        if line.startswith("| `-"):
            cells = [c.strip().strip("`") for c in line.replace("\\|", "/").strip("|").split("|")]
            names = " ".join(sorted(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", cells[0])))
            rows[names] = cells[1]
    options = _run_options()
    assert set(rows) == set(options)
    for names, help_text in options.items():
        default = _help_default(help_text)
        if default is not None:
            assert rows[names] == default, names
        else:
            assert rows[names] in {"off", "none", "commit", "—"}, names


def test_help_defaults_are_the_real_defaults() -> None:
    from ralph.config import RunConfig
    from ralph.layers import PARSERS

    checked = 0
    for names, help_text in _run_options().items():
        default = _help_default(help_text)
        name = names.split()[0].lstrip("-").replace("-", "_")
        if default is None or " " in default or name not in PARSERS:
            continue  # none, or a description such as "the one the prompt names"
        try:
            value = PARSERS[name](default)
        except ValueError:
            continue  # a description, such as ralph/<prompt>-<UTC time>
        assert value == getattr(RunConfig(), name), names
        checked += 1
    assert checked >= 10


def test_help_fits_80_columns_and_lists_each_option_once(tmp_path: Path) -> None:
    for command, args in (("ralph-loop", ["--help"]), ("ralph", ["run", "--help"])):
        env = {"COLUMNS": "80", "PATH": "/usr/bin:/bin"}
        proc = run_cli(args, cwd=tmp_path, env=env, command=command)
        assert proc.returncode == 0
        assert max(len(line) for line in proc.stdout.splitlines()) <= 80
        options = proc.stdout.split("\nOptions:\n", 1)[1]
        listed = re.findall(r"^  (-[-\w]+(?:, --[-\w]+)?)", options, re.M)
        assert len(listed) == len(set(listed)) == len(_run_options()) + 1  # and --help
        assert "Exit codes: 0 completed" in proc.stdout and "130 interrupted" in proc.stdout


def test_ralph_repo_is_honoured_by_every_command(tmp_path: Path) -> None:
    # The run's own closing line says `ralph resume RUN`: in the same shell it must find it.
    repo, prompt, script = setup(tmp_path, [[work_turn(1), f"<promise>{TOKEN}</promise>"]])
    env = clean_env(RALPH_REPO=str(repo))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = [str(prompt), "--model", f"script:{script}", "--sandbox", "none"]
    assert run_cli(run, cwd=elsewhere, env=env).returncode == 0
    runs = run_cli(["runs", "--json"], cwd=elsewhere, env=env, command="ralph")
    assert runs.returncode == 0, runs.stderr
    assert '"status": "completed"' in runs.stdout
    resume = run_cli(["resume", "nosuchrun"], cwd=elsewhere, env=env, command="ralph")
    assert resume.returncode == 2 and "no runs recorded" not in resume.stderr, resume.stderr
    missing = clean_env(RALPH_REPO=str(tmp_path / "gone"))
    proc = run_cli([str(prompt), "--dry-run"], cwd=elsewhere, env=missing)
    assert proc.returncode == 2 and f"RALPH_REPO={tmp_path / 'gone'} does not" in proc.stderr
