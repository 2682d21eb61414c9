"""`--pr` through the real CLI: push to a real bare remote, open then update a pull request
on a local stand-in for the GitHub API, and keep the token out of the agent and the journal."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakeapi import FakeAPI, Message
from tests.fakegithub import FakeGitHub
from tests.helpers import (
    clean_env,
    git,
    interrupt_in_iteration,
    make_repo,
    run_cli,
    write_script,
)

TOKEN = "ghp_" + "PrE2eT0ken" * 4
TOKEN_VAR = "ANOTHER_" + "TOKEN"


@pytest.fixture
def gh(tmp_path: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as server:
        yield server


def setup(
    tmp_path: Path, gh: FakeGitHub, final: str, *, http: bool = False
) -> tuple[Path, dict[str, str], Path]:
    """A work repository whose origin is the served bare repository: a path plus
    RALPH_GITHUB_REPO, or (http) the fake server's URL, owner/repo read from it."""
    bare = gh.bare_repo("octo", "app")
    bare.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    repo = make_repo(tmp_path / "work")
    git(repo, "remote", "add", "origin", f"{gh.url}/octo/app.git" if http else str(bare))
    git(repo, "push", "-q", str(bare), "main")
    turns = [
        {
            "text": "audit",
            "tools": [
                {
                    "bash": {
                        "command": 'env > agent-env.txt; echo "[$GITHUB_TOKEN]" >> agent-env.txt'
                    }
                },
                {
                    "str_replace_based_edit_tool": {
                        "command": "create",
                        "path": "sdlc/audit.md",
                        "file_text": "# Audit\n",
                    }
                },
            ],
        },
        final,
    ]
    script = write_script(tmp_path / "s.yaml", [turns])
    env = clean_env(GITHUB_API_URL=gh.url, GITHUB_TOKEN=TOKEN, **{TOKEN_VAR: TOKEN})
    for name in ("GITHUB_SERVER_URL", "GH_TOKEN"):  # as set on a CI runner: not ours here
        env.pop(name, None)
    if not http:
        env["RALPH_GITHUB_REPO"] = "octo/app"
    return repo, env, script


