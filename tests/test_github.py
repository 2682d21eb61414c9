"""Publishing a run: a real bare repository as the remote and a local fake GitHub API."""

from __future__ import annotations

import base64
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ralph.git.api import GitHubAPI, GitHubError, default_graphql_url
from ralph.git.pr import PublishResult, draft_for, pr_body, pr_title, preflight, publish
from ralph.git.push import auth_env, parse_remote, resolve_repo
from tests.fakegithub import FakeGitHub
from tests.helpers import git, make_repo

TOKEN = "ghp_" + "T0kenForTests" * 3  # the shape of a classic token: redact knows it
BRANCH = "ralph/security"
REPORT = "# Run report\n\nCompleted in 3 iterations.\n"


@dataclass
class World:
    gh: FakeGitHub
    work: Path  # the local repository the run worked in
    bare: Path  # the remote
    env: dict[str, str]

    def commit(self, path: str, text: str) -> str:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git(self.work, "add", path)
        git(self.work, "commit", "-q", "-m", f"edit {path}")
        return git(self.work, "rev-parse", "HEAD")

    def publish(self, **kwargs: Any) -> PublishResult:
        args: dict[str, Any] = {"title": "ralph: security hardening — completed", "body": REPORT}
        args.update(kwargs)
        return publish(self.work, BRANCH, environ=self.env, **args)


def make_world(tmp_path: Path, gh: FakeGitHub, *, http: bool) -> World:
    bare = gh.bare_repo("octo", "app")
    bare.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = make_repo(tmp_path / "work")
    env = {"GITHUB_API_URL": gh.url, "GITHUB_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    if http:
        git(work, "remote", "add", "origin", f"{gh.url}/octo/app.git")
    else:
        git(work, "remote", "add", "origin", str(bare))
        env["RALPH_GITHUB_REPO"] = "octo/app"
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True)
    git(work, "checkout", "-q", "-b", BRANCH)
    world = World(gh, work, bare, env)
    world.commit("sdlc/security-audit.md", "# Audit\n\nNo findings left.\n")
    world.commit("src/app.py", "print('hardened')\n")
    return world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as gh:
        yield make_world(tmp_path, gh, http=False)


def remote_sha(world: World, branch: str = BRANCH) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=world.bare,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or None


def assert_no_token_leak(world: World, *texts: str) -> None:
    """The token appears nowhere but in the API's Authorization header."""
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    for config in (world.work / ".git" / "config", world.bare / "config"):
        content = config.read_text()
        assert TOKEN not in content and encoded not in content
    for req in world.gh.requests:
        seen = [req.path, req.text, *req.query.values()]
        seen += [v for k, v in req.headers.items() if k != "authorization"]
        assert not any(TOKEN in s for s in seen), req
    for text in texts:
        assert TOKEN not in text


def test_publish_pushes_the_branch_and_opens_a_pull_request(world: World) -> None:
    head = git(world.work, "rev-parse", "HEAD")
    result = world.publish(labels=["ralph", "security"], draft=True)

    assert remote_sha(world) == head  # the push happened
    assert result.created and result.number == 1 and result.base == "main"
    assert result.url == f"{world.gh.url}/octo/app/pull/1"
    lookup = world.gh.calls("GET", r"/pulls$")[0]
    assert lookup.query == {
        "head": f"octo:{BRANCH}",
        "base": "main",
        "state": "open",
        "per_page": "100",
    }
    [create] = world.gh.calls("POST", r"/pulls$")
    assert create.json["head"] == BRANCH and create.json["base"] == "main"
    assert create.json["title"] == "ralph: security hardening — completed"
    assert create.json["draft"] is True
    body = create.json["body"]
    assert body.startswith(REPORT.rstrip())
    audit = f"{world.gh.url}/octo/app/blob/ralph/security/sdlc/security-audit.md"
    assert f"[sdlc/security-audit.md]({audit})" in body
    assert "### Changed files (2)" in body and "[src/app.py](" in body
    [labels] = world.gh.calls("POST", r"/issues/1/labels$")
    assert labels.json == {"labels": ["ralph", "security"]}
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["accept"] == "application/vnd.github+json"
    assert create.headers["x-github-api-version"] == "2022-11-28"
    assert world.gh.pulls()[0]["labels"] == [{"name": "ralph"}, {"name": "security"}]
    assert_no_token_leak(world)


