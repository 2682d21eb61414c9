"""Push the run branch and open or update its pull request through the GitHub REST API.

`preflight` checks before a run what `publish` needs at its end (token, remote, repository,
push credentials); the draft state of an existing pull request changes through GraphQL.

The token reaches git only through `GIT_CONFIG_*` environment variables of the one push
command (an `http.<url>.extraheader`), never the command line or `.git/config`, and only when
the remote is on the same GitHub host as the API. httpx is imported lazily (off start-up).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from . import markdown as md
from .errors import RalphError
from .redact import redact
from .status import RunStatus

if TYPE_CHECKING:
    import httpx
    from tenacity import RetryCallState

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
BODY_LIMIT = 65_536  # characters GitHub accepts in a pull request body
LIST_LIMIT = 200  # files listed in the body; the rest are counted
PUSH_TIMEOUT = 300.0
MAX_REDIRECTS = 5
MAX_PAGES = 10  # of 100 pull requests: one branch never has that many open
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
REPO_OVERRIDE_VAR = "RALPH_GITHUB_REPO"
BUILTIN_PROMPTS = frozenset({"security", "observability", "incident-response", "reliability"})

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")


class GitHubError(RalphError):
    """A push or GitHub API failure, with a one-line message for the user."""

    def __init__(
        self, message: str, status: int | None = None, details: Sequence[str] = ()
    ) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status
        self.details = list(details)


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
    proc = _git(repo_path, "remote", "get-url", *(["--push"] if push else []), remote)
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
    sha = _git(repo_path, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
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
    from .gitrun import GitTimeout, git_env

    url = remote_url(repo_path, remote)
    # Secrets stay out of git's environment (helpers, ssh; gitrun drops them); only our header
    # goes in.
    env = {"GCM_INTERACTIVE": "never"}
    own_ssh = _git(repo_path, "config", "core.sshCommand").stdout.strip()
    if not ("GIT_SSH_COMMAND" in os.environ or "GIT_SSH" in os.environ or own_ssh):
        # Never a password prompt; but a repository's own ssh command (a deploy key) is kept:
        # GIT_SSH_COMMAND would override it.
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    if not _has_extraheader(repo_path):  # a second Authorization header makes GitHub fail
        count = int(git_env().get("GIT_CONFIG_COUNT", "0") or "0")
        env.update(auth_env(url, token, api_url, env_in, count))
    authed = "GIT_CONFIG_COUNT" in env
    args = ["push", "--porcelain", "--no-verify"]
    args += ["--dry-run"] if dry_run else []
    args += ["--no-follow-tags", "--recurse-submodules=no", remote, f"{source}:refs/heads/{branch}"]
    timeout = 60.0 if dry_run else PUSH_TIMEOUT
    try:
        proc = _git(repo_path, *args, env=env, timeout=timeout)
    except GitTimeout:
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
            f"; ralph gives GITHUB_TOKEN only to remotes on {git_host(_api_url(environ), environ)}"
            " (set GITHUB_SERVER_URL for another GitHub host), or use a credential helper"
        )
    elif re.search(r"Authentication failed|could not read Username|\b40[13]\b", why):
        why += "; check that the token may push to the repository (contents: write)"
    return GitHubError(f"git push to {safe_url(url)} failed: {why}")


def _api_url(environ: Mapping[str, str]) -> str:
    return (environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")


def default_graphql_url(api_url: str) -> str:
    """GitHub's GraphQL endpoint for a REST root: `/api/v3` becomes `/api/graphql` (Enterprise)."""
    root = api_url.rstrip("/")
    if root.endswith("/api/v3"):
        return root.removesuffix("/v3") + "/graphql"
    return root + "/graphql"


