"""Push the run branch: which remote and repository, the token's way to git, the push itself.

The token reaches git only through `GIT_CONFIG_*` environment variables of the one push
command (an `http.<url>.extraheader`), never the command line or `.git/config`, and only when
the remote is on the same GitHub host as the API. A repository's own `core.sshCommand` (a
deploy key) and `pushurl`/`pushInsteadOf` are respected; a push is never forced and never
prompts for a password.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ..redact import redact
from . import gitrun
from .api import DEFAULT_API_URL, REPO_OVERRIDE_VAR, GitHubError, api_url_from

PUSH_TIMEOUT = 300.0

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")


# --- remotes -------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """`url` with any credentials in it replaced by `***`, for messages."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1***@", url, flags=re.IGNORECASE)


def parse_remote(url: str) -> tuple[str, str]:
    """(owner, repo) of a GitHub remote URL: https, ssh:// or scp-like `git@host:owner/repo`."""
    hint = f"set {REPO_OVERRIDE_VAR}=owner/name to name the GitHub repository"
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in {"https", "http", "ssh", "git"} or not parts.hostname:
            raise GitHubError(f"remote {safe_url(url)} is not a GitHub URL; {hint}")
        path = parts.path
    elif match := _SCP_LIKE.match(url):
        path = match["path"]
    else:
        raise GitHubError(f"remote {safe_url(url)} is not a GitHub URL; {hint}")
    segments = [s for s in path.split("/") if s]
    if len(segments) != 2:
        raise GitHubError(f"remote {safe_url(url)} does not end in owner/repo; {hint}")
    owner, repo = segments[0], segments[1].removesuffix(".git")
    if not (_NAME.fullmatch(owner) and _NAME.fullmatch(repo)):
        raise GitHubError(f"remote {safe_url(url)} does not end in owner/repo; {hint}")
    return owner, repo


def resolve_repo(
    url: str, environ: Mapping[str, str], override: str | None = None
) -> tuple[str, str]:
    """(owner, repo): the explicit override, else RALPH_GITHUB_REPO, else the remote's fetch
    URL, else (in GitHub Actions) GITHUB_REPOSITORY."""
    named = override or environ.get(REPO_OVERRIDE_VAR)
    if not named:
        try:
            return parse_remote(url)
        except GitHubError:
            if not environ.get("GITHUB_REPOSITORY"):
                raise
            named = environ["GITHUB_REPOSITORY"]
    owner, _, repo = named.partition("/")
    if not (_NAME.fullmatch(owner) and _NAME.fullmatch(repo)):
        raise GitHubError(f"{REPO_OVERRIDE_VAR}={named!r} is not owner/name (e.g. octo/app)")
    return owner, repo


def remote_url(repo_path: Path, remote: str, push: bool = True) -> str:
    """The URL git pushes to for `remote` (insteadOf rewrites applied); with `push=False`
    the fetch URL, which names the repository (a push URL may be a mirror's)."""
    proc = git_text(repo_path, "remote", "get-url", *(["--push"] if push else []), remote)
    if proc.returncode != 0:
        raise GitHubError(
            f"no git remote {remote!r} in {repo_path}; add one with "
            f"`git remote add {remote} URL` or pass --remote NAME"
        )
    return proc.stdout.strip()


# --- push ----------------------------------------------------------------------------------


def git_host(api_url: str, environ: Mapping[str, str]) -> str:
    """The host (and port) that serves git for this API: github.com for api.github.com."""
    server = environ.get("GITHUB_SERVER_URL")
    host = urlsplit(server or api_url).netloc.lower()
    return host if server else host.removeprefix("api.")


def auth_env(
    url: str, token: str | None, api_url: str, environ: Mapping[str, str], start: int = 0
) -> dict[str, str]:
    """GIT_CONFIG_* variables that send `token` to `url`'s host, or {} when they must not.

    Only for http(s) remotes on the API's own host without credentials of their own: a remote
    the agent pointed elsewhere never sees the token.
    """
    parts = urlsplit(url)
    if not token or parts.scheme not in {"https", "http"} or "@" in parts.netloc:
        return {}
    if parts.netloc.lower() != git_host(api_url, environ):
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": str(start + 1),
        f"GIT_CONFIG_KEY_{start}": f"http.{parts.scheme}://{parts.netloc}/.extraheader",
        f"GIT_CONFIG_VALUE_{start}": f"AUTHORIZATION: basic {basic}",
    }