def test_a_second_publish_updates_the_same_pull_request(world: World) -> None:
    first = world.publish()
    head = world.commit("src/app.py", "print('hardened twice')\n")
    second = world.publish(title="ralph: security hardening — stalled", body="# Again\n")

    assert remote_sha(world) == head
    assert not second.created and second.number == first.number
    assert len(world.gh.calls("POST", r"/pulls$")) == 1
    [patch] = world.gh.calls("PATCH", r"/pulls/1$")
    assert patch.json["title"] == "ralph: security hardening — stalled"
    assert patch.json["body"].startswith("# Again")
    assert len(world.gh.pulls()) == 1 and world.gh.pulls()[0]["title"].endswith("stalled")


def test_a_pull_request_opened_meanwhile_is_updated_not_duplicated(world: World) -> None:
    world.publish()
    # Our lookup misses it (a race, or a retried POST that had landed): the 422 leads to it.
    world.gh.fail("GET", r"/pulls$", 200, json=[])
    result = world.publish()
    assert not result.created and result.number == 1
    assert len(world.gh.pulls()) == 1
    assert len(world.gh.calls("PATCH", r"/pulls/1$")) == 1


def test_a_rejected_push_is_reported_and_the_remote_branch_kept(
    world: World, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(world.bare), str(other)], check=True)
    git(other, "config", "user.email", "o@example.com")
    git(other, "config", "user.name", "Other")
    git(other, "checkout", "-q", "-b", BRANCH)
    (other / "theirs.txt").write_text("someone else's work\n")
    git(other, "add", "theirs.txt")
    git(other, "commit", "-q", "-m", "theirs")
    git(other, "push", "-q", "origin", BRANCH)
    theirs = git(other, "rev-parse", "HEAD")

    with pytest.raises(GitHubError, match=r"push rejected: origin/ralph/security has commits"):
        world.publish()
    assert remote_sha(world) == theirs  # not overwritten
    assert world.gh.calls("POST", r"/pulls$") == []


def test_a_422_is_reported_with_githubs_reason(world: World) -> None:
    git(world.work, "checkout", "-q", "-B", BRANCH, "main")  # a branch with nothing new
    with pytest.raises(GitHubError) as caught:
        world.publish()
    message = caught.value.message
    assert message == (
        "GitHub could not create the pull request (422 Validation Failed): "
        "No commits between main and ralph/security"
    )
    assert caught.value.status == 422
    assert_no_token_leak(world, message)


def test_a_500_once_is_retried(world: World) -> None:
    world.gh.fail("POST", r"/pulls$", 500)
    result = world.publish()
    assert result.created
    assert len(world.gh.calls("POST", r"/pulls$")) == 2
    assert len(world.gh.pulls()) == 1


def test_a_secondary_rate_limit_waits_as_told(world: World) -> None:
    world.gh.fail(
        "POST",
        r"/pulls$",
        403,
        json={"message": "You have exceeded a secondary rate limit."},
        headers={"retry-after": "1"},
    )
    started = time.monotonic()
    assert world.publish().created
    assert time.monotonic() - started >= 1.0
    assert len(world.gh.calls("POST", r"/pulls$")) == 2


def test_a_rate_limit_longer_than_the_budget_fails_at_once(world: World) -> None:
    world.gh.fail(
        "GET",
        r"/repos/octo/app$",
        429,
        headers={"x-ratelimit-remaining": "0", "retry-after": "3600"},
    )
    started = time.monotonic()
    with pytest.raises(
        GitHubError, match=r"rate limit on GET /repos/octo/app: asked to wait 3600s"
    ):
        world.publish()
    assert time.monotonic() - started < 60  # not the 3600 s asked for


