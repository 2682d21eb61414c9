"""A local stand-in for the GitHub REST API (and git over HTTP) for tests.

`FakeGitHub` runs a threaded stdlib HTTP server on 127.0.0.1 with a free port. It serves the
endpoints ralph uses (read a repository and a branch, list/create/update pull requests, add
and list labels, and the GraphQL mutations that mark a pull request ready or draft) from
in-memory state, records every request, and can inject failures. As GitHub does, it filters
pull requests by `head`, `base` and `state`, pages lists (`per_page`, `page`, a `Link`
header), serves a repository under `/repositories/ID/...` too, and answers requests to a
renamed repository's old name with a 301 to that path. Given `repos_root`, it also
serves the bare repositories `{repos_root}/{owner}/{repo}.git` over smart HTTP through
`git http-backend`, checking the token as GitHub does, and validates a new pull request's head
against them.

    with FakeGitHub(token="ghp_...", repos_root=tmp_path / "remotes") as gh:
        env = {"GITHUB_API_URL": gh.url, "GITHUB_TOKEN": "ghp_..."}
        gh.fail("POST", r"/pulls$", 500)          # the next POST to a pulls URL fails once
        gh.rename("octo/app", "octo/app2")        # /repos/octo/app/... now answers 301
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

BODY_LIMIT = 65_536


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any = None
    text: str = ""  # the body as text (empty for git's binary bodies)


@dataclass
class Failure:
    """An injected response for the next `times` requests matching `method` and `pattern`."""

    method: str
    pattern: str
    status: int
    json: Any
    headers: dict[str, str]
    times: int


@dataclass
class Repo:
    """A repository's in-memory state."""

    owner: str
    name: str
    default_branch: str = "main"
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    id: int = 1


