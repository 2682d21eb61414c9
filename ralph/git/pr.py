"""The run's pull request: checks before the run, its title, draft state, body and labels, and
`publish`, which pushes the branch and opens or updates the pull request.

`preflight` checks before a run what `publish` needs at its end (token, remote, repository,
push credentials); the draft state of an existing pull request changes through GraphQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..redact import redact
from ..status import RunStatus
from ..views import markdown as md
from .api import GitHubAPI, GitHubError, api_url_from
from .push import changed_files, check_push, git_text, push_branch, remote_url, resolve_repo

BODY_LIMIT = 65_536  # characters GitHub accepts in a pull request body
LIST_LIMIT = 200  # files listed in the body; the rest are counted
BUILTIN_PROMPTS = frozenset({"security", "observability", "incident-response", "reliability"})


@dataclass(frozen=True)
class PublishResult:
    """The pull request a run was published to, and what did not go as asked."""

    url: str
    number: int
    created: bool  # False when an open pull request for the branch was updated
    base: str
    head_sha: str
    draft: bool = False
    notes: tuple[str, ...] = ()  # worth knowing: a retarget, another open pull request
    problems: tuple[str, ...] = ()  # asked for but not done: labels, draft state


@dataclass
class _Outcome:
    """What `open_or_update_pr` did: the pull request, and what the user should hear."""

    pr: dict[str, Any]
    created: bool
    notes: list[str]
    problems: list[str]


def _base_of(pr: Mapping[str, Any]) -> str:
    return str((pr.get("base") or {}).get("ref") or "")


def open_or_update_pr(
    api: GitHubAPI,
    owner: str,
    repo: str,
    *,
    branch: str,
    base: str,
    title: str,
    body: str,
    draft: bool = False,
    labels: Sequence[str] = (),
    retarget: bool = False,
) -> _Outcome:
    """Update the open pull request from `branch` into `base`, or open one; set its draft
    state and add `labels`.

    An open pull request from the branch into another base is never updated as if it were
    this one: with `retarget` (the user named the base) the only such one is moved to `base`;
    otherwise a new one is opened and a note says which were left alone. Labels and draft
    state that could not be set are `problems` (the pull request itself is there).
    """
    pulls = f"/repos/{owner}/{repo}/pulls"
    head = f"{owner}:{branch}"
    notes: list[str] = []
    mine = api.paginate(
        pulls, {"head": head, "base": base, "state": "open"}, what="list pull requests"
    )
    pr: dict[str, Any] | None = mine[0] if mine else None
    change: dict[str, Any] = {"title": title, "body": body}
    if pr is None:
        others = api.paginate(pulls, {"head": head, "state": "open"}, what="list pull requests")
        others = [p for p in others if _base_of(p) != base]
        if retarget and len(others) == 1:
            pr, change["base"] = others[0], base
            notes.append(
                f"pull request #{pr['number']} from {branch} was into {_base_of(pr)}; it now "
                f"targets {base}, as --pr-base asks"
            )
        elif others:
            listed = ", ".join(f"#{p['number']} (into {_base_of(p)})" for p in others)
            hint = (
                ""
                if retarget
                else f"; pass --pr-base {_base_of(others[0])} to update #{others[0]['number']} instead"
            )
            notes.append(
                f"{branch} has open pull requests into other branches, left as they are: "
                f"{listed}; a new one into {base} was opened{hint}"
            )
    created = pr is None
    if pr is None:
        new = {"head": branch, "base": base, "title": title, "body": body, "draft": draft}
        try:
            try:
                pr = api.request("POST", pulls, json=new, what="create the pull request")
            except GitHubError as exc:
                # Private repositories on some plans have no drafts: open it ready, and say so.
                if not (draft and exc.status == 422 and any("raft" in d for d in exc.details)):
                    raise
                pr = api.request(
                    "POST", pulls, json={**new, "draft": False}, what="create the pull request"
                )
                notes.append(
                    f"GitHub has no draft pull requests in {owner}/{repo}; "
                    f"#{pr['number']} was opened ready for review"
                )
        except GitHubError as exc:
            # A retried POST whose first try did land, or a run racing ours: update that one.
            if exc.status != 422 or not any("already exists" in d for d in exc.details):
                raise
            again = api.paginate(pulls, {"head": head, "base": base, "state": "open"})
            if not again:
                raise
            pr, created = again[0], False
    assert pr is not None
    if not created:
        pr = api.request(
            "PATCH",
            f"{pulls}/{pr['number']}",
            json=change,
            what=f"update pull request #{pr['number']}",
        )
    problems: list[str] = []
    if bool(pr.get("draft")) != draft and not (created and draft):
        try:
            pr = set_draft(api, pr, draft)
        except GitHubError as exc:
            problems.append(exc.message)
    if labels:
        try:
            api.request(
                "POST",
                f"/repos/{owner}/{repo}/issues/{pr['number']}/labels",
                json={"labels": list(labels)},
                what=f"label pull request #{pr['number']}",
            )
        except GitHubError as exc:
            problems.append(f"labels {', '.join(labels)} were not added: {exc.message}")
    return _Outcome(pr, created, notes, problems)


_READY = """mutation($id: ID!) {
  markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } }
}"""
_TO_DRAFT = """mutation($id: ID!) {
  convertPullRequestToDraft(input: {pullRequestId: $id}) { pullRequest { isDraft } }
}"""


def set_draft(api: GitHubAPI, pr: dict[str, Any], draft: bool) -> dict[str, Any]:
    """Make an open pull request a draft or ready for review (REST cannot; GraphQL can)."""
    number = pr["number"]
    if not pr.get("node_id"):
        raise GitHubError(f"GitHub did not give the node id of pull request #{number}")
    action = "convert it to a draft" if draft else "mark it ready for review"
    mutation, field = (
        (_TO_DRAFT, "convertPullRequestToDraft")
        if draft
        else (_READY, "markPullRequestReadyForReview")
    )
    keep = (
        "--no-pr-draft to leave it ready for review" if draft else "--pr-draft to leave it a draft"
    )
    try:
        data = api.graphql(mutation, {"id": pr["node_id"]}, what=action)
    except GitHubError as exc:
        raise GitHubError(
            f"pull request #{number} was updated, but {exc.message}; pass {keep}",
            exc.status,
            exc.details,
        ) from None
    is_draft = ((data.get(field) or {}).get("pullRequest") or {}).get("isDraft")
    if is_draft is not None and bool(is_draft) != draft:
        raise GitHubError(f"pull request #{number} was updated, but GitHub did not {action}")
    return {**pr, "draft": draft}


def draft_for(status: str, flag: bool | None) -> bool:
    """Whether a run's pull request is a draft: as `--pr-draft/--no-pr-draft` say, else
    unless the run completed (a reviewer should not merge work the run did not finish)."""
    return status != RunStatus.COMPLETED if flag is None else flag


def pr_title(prompt_name: str, status: str, iterations: int = 0, max_iterations: int = 0) -> str:
    """`ralph: security hardening — stopped at max iterations (12/30)` and the like."""
    job = f"{prompt_name} hardening" if prompt_name in BUILTIN_PROMPTS else prompt_name
    if status == "max_iterations":
        outcome = f"stopped at max iterations ({iterations}/{max_iterations})"
    else:
        try:
            outcome = RunStatus(status).label
        except ValueError:  # a status this ralph does not know (a newer journal)
            outcome = status.replace("_", " ")
    # A title is plain text, but GitHub links `#1` and `@name` in it, and a squash merge makes
    # it a commit subject (where `[skip ci]` skips CI): the prompt's name is made inert.
    return md.neutralise(f"ralph: {job} — {outcome}")


def pr_body(
    report: str,
    *,
    branch: str,
    web_url: str | None,
    files: Sequence[str],
    artifacts: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    limit: int = BODY_LIMIT,
) -> str:
    """The redacted run report, trimmed to `limit`, then the artifacts and changed files."""

    def link(path: str) -> str:
        # Names are the agent's: escaped, so none closes the link or code span it is in.
        if not web_url:
            return f"- {md.code(path, environ)}"
        return f"- [{md.text(path, environ)}]({web_url}/blob/{quote(branch)}/{quote(path)})"

    def listing(heading: str, paths: Sequence[str]) -> str:
        if not paths:
            return ""
        shown = [link(p) for p in paths[:LIST_LIMIT]]
        more = [f"- … and {len(paths) - LIST_LIMIT} more"] if len(paths) > LIST_LIMIT else []
        return f"\n\n### {heading}\n\n" + "\n".join(shown + more)

    if artifacts is None:  # audits, runbooks and progress notes are the markdown files
        artifacts = [f for f in files if f.lower().endswith(".md")]
    tail = listing("Artifacts", artifacts) + listing(f"Changed files ({len(files)})", files)
    tail += f"\n\n<sub>Branch {md.code(branch, environ)}, pushed by ralph-loop.</sub>\n"
    tail = redact(tail, environ)  # a secret as a file name is in its link's URL too
    text = redact(report.rstrip(), environ)
    room = limit - len(tail)
    if len(text) > room:
        note = (
            "\n\n> [!NOTE]\n> The report was trimmed to fit GitHub's 65,536-character limit; "
            "the full report is the run's `report.md`."
        )
        text = text[: max(0, room - len(note) - 4)]
        text = text[: text.rfind("\n")] if "\n" in text else text
        if text.count("```") % 2:  # close a code block the cut left open
            text += "\n```"
        text += note
    return (text + tail)[:limit]


def _token(environ: Mapping[str, str]) -> str:
    token = environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN")
    if not token:
        raise GitHubError(
            "--pr needs a GitHub token: set GITHUB_TOKEN (or GH_TOKEN) to a token with "
            "contents: write and pull-requests: write"
        )
    return token


def preflight(
    repo_path: Path,
    remote: str = "origin",
    *,
    base: str | None = None,
    environ: Mapping[str, str] | None = None,
    github_repo: str | None = None,
    retry_seconds: float = 20.0,
) -> tuple[str, str] | None:
    """Check before a run what `publish` needs at its end; raises GitHubError with the fix.

    The token is set; the remote exists and names a GitHub repository (or RALPH_GITHUB_REPO
    does); the token can read that repository, and push to it where GitHub says so; the base
    branch exists; and the remote accepts a (dry-run) push with our credentials. Returns
    (owner, repo), or None when `repo_path` is not a git repository (the run reports that).
    """
    env = os.environ if environ is None else environ
    token = _token(env)
    if not repo_path.is_dir() or git_text(repo_path, "rev-parse", "--git-dir").returncode != 0:
        return None
    api_url = api_url_from(env)
    owner, repo = resolve_repo(remote_url(repo_path, remote, push=False), env, github_repo)
    with GitHubAPI(api_url, token, retry_seconds=retry_seconds, environ=env) as api:
        info = api.request("GET", f"/repos/{owner}/{repo}", what=f"read {owner}/{repo}")
        info = info if isinstance(info, dict) else {}
        # Only a user's token says what it may do here (an app's token has no `permissions`).
        if (info.get("permissions") or {}).get("push") is False:
            raise GitHubError(
                f"the GitHub token can read {owner}/{repo} but not push to it: use a token "
                "with contents: write and pull-requests: write on that repository"
            )
        if base and base != info.get("default_branch"):
            try:
                api.request(
                    "GET",
                    f"/repos/{owner}/{repo}/branches/{quote(base, safe='')}",
                    what=f"read branch {base!r} of {owner}/{repo}",
                )
            except GitHubError as exc:
                if exc.status != 404:
                    raise
                raise GitHubError(
                    f"--pr-base {base!r}: {owner}/{repo} has no such branch; name an existing "
                    f"one, or drop --pr-base for the default ({info.get('default_branch')})"
                ) from None
    check_push(repo_path, remote, token=token, api_url=api_url, environ=env)
    return owner, repo


def publish(
    repo_path: Path,
    branch: str,
    *,
    title: str,
    body: str,
    remote: str = "origin",
    base: str | None = None,
    labels: Sequence[str] = (),
    draft: bool = False,
    environ: Mapping[str, str] | None = None,
    files: Sequence[str] | None = None,
    artifacts: Sequence[str] | None = None,
    github_repo: str | None = None,
    retry_seconds: float = 120.0,
) -> PublishResult:
    """Push `branch` and open or update its pull request; raises GitHubError with the reason.

    `body` is the run report (markdown); it is redacted, trimmed, and followed by the
    artifacts and changed files linked on the branch. `files` defaults to the branch's diff
    against `base`; `artifacts` to its markdown files.
    """
    env = os.environ if environ is None else environ
    token = _token(env)
    api_url = api_url_from(env)
    owner, repo = resolve_repo(remote_url(repo_path, remote, push=False), env, github_repo)
    notes: list[str] = []
    with GitHubAPI(api_url, token, retry_seconds=retry_seconds, environ=env) as api:
        # Reading the repository first catches a bad token or name before anything is pushed.
        info = api.request("GET", f"/repos/{owner}/{repo}", what=f"read {owner}/{repo}")
        moved = str(info.get("full_name") or "")
        if moved.count("/") == 1 and moved.lower() != f"{owner}/{repo}".lower():
            # Renamed or transferred: the GET followed GitHub's 301; writes must not meet it.
            notes.append(f"{owner}/{repo} is now {moved} on GitHub (renamed or transferred)")
            owner, repo = moved.split("/")
        explicit = base is not None
        base = base or str(info.get("default_branch") or "main")
        if base == branch:
            raise GitHubError(
                f"the run branch {branch!r} is the base branch; --pr needs a branch of its own "
                "(drop --in-place, or check out another branch first)"
            )
        head_sha = push_branch(repo_path, remote, branch, token=token, api_url=api_url, environ=env)
        if files is None:
            files = changed_files(repo_path, remote, base, branch)
        text = pr_body(
            body,
            branch=branch,
            web_url=info.get("html_url"),
            files=files,
            artifacts=artifacts,
            environ=env,
        )
        done = open_or_update_pr(
            api,
            owner,
            repo,
            branch=branch,
            base=base,
            title=redact(title, env)[:256],
            body=text,
            draft=draft,
            labels=labels,
            retarget=explicit,
        )
    pr = done.pr
    return PublishResult(
        str(pr["html_url"]),
        int(pr["number"]),
        done.created,
        base,
        head_sha,
        draft=bool(pr.get("draft")),
        notes=tuple(notes + done.notes),
        problems=tuple(done.problems),
    )