def test_retries_are_bounded_in_time(world: World) -> None:
    world.gh.fail("GET", r"/repos/octo/app$", 502, times=1000)
    started = time.monotonic()
    with pytest.raises(
        GitHubError, match=r"kept failing on GET /repos/octo/app \(502 Bad Gateway\)"
    ):
        world.publish(retry_seconds=2)
    assert time.monotonic() - started < 30  # not the 1000 failures
    assert 2 <= len(world.gh.calls("GET", r"/repos/octo/app$")) <= 5


def test_a_bad_token_is_a_clear_error_before_anything_is_pushed(world: World) -> None:
    world.env["GITHUB_TOKEN"] = "ghp_" + "W" * 36
    with pytest.raises(GitHubError, match=r"^GitHub rejected the token \(401 Bad credentials\)"):
        world.publish()
    assert remote_sha(world) is None


def test_a_forbidden_token_names_the_permissions(world: World) -> None:
    world.gh.fail(
        "POST", r"/pulls$", 403, json={"message": "Resource not accessible by integration"}
    )
    with pytest.raises(GitHubError) as caught:
        world.publish()
    assert caught.value.message == (
        "GitHub refused to create the pull request (403 Resource not accessible by "
        "integration): the token needs contents: write and pull-requests: write"
    )


def test_no_token_is_a_clear_error(world: World) -> None:
    del world.env["GITHUB_TOKEN"]
    with pytest.raises(GitHubError, match=r"set GITHUB_TOKEN \(or GH_TOKEN\)"):
        world.publish()
    world.env["GH_TOKEN"] = TOKEN  # the gh CLI's name works too
    assert world.publish().created


def test_the_base_branch_cannot_be_the_run_branch(world: World) -> None:
    with pytest.raises(GitHubError, match=r"the run branch 'ralph/security' is the base branch"):
        world.publish(base=BRANCH)


def test_the_body_is_redacted_and_trimmed_to_githubs_limit(world: World) -> None:
    report = f"# Report\n\ntoken {TOKEN} and sk-ant-{'a' * 30}\n\n```text\n" + "log line\n" * 9000
    world.publish(body=report)
    body = world.gh.pulls()[0]["body"]
    assert len(body) <= 65_536 and len(report) > 65_536
    assert TOKEN not in body and "sk-ant-" not in body and body.count("[REDACTED]") == 2
    assert "trimmed to fit GitHub's 65,536-character limit" in body
    assert body.count("```") % 2 == 0  # the cut code block was closed
    assert "### Changed files (2)" in body  # the file list survives the trim


def test_pushing_over_http_authenticates_without_storing_the_token(tmp_path: Path) -> None:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as gh:
        world = make_world(tmp_path, gh, http=True)
        result = world.publish()
        assert result.created and remote_sha(world) == git(world.work, "rev-parse", "HEAD")
        pushes = gh.calls("POST", r"/git-receive-pack$")
        assert len(pushes) == 1 and pushes[0].headers["authorization"].lower().startswith("basic ")
        assert_no_token_leak(world)


@pytest.mark.parametrize("how", ["remote url", "pushInsteadOf"])
def test_the_token_is_not_sent_to_a_remote_on_another_host(tmp_path: Path, how: str) -> None:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as gh:
        world = make_world(tmp_path, gh, http=True)
        other_host = gh.url.replace("127.0.0.1", "localhost")
        if how == "remote url":
            git(world.work, "remote", "set-url", "origin", f"{other_host}/octo/app.git")
        else:  # what an agent with write access to .git/config might try
            git(world.work, "config", f"url.{other_host}/.pushInsteadOf", f"{gh.url}/")
        with pytest.raises(
            GitHubError, match=r"git push to http://localhost:\d+/octo/app.git failed"
        ):
            world.publish()
        git_requests = [r for r in gh.requests if ".git/" in r.path]
        assert git_requests and all("authorization" not in r.headers for r in git_requests)
        assert remote_sha(world) is None