class FakeGitHub:
    """The fake server; use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        owner: str = "octo",
        repo: str = "app",
        *,
        default_branch: str = "main",
        token: str | None = None,
        repos_root: Path | None = None,
        permissions: dict[str, bool] | None = None,
    ) -> None:
        self.token = token
        self.repos_root = repos_root
        # What GET /repos says the token's user may do; {} leaves the key out, as for an app's
        # installation token.
        self.permissions = {"push": True, "pull": True} if permissions is None else permissions
        self.repos: dict[str, Repo] = {f"{owner}/{repo}": Repo(owner, repo, default_branch)}
        self.moved: dict[str, Repo] = {}  # old full name -> the repository it now is
        self.page_size: int | None = None  # caps per_page, to make a test's lists page
        self.drafts = True  # False: a plan without draft pull requests (GitHub answers 422)
        self.requests: list[Recorded] = []
        self.failures: list[Failure] = []
        self.lock = threading.Lock()
        self.next_number = 1
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeGitHub:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test helpers ---------------------------------------------------------------------

    def fail(
        self,
        method: str,
        pattern: str,
        status: int,
        json: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests whose path matches `pattern` with `status`."""
        body = json if json is not None else {"message": f"injected {status}"}
        self.failures.append(Failure(method, pattern, status, body, headers or {}, times))

    def calls(self, method: str, pattern: str = "") -> list[Recorded]:
        """Recorded requests with this method whose path matches `pattern`."""
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def pulls(self, full_name: str | None = None) -> list[dict[str, Any]]:
        """The pull requests of a repository (the first one by default)."""
        repo = self.repos[full_name] if full_name else next(iter(self.repos.values()))
        return list(repo.pulls.values())

    def rename(self, old: str, new: str) -> None:
        """Rename (or transfer) a repository: its old name answers 301, as GitHub's does."""
        repo = self.repos.pop(old)
        if self.repos_root is not None and self.bare_repo(repo.owner, repo.name).exists():
            # Git keeps working at the old address (GitHub redirects it too): a link.
            before = self.bare_repo(repo.owner, repo.name)
            after = self.bare_repo(*new.split("/"))
            after.parent.mkdir(parents=True, exist_ok=True)
            before.rename(after)
            before.symlink_to(after)
        repo.owner, repo.name = new.split("/")
        self.repos[new] = repo
        self.moved[old] = repo

    def open_pull(self, head: str, base: str, *, draft: bool = False, title: str = "theirs") -> int:
        """Open a pull request from `head` into `base` directly (one a person made)."""
        repo = next(iter(self.repos.values()))
        with self.lock:
            status, _, body = self._create(
                repo, {"head": head, "base": base, "title": title, "draft": draft}, check=False
            )
        assert status == 201, body
        return int(json.loads(body)["number"])

    def bare_repo(self, owner: str, name: str) -> Path:
        """Where the bare repository served for owner/name lives."""
        assert self.repos_root is not None, "FakeGitHub(repos_root=...) serves repositories"
        return self.repos_root / owner / f"{name}.git"

    # --- request handling (called from server threads) ----------------------------------

    def handle(self, req: Recorded, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(req)
            for failure in self.failures:
                if failure.method == req.method and re.search(failure.pattern, req.path):
                    failure.times -= 1
                    if failure.times <= 0:
                        self.failures.remove(failure)
                    return _json(failure.status, failure.json, failure.headers)
        if ".git/" in req.path:
            return self._git(req, raw)
        if self.token and req.headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"message": "Bad credentials"})
        with self.lock:
            if req.path == "/graphql" and req.method == "POST":
                return self._graphql(req.json or {})
            return self._api(req)

    def _graphql(self, data: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """The two draft-state mutations, answered as GitHub does (errors come with a 200)."""
        query = str(data.get("query") or "")
        node = str((data.get("variables") or {}).get("id") or "")
        found = re.search(r"\b(markPullRequestReadyForReview|convertPullRequestToDraft)\(", query)
        if not found or "pullRequestId: $id" not in query:
            return _json(200, {"errors": [{"message": "unsupported query in FakeGitHub"}]})
        pulls = [p for r in self.repos.values() for p in r.pulls.values()]
        pr = next((p for p in pulls if p["node_id"] == node), None)
        if pr is None:
            message = f"Could not resolve to a node with the global id of '{node}'"
            return _json(200, {"data": None, "errors": [{"type": "NOT_FOUND", "message": message}]})
        pr["draft"] = found[1] == "convertPullRequestToDraft"
        return _json(200, {"data": {found[1]: {"pullRequest": {"isDraft": pr["draft"]}}}})

    def _api(self, req: Recorded) -> tuple[int, dict[str, str], bytes]:
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)?", req.path)
        by_id = re.fullmatch(r"/repositories/(\d+)(/.*)?", req.path)
        if m and f"{m[1]}/{m[2]}" in self.moved:
            # GitHub's answer for an old name, whatever the method (the spec lists 301 for
            # the write operations too): the same request under the repository's id.
            where = f"{self.url}/repositories/{self.moved[f'{m[1]}/{m[2]}'].id}{m[3] or ''}"
            if req.query:
                where += "?" + urlencode(req.query)
            return _json(301, {"message": "Moved Permanently", "url": where}, {"Location": where})
        if by_id:
            repo = next((r for r in self.repos.values() if r.id == int(by_id[1])), None)
            rest = by_id[2] or ""
        else:
            repo = self.repos.get(f"{m[1]}/{m[2]}") if m else None
            rest = (m[3] or "") if m else ""
        if repo is None:
            return _json(404, {"message": "Not Found"})
        key = (req.method, re.sub(r"\d+", "N", rest))
        number = int(re.sub(r"\D", "", rest) or 0)
        if key == ("GET", ""):
            return _json(200, self._repo_json(repo))
        if req.method == "GET" and rest.startswith("/branches/"):
            name = unquote(rest.removeprefix("/branches/"))
            if name == repo.default_branch or (
                self.repos_root is not None and self._sha(repo, name) is not None
            ):
                return _json(200, {"name": name})
            return _json(404, {"message": "Branch not found"})
        if key == ("GET", "/pulls"):
            head, base = req.query.get("head", ""), req.query.get("base", "")
            state = req.query.get("state", "open")
            found = [
                p
                for p in repo.pulls.values()
                if (not head or p["head"]["label"] == head)
                and (not base or p["base"]["ref"] == base)
                and state in ("all", p["state"])
            ]
            return self._page(req, found)
        if key == ("POST", "/pulls"):
            return self._create(repo, req.json or {})
        if key == ("PATCH", "/pulls/N") and number in repo.pulls:
            return self._update(repo, repo.pulls[number], req.json or {})
        if key == ("GET", "/issues/N/labels") and number in repo.pulls:
            return _json(200, repo.pulls[number]["labels"])
        if key == ("POST", "/issues/N/labels") and number in repo.pulls:
            names = (req.json or {}).get("labels") or []
            labels = repo.pulls[number]["labels"]
            labels += [{"name": n} for n in names if {"name": n} not in labels]
            return _json(200, labels)
        return _json(404, {"message": "Not Found"})

    def _page(self, req: Recorded, items: list[Any]) -> tuple[int, dict[str, str], bytes]:
        """One page of `items` as GitHub pages lists: per_page (30, at most 100), page, Link."""
        size = min(int(req.query.get("per_page") or 30), 100, self.page_size or 100)
        page = int(req.query.get("page") or 1)
        last = max(1, -(-len(items) // size))
        links = []
        for rel, number in (("next", page + 1), ("last", last)):
            if page < last:
                query = urlencode({**req.query, "page": str(number)})
                links.append(f'<{self.url}{req.path}?{query}>; rel="{rel}"')
        headers = {"Link": ", ".join(links)} if links else {}
        return _json(200, items[(page - 1) * size : page * size], headers)

    def _update(
        self, repo: Repo, pr: dict[str, Any], data: dict[str, Any]
    ) -> tuple[int, dict[str, str], bytes]:
        """PATCH a pull request: title, body, state and base (REST cannot change draft)."""
        if len(data.get("body") or "") > BODY_LIMIT:
            return _invalid("body is too long (maximum is 65536 characters)")
        base = data.get("base")
        if base and base != pr["base"]["ref"]:
            if self.repos_root is not None and self._sha(repo, str(base)) is None:
                return _json(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
                    },
                )
            if self._open_with(repo, pr["head"]["label"], str(base)):
                return _invalid(f"A pull request already exists for base branch '{base}'")
            pr["base"] = {"ref": base}
        pr.update({k: data[k] for k in ("title", "body", "state") if k in data})
        return _json(200, pr)

    def _open_with(self, repo: Repo, label: str, base: str) -> bool:
        return any(
            p["head"]["label"] == label and p["base"]["ref"] == base and p["state"] == "open"
            for p in repo.pulls.values()
        )

    def _create(
        self, repo: Repo, data: dict[str, Any], check: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        missing = [k for k in ("head", "base", "title") if not data.get(k)]
        if missing:
            return _json(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {"resource": "PullRequest", "field": k, "code": "missing_field"}
                        for k in missing
                    ],
                },
            )
        head = str(data["head"]).split(":")[-1]
        label = f"{repo.owner}:{head}"
        if data.get("draft") and not self.drafts:
            return _invalid("Draft pull requests are not supported in this repository.")
        if len(data.get("body") or "") > BODY_LIMIT:
            return _invalid("body is too long (maximum is 65536 characters)")
        # One open pull request per head and base; the same head may target other bases.
        if self._open_with(repo, label, str(data["base"])):
            return _invalid(f"A pull request already exists for {label}.")
        if check and self.repos_root is not None:
            problem = self._check_branches(repo, head, str(data["base"]))
            if problem:
                return _json(422, {"message": "Validation Failed", "errors": [problem]})
        number, self.next_number = self.next_number, self.next_number + 1
        pr = {
            "number": number,
            "node_id": f"PR_kwFake{number:04d}",
            "html_url": f"{self.url}/{repo.owner}/{repo.name}/pull/{number}",
            "state": "open",
            "title": data["title"],
            "body": data.get("body") or "",
            "draft": bool(data.get("draft")),
            "head": {"ref": head, "label": label},
            "base": {"ref": data["base"]},
            "labels": [],
        }
        repo.pulls[number] = pr
        return _json(201, pr)

    def _sha(self, repo: Repo, ref: str) -> str | None:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}"],
            cwd=self.bare_repo(repo.owner, repo.name),
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip() or None

    def _check_branches(self, repo: Repo, head: str, base: str) -> dict[str, str] | None:
        bare = self.bare_repo(repo.owner, repo.name)
        if self._sha(repo, head) is None:
            return {"resource": "PullRequest", "field": "head", "code": "invalid"}
        if self._sha(repo, base) is None:
            return {"resource": "PullRequest", "field": "base", "code": "invalid"}
        count = subprocess.run(
            ["git", "rev-list", "--count", f"refs/heads/{base}..refs/heads/{head}"],
            cwd=bare,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if count == "0":
            return {
                "resource": "PullRequest",
                "code": "custom",
                "message": f"No commits between {base} and {head}",
            }
        return None

    def _repo_json(self, repo: Repo) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": repo.id,
            "full_name": f"{repo.owner}/{repo.name}",
            "default_branch": repo.default_branch,
            "html_url": f"{self.url}/{repo.owner}/{repo.name}",
        }
        if self.permissions:
            data["permissions"] = dict(self.permissions)
        return data

    def _git(self, req: Recorded, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Smart HTTP through `git http-backend`, with GitHub's token-as-password check."""
        if self.repos_root is None:
            return 404, {}, b"no repositories served\n"
        if self.token:
            expected = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            if (
                req.headers.get("authorization", "") != f"basic {expected}"
                and req.headers.get("authorization", "") != f"Basic {expected}"
            ):
                return 401, {"WWW-Authenticate": 'Basic realm="GitHub"'}, b"denied\n"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.repos_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",  # lets http-backend accept pushes
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": req.method,
            "PATH_INFO": req.path,
            "QUERY_STRING": "&".join(f"{k}={v}" for k, v in req.query.items()),
            "CONTENT_TYPE": req.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(raw)),
        }
        for name in ("content-encoding", "git-protocol"):
            if name in req.headers:
                env["HTTP_" + name.upper().replace("-", "_")] = req.headers[name]
        proc = subprocess.run(
            ["git", "http-backend"], input=raw, env=env, capture_output=True, check=False
        )
        head, _, body = proc.stdout.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        return status, headers, body


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        fake: FakeGitHub = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        raw = self._body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        is_json = "json" in headers.get("content-type", "")
        text = raw.decode("utf-8", "replace") if is_json else ""
        req = Recorded(
            self.command,
            parts.path,
            {k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers,
            json.loads(raw) if is_json and raw else None,
            text,
        )
        status, out_headers, body = fake.handle(req, raw)
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


def _json(
    status: int, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(data).encode(),
    )


def _invalid(message: str) -> tuple[int, dict[str, str], bytes]:
    error = {"resource": "PullRequest", "code": "custom", "message": message}
    return _json(422, {"message": "Validation Failed", "errors": [error]})