def ralph(
    repo: Path, env: dict[str, str], script: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    args = ["Audit it. <promise>DONE</promise>", "--model", f"script:{script}", "--sandbox", "none",
            "--max-iterations", "1", "--pr", "--pr-label", "security", "--branch", "ralph/audit", *extra]  # fmt: skip
    return run_cli(args, cwd=repo, env=env)


def ralph_again(
    repo: Path, env: dict[str, str], script: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """The same job run again on the run branch (checked out), as a nightly does."""
    args = ["Audit it. <promise>DONE</promise>", "--model", f"script:{script}", "--sandbox", "none",
            "--max-iterations", "1", "--pr", "--in-place", *extra]  # fmt: skip
    return run_cli(args, cwd=repo, env=env)


def test_pr_opened_then_updated_and_token_kept_out(tmp_path: Path, gh: FakeGitHub) -> None:
    repo, env, script = setup(tmp_path, gh, "Audited. <promise>DONE</promise>")
    proc = ralph(repo, env, script)
    assert proc.returncode == 0, proc.stderr
    [pr] = gh.pulls()
    assert pr["head"]["ref"] == "ralph/audit" and pr["base"]["ref"] == "main"
    assert pr["title"].endswith("completed")
    assert "Audited" in pr["body"] and "sdlc/audit.md" in pr["body"]
    assert [label["name"] for label in pr["labels"]] == ["security"]
    assert git(gh.bare_repo("octo", "app"), "rev-parse", "ralph/audit") == git(
        repo, "rev-parse", "ralph/audit"
    )
    assert "pull request #" in proc.stderr

    # The agent saw no token, and nothing ralph stored holds it.
    agent_env = (repo / "agent-env.txt").read_text()
    assert TOKEN not in agent_env and "GITHUB_TOKEN" not in agent_env and TOKEN_VAR not in agent_env
    for path in (repo / ".ralph").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in (repo / ".git" / "config").read_text()

    # A second run on the same branch updates the same pull request.
    git(repo, "checkout", "-q", "ralph/audit")
    again = run_cli(
        ["Audit again. <promise>DONE</promise>", "--model", f"script:{script}", "--sandbox", "none",
         "--max-iterations", "1", "--pr", "--in-place", "--pr-base", "main"],
        cwd=repo, env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert len(gh.pulls()) == 1
    assert len(gh.calls("POST", r"/pulls$")) == 1 and gh.calls("PATCH", r"/pulls/\d+$")


def test_rejected_pr_is_exit_1_when_the_run_completed(tmp_path: Path, gh: FakeGitHub) -> None:
    repo, env, script = setup(tmp_path, gh, "Audited. <promise>DONE</promise>")
    gh.fail(
        "POST",
        r"/pulls$",
        422,
        {
            "message": "Validation Failed",
            "errors": [{"message": "No commits between main and ralph/audit"}],
        },
    )
    proc = ralph(repo, env, script)
    assert proc.returncode == 1
    assert "No commits between main and ralph/audit" in proc.stderr


def test_pr_failure_keeps_the_runs_own_exit_code(tmp_path: Path, gh: FakeGitHub) -> None:
    repo, env, script = setup(tmp_path, gh, "Not done yet.")
    # The remote branch has moved on: the push is rejected, never forced.
    other = make_repo(tmp_path / "other", {"OTHER.md": "someone else's work\n"})
    git(other, "push", "-q", str(gh.bare_repo("octo", "app")), "main:ralph/audit", "--force")
    proc = ralph(repo, env, script)
    assert proc.returncode == 3  # max iterations, not overwritten by the PR failure
    assert "rejected" in proc.stderr
    assert not gh.pulls()


def test_pr_without_token_is_a_usage_error_before_anything_is_created(
    tmp_path: Path, gh: FakeGitHub
) -> None:
    repo, env, script = setup(tmp_path, gh, "x")
    del env["GITHUB_TOKEN"]
    proc = ralph(repo, env, script)
    assert proc.returncode == 2 and "GITHUB_TOKEN" in proc.stderr
    assert not (repo / ".ralph").exists()


def test_over_http_owner_and_repo_come_from_the_url_and_the_draft_flags_win(
    tmp_path: Path, gh: FakeGitHub
) -> None:
    repo, env, script = setup(tmp_path, gh, "Audited. <promise>DONE</promise>", http=True)
    assert "RALPH_GITHUB_REPO" not in env
    proc = ralph(repo, env, script, "--pr-draft")  # a draft although the run completed
    assert proc.returncode == 0, proc.stderr
    [pr] = gh.pulls()
    assert pr["draft"] is True and pr["title"].endswith("completed")
    assert "pull request #1 opened (draft)" in proc.stderr
    # Pushed over HTTP with the token as GitHub takes it, and never stored.
    [push] = gh.calls("POST", r"^/octo/app\.git/git-receive-pack$")
    assert push.headers["authorization"].lower().startswith("basic ")
    assert git(gh.bare_repo("octo", "app"), "rev-parse", "ralph/audit") == git(
        repo, "rev-parse", "ralph/audit"
    )
    assert TOKEN not in (repo / ".git" / "config").read_text()

    # A second run that stops short: the same pull request gets the new title and body and,
    # with --no-pr-draft, is marked ready for review although the run did not complete.
    git(repo, "checkout", "-q", "ralph/audit")
    second = write_script(
        tmp_path / "s2.yaml",
        [[{"text": "more", "tools": [{"str_replace_based_edit_tool": {
            "command": "create", "path": "sdlc/runbook.md", "file_text": "# Runbook\n"}}]},
          "Runbook drafted; more to do."]],
    )  # fmt: skip
    again = run_cli(
        ["Audit again. <promise>DONE</promise>", "--model", f"script:{second}", "--sandbox",
         "none", "--max-iterations", "1", "--pr", "--in-place", "--no-pr-draft"],
        cwd=repo, env=env,
    )  # fmt: skip
    assert again.returncode == 3, again.stderr  # max iterations; the PR step succeeded
    [patch] = gh.calls("PATCH", r"/pulls/1$")
    assert patch.json["title"] == "ralph: audit-again-promise — stopped at max iterations (1/1)"
    assert "Runbook drafted; more to do." in patch.json["body"]
    assert "Audited." not in patch.json["body"]
    assert "sdlc/runbook.md" in patch.json["body"]
    [pr] = gh.pulls()
    assert pr["title"] == patch.json["title"] and pr["draft"] is False
    [mark] = gh.calls("POST", r"^/graphql$")
    assert "markPullRequestReadyForReview" in mark.text
    assert len(gh.calls("POST", r"/pulls$")) == 1


def test_a_run_that_did_not_complete_is_a_draft_and_a_completed_one_makes_it_ready(
    tmp_path: Path, gh: FakeGitHub
) -> None:
    repo, env, script = setup(tmp_path, gh, "Audit half done.")
    proc = ralph(repo, env, script)
    assert proc.returncode == 3, proc.stderr  # max iterations
    [pr] = gh.pulls()
    assert pr["draft"] is True
    assert pr["title"] == "ralph: audit-it-promise — stopped at max iterations (1/1)"
    assert "pull request #1 opened (draft)" in proc.stderr

    # The next run completes: the same pull request is marked ready, its title says so.
    git(repo, "checkout", "-q", "ralph/audit")
    done = write_script(
        tmp_path / "s2.yaml",
        [[{"text": "finish", "tools": [{"str_replace_based_edit_tool": {
            "command": "create", "path": "sdlc/runbook.md", "file_text": "# Runbook\n"}}]},
          "Audited. <promise>DONE</promise>"]],
    )  # fmt: skip
    again = ralph_again(repo, env, done)
    assert again.returncode == 0, again.stderr
    [pr] = gh.pulls()
    assert pr["draft"] is False and pr["title"] == "ralph: audit-it-promise — completed"
    [mark] = gh.calls("POST", r"^/graphql$")
    assert "markPullRequestReadyForReview" in mark.text

    # And one that stops short again turns it back into a draft.
    write_script(script, [[{"text": "more", "tools": [{"bash": {"command": "echo x >> x"}}]},
                           "Not done."]])  # fmt: skip
    third = ralph_again(repo, env, script)
    assert third.returncode == 3, third.stderr
    [pr] = gh.pulls()
    assert pr["draft"] is True and pr["title"].endswith("stopped at max iterations (1/1)")
    assert "convertPullRequestToDraft" in gh.calls("POST", r"^/graphql$")[-1].text


def test_a_label_github_would_not_set_fails_a_completed_run(tmp_path: Path, gh: FakeGitHub) -> None:
    repo, env, script = setup(tmp_path, gh, "Audited. <promise>DONE</promise>")
    # A renamed repository's 301 on a POST: never re-sent as a GET that "succeeds".
    moved = f"{gh.url}/repositories/1/issues/1/labels"
    gh.fail("POST", r"/issues/1/labels$", 301, {"message": "Moved"}, {"Location": moved})
    proc = ralph(repo, env, script)
    assert proc.returncode == 1, proc.stderr
    assert "pull request #1 opened" in proc.stderr  # the pull request is there
    assert "labels security were not added" in proc.stderr
    assert gh.pulls()[0]["labels"] == [] and not gh.calls("GET", r"/labels$")


@pytest.mark.parametrize("problem", ["no such remote", "not a GitHub URL", "bad token"])
def test_a_bad_remote_or_token_stops_the_run_before_any_model_call(
    tmp_path: Path, gh: FakeGitHub, problem: str
) -> None:
    repo, env, _ = setup(tmp_path, gh, "x")
    extra: list[str] = []
    if problem == "no such remote":
        extra = ["--remote", "upstream"]
        expected = "no git remote 'upstream'"
    elif problem == "not a GitHub URL":
        del env["RALPH_GITHUB_REPO"]
        expected = "is not a GitHub URL; set RALPH_GITHUB_REPO=owner/name"
    else:
        env["GITHUB_TOKEN"] = "ghp_" + "W" * 36
        expected = "GitHub rejected the token (401 Bad credentials)"
    env = {k: v for k, v in env.items() if not k.startswith("ANTHROPIC_")}
    with FakeAPI(default=Message("Done. <promise>DONE</promise>")) as api:
        env.update(ANTHROPIC_BASE_URL=api.url, ANTHROPIC_API_KEY="sk-ant-api03-" + "k" * 30)
        proc = run_cli(
            ["Audit it. <promise>DONE</promise>", "--model", "claude-sonnet-5-5", "--sandbox",
             "none", "--max-iterations", "1", "--pr", "--branch", "ralph/audit", *extra],
            cwd=repo, env=env,
        )  # fmt: skip
        assert api.requests == []  # no model call
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (repo / ".ralph").exists()
    assert git(repo, "branch", "--list", "ralph/*") == ""  # no branch, so no commit
    assert not gh.calls("POST")


def test_an_interrupted_run_is_not_published_until_it_is_resumed(
    tmp_path: Path, gh: FakeGitHub
) -> None:
    repo, env, _ = setup(tmp_path, gh, "x")
    first = [
        {"text": "audit", "tools": [{"str_replace_based_edit_tool": {
            "command": "create", "path": "sdlc/audit.md", "file_text": "# Audit\n"}}]},
        "Audit written.",
    ]  # fmt: skip
    script = write_script(tmp_path / "s3.yaml", [first, [{"text": "Thinking.", "sleep": 30}]])
    args = ["Audit it. <promise>DONE</promise>", "--model", f"script:{script}", "--sandbox",
            "none", "--max-iterations", "2", "--pr", "--branch", "ralph/audit"]  # fmt: skip
    interrupt_in_iteration(args, cwd=repo, env=env)
    # Interrupted: the commit stays local; nothing is pushed, no pull request.
    assert git(repo, "log", "--format=%s", "-1", "ralph/audit").startswith("ralph(")
    assert git(gh.bare_repo("octo", "app"), "branch", "--list", "ralph/*") == ""
    assert not gh.pulls() and not gh.calls("POST", r"/pulls$")

    # Resumed (the run keeps its --pr): it ends, and then it is published.
    write_script(script, [first, ["All done. <promise>DONE</promise>"]])
    [run_id] = [p.name for p in (repo / ".ralph" / "runs").iterdir()]
    resumed = run_cli(["resume", run_id], cwd=repo, command="ralph", env=env)
    assert resumed.returncode == 0, resumed.stderr
    [pr] = gh.pulls()
    assert pr["head"]["ref"] == "ralph/audit" and pr["title"].endswith("completed")
    assert git(gh.bare_repo("octo", "app"), "rev-parse", "ralph/audit") == git(
        repo, "rev-parse", "ralph/audit"
    )


def test_the_agents_words_and_file_names_reach_github_inert(tmp_path: Path, gh: FakeGitHub) -> None:
    from tests.test_markdown import effects, read

    repo, env, _ = setup(tmp_path, gh, "x")
    name = "notes` <img src=x onerror=alert(1)> `@org [skip ci] Closes #1.md"
    final = (
        "Closes #1 for @org/team <img src=//evil.example/p.png> "
        "[Re-authenticate](https://evil.example/login)\n<promise>DONE</promise>"
    )
    turns = [{"text": "work", "tools": [{"bash": {"command": f"echo x > '{name}'"}}]}, final]
    script = write_script(tmp_path / "evil.yaml", [turns])
    proc = ralph(repo, env, script)
    assert proc.returncode == 0, proc.stderr

    [pr] = gh.pulls()
    shape, shown = read(pr["body"])
    assert not [tag for tag in shape if tag[0] == "img"]
    links = [part for tag in shape if tag[0] == "a" for part in tag[1:]]
    assert links and all(h.startswith(f"href={gh.url}/octo/app/blob/ralph/audit/") for h in links)
    assert effects(shown) == [] and effects(pr["title"]) == []
    assert "Re-authenticate" in shown and "onerror=alert(1)" in shown  # shown, as words
    message = git(gh.bare_repo("octo", "app"), "log", "-1", "--format=%B", "ralph/audit")
    subject, _, *trailers = message.splitlines()
    assert effects(subject) == [] and [t.split(":")[0] for t in trailers] == [
        "Ralph-Run",
        "Ralph-Iteration",
    ]