def test_repository_hooks_do_not_run_during_the_push(tmp_path: Path) -> None:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as gh:
        world = make_world(tmp_path, gh, http=True)
        spy = tmp_path / "hook-saw-env"
        for hook in ("pre-push", "reference-transaction"):
            script = world.work / ".git" / "hooks" / hook
            script.write_text(f"#!/bin/sh\nenv >> {spy}\n")
            script.chmod(0o755)
        world.publish()
        assert remote_sha(world) == git(world.work, "rev-parse", "HEAD")
        assert not spy.exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/octo/app.git", ("octo", "app")),
        ("https://github.com/octo/app", ("octo", "app")),
        ("https://github.com/octo/app/", ("octo", "app")),
        ("https://x-access-token:secret@github.com/octo/app.git", ("octo", "app")),
        ("https://ghe.example.com/team-a/my.service.git", ("team-a", "my.service")),
        ("git@github.com:octo/app.git", ("octo", "app")),
        ("github.com:octo/app", ("octo", "app")),
        ("ssh://git@github.com/octo/app.git", ("octo", "app")),
        ("ssh://git@ghe.example.com:2222/octo/app", ("octo", "app")),
    ],
)
def test_parse_remote(url: str, expected: tuple[str, str]) -> None:
    assert parse_remote(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "/srv/git/app.git",
        "file:///srv/git/app.git",
        "https://github.com/octo",
        "../app.git",
        "https://github.com/octo/app/tree/main",
    ],
)
def test_parse_remote_rejects_what_is_not_a_github_repository(url: str) -> None:
    with pytest.raises(GitHubError, match=r"set RALPH_GITHUB_REPO=owner/name"):
        parse_remote(url)


def test_parse_remote_never_repeats_credentials() -> None:
    with pytest.raises(GitHubError) as caught:
        parse_remote("https://user:hunter2hunter2@github.com/octo")
    assert "hunter2" not in caught.value.message and "***@github.com" in caught.value.message


def test_resolve_repo_prefers_the_override() -> None:
    assert resolve_repo("/srv/app.git", {"RALPH_GITHUB_REPO": "octo/app"}) == ("octo", "app")
    assert resolve_repo("/srv/app.git", {}, "o/r") == ("o", "r")
    with pytest.raises(GitHubError, match=r"RALPH_GITHUB_REPO='octo' is not owner/name"):
        resolve_repo("/srv/app.git", {"RALPH_GITHUB_REPO": "octo"})


def test_auth_env_only_for_the_apis_own_host() -> None:
    env = auth_env("https://github.com/octo/app.git", TOKEN, "https://api.github.com", {})
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraheader"
    encoded = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert env["GIT_CONFIG_VALUE_0"] == f"AUTHORIZATION: basic {encoded}"
    assert auth_env("https://evil.example/octo/app.git", TOKEN, "https://api.github.com", {}) == {}
    assert auth_env("git@github.com:octo/app.git", TOKEN, "https://api.github.com", {}) == {}
    assert auth_env("https://u:p@github.com/octo/app", TOKEN, "https://api.github.com", {}) == {}
    assert auth_env("https://github.com/octo/app", None, "https://api.github.com", {}) == {}
    ghe = {"GITHUB_SERVER_URL": "https://ghe.example.com"}
    assert auth_env("https://ghe.example.com/o/r", TOKEN, "https://ghe.example.com/api/v3", ghe)
    assert auth_env("https://ghe.example.com/o/r", TOKEN, "https://ghe.example.com/api/v3", {})


def test_pr_title_says_the_outcome() -> None:
    assert pr_title("security", "completed") == "ralph: security hardening — completed"
    assert (
        pr_title("reliability", "max_iterations", 12, 30)
        == "ralph: reliability hardening — stopped at max iterations (12/30)"
    )
    assert pr_title("incident-response", "budget") == (
        "ralph: incident-response hardening — budget ran out"
    )
    assert pr_title("my-task", "stalled") == "ralph: my-task — stalled"


