"""A small GitHub REST client: auth headers, bounded retries, redirects, pagination, errors.

`GitHubAPI` retries 5xx answers, dropped connections and rate limits (honouring
`retry-after` and an exhausted quota's reset) within a time budget, follows redirects only
to the API's own host and never re-sends a write as a GET, follows `Link: rel="next"` pages,
and turns every other failure into a one-line `GitHubError` naming the fix. GraphQL requests
(the draft state of a pull request) go through the same client.

httpx is imported lazily (off start-up), as is tenacity (only a publishing run retries).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RalphError
from ..redact import redact

if TYPE_CHECKING:
    import httpx
    from tenacity import RetryCallState

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MAX_REDIRECTS = 5
MAX_PAGES = 10  # of 100 pull requests: one branch never has that many open
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
REPO_OVERRIDE_VAR = "RALPH_GITHUB_REPO"


class GitHubError(RalphError):
    """A push or GitHub API failure, with a one-line message for the user."""

    def __init__(
        self, message: str, status: int | None = None, details: Sequence[str] = ()
    ) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status
        self.details = list(details)


def api_url_from(environ: Mapping[str, str]) -> str:
    """The REST root: GITHUB_API_URL (GitHub Actions sets it; Enterprise), else github.com's."""
    return (environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")


def default_graphql_url(api_url: str) -> str:
    """GitHub's GraphQL endpoint for a REST root: `/api/v3` becomes `/api/graphql` (Enterprise)."""
    root = api_url.rstrip("/")
    if root.endswith("/api/v3"):
        return root.removesuffix("/v3") + "/graphql"
    return root + "/graphql"


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
        import httpx  # lazy: ~0.1 s of imports, needed only by a run that publishes

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
        from tenacity import Retrying, retry_if_exception_type  # lazy: only publishing retries

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
        import httpx  # lazy, as in __init__ (already loaded by then)

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