def _has_extraheader(repo_path: Path) -> bool:
    proc = _git(repo_path, "config", "--get-regexp", r"^http\..*extraheader$")
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _git(
    repo_path: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """A git command through ralph's safe runner (no hooks or repository-run programs, no
    secrets in its environment), its output as text; never raises for git's exit code."""
    from . import gitrun

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
        if _git(repo_path, "rev-parse", "--verify", "--quiet", ref).returncode == 0:
            proc = _git(repo_path, "diff", "--name-only", "-z", f"{ref}...refs/heads/{branch}")
            if proc.returncode == 0:
                return [p for p in proc.stdout.split("\0") if p]
    return []


# --- REST API ------------------------------------------------------------------------------


class _Transient(Exception):
    """A response or connection failure worth retrying, with the server's wait if it gave one."""

    def __init__(self, what: str, wait: float | None, rate_limited: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.wait = wait
        self.rate_limited = rate_limited


class GitHubAPI:
    """A small GitHub REST client: auth headers, bounded retries, one-line errors."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        retry_seconds: float = 120.0,
        timeout: float = 30.0,
        environ: Mapping[str, str] | None = None,
        graphql_url: str | None = None,
    ) -> None:
        import httpx

        self.retry_seconds = retry_seconds
        self.environ = os.environ if environ is None else environ
        self.graphql_url = graphql_url or default_graphql_url(api_url)
        self._client = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "ralph-loop",
            },
            timeout=timeout,
            # Redirects are followed by `_send`: httpx would turn a redirected POST into a
            # GET, which "succeeds" without doing anything (a label never added).
            follow_redirects=False,
        )

    def __enter__(self) -> GitHubAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        what: str = "",
    ) -> Any:
        """The decoded JSON of `method path`, retrying 5xx, rate limits and dropped connections."""
        resp = self._call(method, path, json, params, what)
        return resp.json() if resp.content else None

    def paginate(self, path: str, params: Mapping[str, str], *, what: str = "") -> list[Any]:
        """Every item of a list endpoint, following its `Link: <...>; rel="next"` pages."""
        items: list[Any] = []
        url: str | None = path
        query: Mapping[str, str] | None = {**params, "per_page": "100"}
        for _ in range(MAX_PAGES):
            if url is None:
                break
            resp = self._call("GET", url, None, query, what or f"GET {path}")
            page = resp.json() if resp.content else []
            items += page if isinstance(page, list) else []
            # The next page's URL carries the whole query (GitHub's and our fake's do).
            url, query = resp.links.get("next", {}).get("url"), None
            if url is not None and not _same_origin(resp.url.join(url), resp.url):
                raise GitHubError(f"GitHub's next page of {what or path} is on another host")
        return items

    def _call(
        self, method: str, path: str, json: Any, params: Mapping[str, str] | None, what: str
    ) -> httpx.Response:
        from tenacity import Retrying, retry_if_exception_type

        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=self._out_of_time,
            wait=self._wait,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._send(method, path, json, params, what or f"{method} {path}")
        except _Transient as exc:
            if exc.rate_limited and exc.wait is not None:
                raise GitHubError(
                    f"GitHub rate limit on {method} {path}: asked to wait {exc.wait:.0f}s "
                    f"with {self.retry_seconds:.0f}s of retrying allowed; try again later"
                ) from None
            raise GitHubError(
                f"GitHub API kept failing on {method} {path} ({exc.what}) "
                f"for {self.retry_seconds:.0f}s; try again later"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def graphql(self, query: str, variables: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        """The `data` of a GraphQL request; GitHub's `errors` (sent with a 200) raise."""
        reply = self.request(
            "POST", self.graphql_url, json={"query": query, "variables": dict(variables)}, what=what
        )
        reply = reply if isinstance(reply, dict) else {}
        errors = [_error_text(e) for e in reply.get("errors") or []]
        if errors or not isinstance(reply.get("data"), dict):
            why = "; ".join(e for e in errors if e) or "no data in the reply"
            raise GitHubError(redact(f"GitHub could not {what} (GraphQL: {why})", self.environ))
        data: dict[str, Any] = reply["data"]
        return data

    def _send(
        self, method: str, path: str, body: Any, params: Mapping[str, str] | None, what: str
    ) -> httpx.Response:
        import httpx

        url: str | httpx.URL = path
        for _ in range(MAX_REDIRECTS + 1):
            try:
                resp = self._client.request(method, url, json=body, params=params)
            except httpx.TransportError as exc:
                raise _Transient(type(exc).__name__, None) from exc
            if resp.status_code not in _REDIRECTS or "location" not in resp.headers:
                break
            url, params = self._redirect(resp, method, what), None  # Location has the query
        else:
            raise GitHubError(f"GitHub redirected {what} more than {MAX_REDIRECTS} times")
        if resp.status_code < 400:
            return resp
        retry_after = _wait_hint(resp)
        if resp.status_code in (403, 429) and retry_after is not None:
            raise _Transient(f"{resp.status_code} rate limited", retry_after, rate_limited=True)
        if resp.status_code >= 500:
            raise _Transient(f"{resp.status_code} {resp.reason_phrase}", None)
        raise _api_error(resp, what, self.environ)

    def _redirect(self, resp: httpx.Response, method: str, what: str) -> httpx.URL:
        """Where to re-send a redirected request: the same method and body, or an error.

        A GET may follow any redirect. A request that changes something follows only 307 and
        308, which keep the method; 301-303 would make it a bodiless GET. `publish` reads the
        repository first (a GET, which follows a rename) and uses the name GitHub gives back,
        so a renamed repository's writes never meet a 301.
        """
        target = resp.url.join(resp.headers["location"])
        if not _same_origin(target, resp.url):  # the token goes along: only to the API's host
            raise GitHubError(
                f"GitHub redirected {what} to another host ({target.host}); it was not followed",
                resp.status_code,
            )
        if method not in ("GET", "HEAD") and resp.status_code not in (307, 308):
            raise GitHubError(
                f"GitHub could not {what}: it answered {resp.status_code} (moved to "
                f"{target.path}), and a {method} is never re-sent as a GET; the repository "
                f"was probably renamed or transferred: update the remote's URL or set "
                f"{REPO_OVERRIDE_VAR}=owner/name",
                resp.status_code,
            )
        return target

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.wait is not None:
            return exc.wait
        return float(min(0.5 * 2 ** (state.attempt_number - 1), 8.0))

    def _out_of_time(self, state: RetryCallState) -> bool:
        # Stop before a wait that would end past the budget, not after it.
        return (state.seconds_since_start or 0.0) + self._wait(state) > self.retry_seconds


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _wait_hint(resp: httpx.Response) -> float | None:
    """Seconds GitHub asks us to wait (retry-after, or an exhausted quota's reset), or None."""
    after = resp.headers.get("retry-after")
    if after is not None:
        return float(after) if after.strip().isdigit() else 60.0
    if resp.headers.get("x-ratelimit-remaining") == "0":
        reset = resp.headers.get("x-ratelimit-reset", "")
        return max(0.0, float(reset) - time.time()) + 1.0 if reset.isdigit() else 60.0
    if resp.status_code == 429 or (
        resp.status_code == 403 and "secondary rate limit" in resp.text.lower()
    ):
        return 60.0  # GitHub's advice when it gives no header: wait at least a minute
    return None


def _api_error(resp: httpx.Response, what: str, environ: Mapping[str, str]) -> GitHubError:
    try:
        data = resp.json()
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    message = str(data.get("message") or resp.reason_phrase)
    details = [_error_text(e) for e in data.get("errors") or [] if _error_text(e)]
    status = resp.status_code
    if status == 401:
        text = f"GitHub rejected the token (401 {message}): set a valid GITHUB_TOKEN or GH_TOKEN"
    elif status == 403:
        hint = (
            "allow it in Settings > Actions > General > Workflow permissions"
            if "not permitted to create" in message
            else "the token needs contents: write and pull-requests: write"
        )
        text = f"GitHub refused to {what} (403 {message}): {hint}"
    elif status == 404:
        text = (
            f"GitHub found nothing to {what} (404 {message}): check the repository name and "
            "that the token can see it"
        )
    elif status == 422:
        text = f"GitHub could not {what} (422 {message}): {'; '.join(details) or message}"
    else:
        text = f"GitHub could not {what} ({status} {message})"
    return GitHubError(redact(text, environ), status, details)


def _error_text(error: Any) -> str:
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return ""
    if error.get("message"):
        return str(error["message"])
    return " ".join(str(error[k]) for k in ("field", "code") if error.get(k))


# --- pull requests -------------------------------------------------------------------------


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


# --- the whole step ------------------------------------------------------------------------


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
    if not repo_path.is_dir() or _git(repo_path, "rev-parse", "--git-dir").returncode != 0:
        return None
    api_url = _api_url(env)
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
    api_url = _api_url(env)
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