def test_pr_body_without_a_web_url_lists_plain_paths() -> None:
    body = pr_body("# R", branch="b", web_url=None, files=["a.py", "docs/runbook.md"])
    assert "### Artifacts\n\n- `docs/runbook.md`" in body
    assert "### Changed files (2)\n\n- `a.py`\n- `docs/runbook.md`" in body


# --- draft state -----------------------------------------------------------------------------


def graphql_calls(world: World) -> list[str]:
    """The mutation each GraphQL request ran, in order."""
    found = []
    for req in world.gh.calls("POST", r"^/graphql$"):
        found += re.findall(r"(markPullRequestReadyForReview|convertPullRequestToDraft)", req.text)
    return found


def test_a_draft_is_marked_ready_when_the_next_run_asks_for_no_draft(world: World) -> None:
    world.publish(draft=True)
    assert world.gh.pulls()[0]["draft"] is True and graphql_calls(world) == []
    world.commit("src/app.py", "print('ready')\n")
    result = world.publish(draft=False)
    assert not result.created
    assert graphql_calls(world) == ["markPullRequestReadyForReview"]
    [call] = world.gh.calls("POST", r"^/graphql$")
    assert call.json["variables"] == {"id": world.gh.pulls()[0]["node_id"]}
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert world.gh.pulls()[0]["draft"] is False


def test_a_ready_pull_request_becomes_a_draft_with_pr_draft(world: World) -> None:
    world.publish()
    world.publish()  # already in the asked state: no mutation
    assert graphql_calls(world) == []
    world.publish(draft=True)
    assert graphql_calls(world) == ["convertPullRequestToDraft"]
    assert world.gh.pulls()[0]["draft"] is True


def test_a_refused_draft_change_is_a_clear_error(world: World) -> None:
    world.publish()
    world.gh.fail(
        "POST",
        r"^/graphql$",
        200,
        json={"data": None, "errors": [{"message": "Resource not accessible by integration"}]},
    )
    result = world.publish(draft=True, body="# Newer\n")
    assert result.problems == (
        "pull request #1 was updated, but GitHub could not convert it to a draft (GraphQL: "
        "Resource not accessible by integration); pass --no-pr-draft to leave it ready for "
        "review",
    )
    assert not result.draft and result.url.endswith("/pull/1")
    assert world.gh.pulls()[0]["body"].startswith("# Newer")  # the update itself landed


def test_a_repository_without_drafts_gets_a_ready_pull_request_and_a_note(world: World) -> None:
    world.gh.drafts = False
    result = world.publish(draft=True)
    assert result.created and not result.draft and result.problems == ()
    assert result.notes == (
        "GitHub has no draft pull requests in octo/app; #1 was opened ready for review",
    )
    assert [c.json["draft"] for c in world.gh.calls("POST", r"/pulls$")] == [True, False]
    assert graphql_calls(world) == []


def test_a_run_that_did_not_complete_is_a_draft_unless_a_flag_says_otherwise() -> None:
    assert draft_for("completed", None) is False
    for status in ("max_iterations", "budget", "stalled", "failed", "error"):
        assert draft_for(status, None) is True, status
        assert draft_for(status, False) is False  # --no-pr-draft: never a draft
    assert draft_for("completed", True) is True  # --pr-draft: always a draft


def test_the_graphql_endpoint_follows_the_api_root() -> None:
    assert default_graphql_url("https://api.github.com") == "https://api.github.com/graphql"
    assert default_graphql_url("https://ghe.example.com/api/v3/") == (
        "https://ghe.example.com/api/graphql"
    )
    assert default_graphql_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/graphql"


# --- preflight -------------------------------------------------------------------------------


def test_preflight_checks_everything_and_pushes_nothing(world: World) -> None:
    assert preflight(world.work, environ=world.env) == ("octo", "app")
    assert remote_sha(world) is None
    assert [r.method for r in world.gh.requests] == ["GET"]  # read the repository, nothing else
    assert subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)"],
        cwd=world.bare, capture_output=True, text=True, check=True,
    ).stdout.split() == ["refs/heads/main"]  # fmt: skip