def push_branch(
    repo_path: Path,
    remote: str,
    branch: str,
    *,
    token: str | None = None,
    api_url: str = DEFAULT_API_URL,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Push `branch` to `remote` (never forced) and return the pushed commit."""
    env_in = os.environ if environ is None else environ
    sha = git_text(repo_path, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    if sha.returncode != 0:
        raise GitHubError(f"no local branch {branch!r} to push in {repo_path}")
    _push(repo_path, remote, f"refs/heads/{branch}", branch, token, api_url, env_in)
    return sha.stdout.strip()


def check_push(
    repo_path: Path,
    remote: str,
    *,
    token: str | None = None,
    api_url: str = DEFAULT_API_URL,
    environ: Mapping[str, str] | None = None,
) -> None:
    """`git push --dry-run` of HEAD to a new branch: the remote answers and takes our credentials.

    Sends nothing, but the remote authenticates the push connection (GitHub asks for a token
    even on a public repository), so a wrong URL or a refused token shows before the run.
    """
    env_in = os.environ if environ is None else environ
    probe = f"ralph-push-check-{os.getpid()}-{int(time.time())}"  # a branch that does not exist
    _push(repo_path, remote, "HEAD", probe, token, api_url, env_in, dry_run=True)


def _push(
    repo_path: Path,
    remote: str,
    source: str,
    branch: str,
    token: str | None,
    api_url: str,
    env_in: Mapping[str, str],
    dry_run: bool = False,
) -> None:
    url = remote_url(repo_path, remote)
    # Secrets stay out of git's environment (helpers, ssh; gitrun drops them); only our header
    # goes in.
    env = {"GCM_INTERACTIVE": "never"}
    own_ssh = git_text(repo_path, "config", "core.sshCommand").stdout.strip()
    if not ("GIT_SSH_COMMAND" in os.environ or "GIT_SSH" in os.environ or own_ssh):
        # Never a password prompt; but a repository's own ssh command (a deploy key) is kept:
        # GIT_SSH_COMMAND would override it.
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    if not _has_extraheader(repo_path):  # a second Authorization header makes GitHub fail
        count = int(gitrun.git_env().get("GIT_CONFIG_COUNT", "0") or "0")
        env.update(auth_env(url, token, api_url, env_in, count))
    authed = "GIT_CONFIG_COUNT" in env
    args = ["push", "--porcelain", "--no-verify"]
    args += ["--dry-run"] if dry_run else []
    args += ["--no-follow-tags", "--recurse-submodules=no", remote, f"{source}:refs/heads/{branch}"]
    timeout = 60.0 if dry_run else PUSH_TIMEOUT
    try:
        proc = git_text(repo_path, *args, env=env, timeout=timeout)
    except gitrun.GitTimeout:
        raise GitHubError(f"git push to {safe_url(url)} took over {timeout:.0f}s") from None
    if proc.returncode != 0:
        raise _push_error(proc.stdout + proc.stderr, url, remote, branch, authed, env_in)


def _push_error(
    output: str, url: str, remote: str, branch: str, authed: bool, environ: Mapping[str, str]
) -> GitHubError:
    if "[rejected]" in output or "non-fast-forward" in output or "fetch first" in output:
        return GitHubError(
            f"push rejected: {remote}/{branch} has commits this run does not have "
            "(it was not overwritten); merge or close its pull request and delete the "
            "branch, or run with another --branch"
        )
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    first = [ln for ln in lines if re.match(r"(fatal|error):|.*\[remote rejected\]", ln)]
    why = redact((first or lines or ["no output"])[0], environ)
    if "could not read Username" in why and not authed:
        why += (
            f"; ralph gives GITHUB_TOKEN only to remotes on {git_host(api_url_from(environ), environ)}"
            " (set GITHUB_SERVER_URL for another GitHub host), or use a credential helper"
        )
    elif re.search(r"Authentication failed|could not read Username|\b40[13]\b", why):
        why += "; check that the token may push to the repository (contents: write)"
    return GitHubError(f"git push to {safe_url(url)} failed: {why}")


def _has_extraheader(repo_path: Path) -> bool:
    proc = git_text(repo_path, "config", "--get-regexp", r"^http\..*extraheader$")
    return proc.returncode == 0 and bool(proc.stdout.strip())


def git_text(
    repo_path: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """A git command through ralph's safe runner (no hooks or repository-run programs, no
    secrets in its environment), its output as text; never raises for git's exit code."""
    proc = gitrun.run(repo_path, *args, env=env, timeout=timeout, check=False)
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def changed_files(repo_path: Path, remote: str, base: str, branch: str) -> list[str]:
    """Files the branch changed since it left `base` (remote-tracking ref first), or []."""
    for ref in (f"refs/remotes/{remote}/{base}", f"refs/heads/{base}"):
        if git_text(repo_path, "rev-parse", "--verify", "--quiet", ref).returncode == 0:
            proc = git_text(repo_path, "diff", "--name-only", "-z", f"{ref}...refs/heads/{branch}")
            if proc.returncode == 0:
                return [p for p in proc.stdout.split("\0") if p]
    return []