def test_preflight_over_http_takes_the_repository_from_the_url(tmp_path: Path) -> None:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as gh:
        world = make_world(tmp_path, gh, http=True)
        assert preflight(world.work, environ=world.env) == ("octo", "app")
        probes = [r for r in gh.requests if r.query.get("service") == "git-receive-pack"]
        assert probes and probes[0].headers["authorization"].lower().startswith("basic ")
        assert gh.calls("POST", r"/git-receive-pack$") == []  # a dry run sends nothing
        assert remote_sha(world) is None
        assert_no_token_leak(world)


def test_preflight_rejects_a_bad_token(world: World) -> None:
    world.env["GITHUB_TOKEN"] = "ghp_" + "W" * 36
    with pytest.raises(GitHubError, match=r"^GitHub rejected the token \(401 Bad credentials\)"):
        preflight(world.work, environ=world.env)


def test_preflight_rejects_a_missing_remote(world: World) -> None:
    with pytest.raises(GitHubError, match=r"no git remote 'upstream' in .*--remote NAME"):
        preflight(world.work, "upstream", environ=world.env)


def test_preflight_needs_a_github_url_or_the_override(world: World) -> None:
    del world.env["RALPH_GITHUB_REPO"]  # the remote is a path
    with pytest.raises(GitHubError, match=r"is not a GitHub URL; set RALPH_GITHUB_REPO"):
        preflight(world.work, environ=world.env)


def test_preflight_rejects_a_repository_the_token_cannot_see(world: World) -> None:
    world.env["RALPH_GITHUB_REPO"] = "octo/elsewhere"
    with pytest.raises(GitHubError, match=r"^GitHub found nothing to read octo/elsewhere \(404"):
        preflight(world.work, environ=world.env)


def test_preflight_rejects_a_token_that_may_not_push(tmp_path: Path) -> None:
    with FakeGitHub(
        "octo", "app", token=TOKEN, repos_root=tmp_path / "remotes",
        permissions={"push": False, "pull": True},
    ) as gh:  # fmt: skip
        world = make_world(tmp_path, gh, http=False)
        with pytest.raises(GitHubError, match=r"can read octo/app but not push to it"):
            preflight(world.work, environ=world.env)
        gh.permissions = {}  # an app's token: GitHub does not say, the push check decides
        assert preflight(world.work, environ=world.env) == ("octo", "app")


def test_preflight_checks_the_base_branch(world: World) -> None:
    git(world.work, "push", "-q", str(world.bare), "main:release/1.x")
    assert preflight(world.work, base="release/1.x", environ=world.env)
    with pytest.raises(GitHubError, match=r"--pr-base 'nope': octo/app has no such branch"):
        preflight(world.work, base="nope", environ=world.env)


def test_preflight_retries_for_a_short_while_only(world: World) -> None:
    world.gh.fail("GET", r"/repos/octo/app$", 503, times=1000)
    started = time.monotonic()
    with pytest.raises(GitHubError, match=r"kept failing on GET /repos/octo/app"):
        preflight(world.work, environ=world.env, retry_seconds=1)
    assert time.monotonic() - started < 30  # not the 1000 failures


def test_preflight_fails_when_the_push_would_carry_no_token(tmp_path: Path) -> None:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as gh:
        world = make_world(tmp_path, gh, http=True)
        other_host = gh.url.replace("127.0.0.1", "localhost")
        git(world.work, "remote", "set-url", "origin", f"{other_host}/octo/app.git")
        with pytest.raises(GitHubError, match=r"git push to http://localhost:\d+/octo/app.git"):
            preflight(world.work, environ=world.env)


def test_preflight_needs_a_token_and_leaves_a_non_repository_to_the_run(tmp_path: Path) -> None:
    with pytest.raises(GitHubError, match=r"--pr needs a GitHub token"):
        preflight(tmp_path, environ={})
    assert preflight(tmp_path, environ={"GITHUB_TOKEN": TOKEN}) is None


# --- which pull request: head and base, pages ------------------------------------------------


def push_branch_to_remote(world: World, name: str) -> None:
    git(world.work, "push", "-q", str(world.bare), f"main:refs/heads/{name}")


def test_a_pull_request_into_another_base_is_left_alone_and_a_new_one_opened(
    world: World,
) -> None:
    theirs = world.gh.open_pull(BRANCH, "develop", title="into develop")
    result = world.publish()  # no --pr-base: the repository's default, main

    assert result.created and result.number != theirs and result.base == "main"
    by_number = {p["number"]: p for p in world.gh.pulls()}
    assert by_number[result.number]["base"]["ref"] == "main"
    assert by_number[theirs]["base"]["ref"] == "develop"
    assert by_number[theirs]["title"] == "into develop"  # not updated
    assert world.gh.calls("PATCH") == []
    assert result.notes == (
        f"{BRANCH} has open pull requests into other branches, left as they are: "
        f"#{theirs} (into develop); a new one into main was opened; pass --pr-base develop "
        f"to update #{theirs} instead",
    )


def test_an_explicit_base_retargets_the_only_open_pull_request_of_the_branch(
    world: World,
) -> None:
    push_branch_to_remote(world, "develop")
    theirs = world.gh.open_pull(BRANCH, "main")
    result = world.publish(base="develop")

    assert not result.created and result.number == theirs and result.base == "develop"
    [patch] = world.gh.calls("PATCH", rf"/pulls/{theirs}$")
    assert patch.json["base"] == "develop"
    [pr] = world.gh.pulls()
    assert pr["base"]["ref"] == "develop" and pr["title"].endswith("completed")
    assert result.notes == (
        f"pull request #{theirs} from {BRANCH} was into main; it now targets develop, as "
        "--pr-base asks",
    )


def test_the_pull_request_with_the_runs_base_is_updated_not_the_first_listed(
    world: World,
) -> None:
    push_branch_to_remote(world, "develop")
    world.gh.open_pull(BRANCH, "develop", title="into develop")
    ours = world.gh.open_pull(BRANCH, "main", title="into main")
    result = world.publish(base="main")
    assert not result.created and result.number == ours and result.notes == ()
    assert [c.path for c in world.gh.calls("PATCH")] == [f"/repos/octo/app/pulls/{ours}"]
    assert {p["base"]["ref"] for p in world.gh.pulls()} == {"main", "develop"}


def test_every_page_of_the_branchs_pull_requests_is_read(world: World) -> None:
    world.gh.page_size = 1
    first = world.gh.open_pull(BRANCH, "develop")
    second = world.gh.open_pull(BRANCH, "release")
    result = world.publish(base="main")  # two others: none is retargeted

    assert result.created and world.gh.calls("PATCH") == []
    assert f"#{first} (into develop), #{second} (into release)" in result.notes[0]
    pages = [c.query.get("page") for c in world.gh.calls("GET", r"/pulls$")]
    assert "2" in pages  # the Link header's next page was read


def test_paginate_follows_link_headers_to_the_last_page(world: World) -> None:
    world.gh.page_size = 2
    numbers = [world.gh.open_pull(f"topic-{i}", "main") for i in range(5)]
    with GitHubAPI(world.gh.url, TOKEN) as api:
        found = api.paginate("/repos/octo/app/pulls", {"state": "open"})
    assert [p["number"] for p in found] == numbers
    assert len(world.gh.calls("GET", r"/pulls$")) == 3


# --- redirects ---------------------------------------------------------------------------------


def test_a_301_on_adding_labels_is_not_resent_as_a_get_and_is_reported(world: World) -> None:
    moved = f"{world.gh.url}/repositories/1/issues/1/labels"
    world.gh.fail(
        "POST", r"/issues/1/labels$", 301, {"message": "Moved Permanently"}, {"Location": moved}
    )
    result = world.publish(labels=["security"])

    assert result.created and result.number == 1  # the pull request itself is there
    assert world.gh.calls("GET", r"/labels$") == []  # never turned into a GET
    assert world.gh.pulls()[0]["labels"] == []
    [problem] = result.problems
    assert problem.startswith(
        "labels security were not added: GitHub could not label pull request #1: it "
        "answered 301 (moved to /repositories/1/issues/1/labels), and a POST is never "
        "re-sent as a GET"
    )
    assert "RALPH_GITHUB_REPO" in problem


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_is_followed_with_the_same_method_and_body(world: World, status: int) -> None:
    moved = f"{world.gh.url}/repositories/1/issues/1/labels"
    world.gh.fail("POST", r"/repos/.*/labels$", status, {}, {"Location": moved})
    result = world.publish(labels=["security"])
    assert result.problems == ()
    [resent] = world.gh.calls("POST", r"^/repositories/1/issues/1/labels$")
    assert resent.json == {"labels": ["security"]}
    assert world.gh.pulls()[0]["labels"] == [{"name": "security"}]


def test_a_renamed_repository_is_published_under_its_new_name(world: World) -> None:
    world.gh.rename("octo/app", "octo/app2")  # RALPH_GITHUB_REPO still says octo/app
    result = world.publish(labels=["security"])

    assert result.created and result.problems == ()
    assert result.notes == ("octo/app is now octo/app2 on GitHub (renamed or transferred)",)
    [pr] = world.gh.pulls("octo/app2")
    assert pr["labels"] == [{"name": "security"}] and pr["head"]["label"] == f"octo:{BRANCH}"
    changes = [r for r in world.gh.requests if r.method != "GET" and ".git/" not in r.path]
    assert changes and all(r.path.startswith(("/repos/octo/app2/", "/graphql")) for r in changes)


def test_a_redirect_to_another_host_is_not_followed(world: World, tmp_path: Path) -> None:
    with FakeGitHub("octo", "app") as elsewhere:
        world.gh.fail("GET", r"/repos/octo/app$", 302, {}, {"Location": elsewhere.url + "/x"})
        with pytest.raises(GitHubError, match=r"redirected read octo/app to another host"):
            world.publish()
        assert elsewhere.requests == []  # the token never went there


def test_a_remotes_own_ssh_command_is_used_to_push(world: World) -> None:
    """A deploy key configured as core.sshCommand (the usual way on servers) is respected."""
    log = world.work.parent / "ssh.log"
    ssh = world.work.parent / "deploy-ssh"
    # Stands in for `ssh -i deploy_key`: runs the remote side of the push on the bare repository.
    ssh.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec git-receive-pack {world.bare}\n')
    ssh.chmod(0o755)
    git(world.work, "config", "core.sshCommand", str(ssh))
    git(world.work, "remote", "set-url", "origin", "git@127.0.0.1:octo/app.git")
    result = world.publish()
    assert result.number == 1
    assert "git-receive-pack" in log.read_text()
    assert remote_sha(world) == git(world.work, "rev-parse", BRANCH)


def test_the_repository_is_named_by_the_fetch_url_and_pushed_to_the_push_url(
    tmp_path: Path,
) -> None:
    with FakeGitHub("octo", "app", token=TOKEN, repos_root=tmp_path / "remotes") as gh:
        world = make_world(tmp_path, gh, http=True)
        # Pushes go elsewhere than fetches (a mirror, a path): the fetch URL names the repository.
        git(world.work, "remote", "set-url", "--push", "origin", str(world.bare))
        result = world.publish()
        assert result.number == 1 and result.created
        assert remote_sha(world) == git(world.work, "rev-parse", BRANCH)
        # In Actions, GITHUB_REPOSITORY names it when the fetch URL does not.
        git(world.work, "remote", "set-url", "origin", str(world.bare))
        world.env["GITHUB_REPOSITORY"] = "octo/app"
        world.commit("more.md", "more\n")
        again = world.publish()
        assert again.number == 1 and not again.created
        assert remote_sha(world) == git(world.work, "rev-parse", BRANCH)
