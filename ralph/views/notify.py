"""Notifications: tell someone when a run ends, a guard trips or a usage limit makes it wait.

A target is an incoming-webhook URL (Slack and Discord get their own message shapes, any other
URL the JSON body documented in README "Overnight runs"; `slack:URL`, `discord:URL` or
`json:URL` choose the shape for a URL on another host, such as Mattermost's Slack-compatible
hooks) or `cmd:COMMAND`, a local command that gets the JSON on standard input. Sending is bounded (a few
tries within NOTIFY_BUDGET_S) and never fails the run: a failure becomes a
`notification_failed` warning event, which the journal and the report keep.

A target's URL is a secret (a webhook URL is its own credential): only `describe_target()`'s
scheme-and-host form is ever shown or journaled.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..events import Event

NOTIFY_TRIES = 3
NOTIFY_BUDGET_S = 20.0  # all tries of one message to one target, waits included
REQUEST_TIMEOUT_S = 5.0
CMD_TIMEOUT_S = 30.0
SCHEMA = "ralph.notification/1"

# Events worth a message: the end of a run, a guard that stopped it, a wait on a usage limit.
END, GUARD, WAIT = "run_ended", "guard_tripped", "usage_limit_wait"


class NotifyError(Exception):
    """One target could not be told; the message says why (never the URL)."""


_SHAPES = ("slack", "discord", "json")


def _split(target: str) -> tuple[str | None, str]:
    """An explicit shape prefix (`slack:URL`) and the URL."""
    shape, sep, rest = target.partition(":")
    if sep and shape in _SHAPES and rest.startswith(("http://", "https://")):
        return shape, rest
    return None, target


def describe_target(target: str) -> str:
    """A target as it may be shown: `cmd:` and the program's name, or scheme://host/…."""
    if target.startswith("cmd:"):
        try:
            words = shlex.split(target[4:]) or ["?"]
        except ValueError:
            words = ["?"]
        return f"cmd:{Path(words[0]).name}"
    shape, url = _split(target)
    parts = urlsplit(url)
    return f"{shape + ':' if shape else ''}{parts.scheme}://{parts.hostname or '?'}/…"


def check_target(target: str) -> str | None:
    """Why a target cannot be used, or None."""
    if target.startswith("cmd:"):
        try:
            words = shlex.split(target[4:])
        except ValueError as exc:
            return f"{describe_target(target)}: {exc}"
        return None if words else "cmd: needs a command after it (cmd:notify-send)"
    parts = urlsplit(_split(target)[1])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "a notification target is an http(s) URL, slack:URL, discord:URL or cmd:COMMAND"
    return None


def kind_of(target: str) -> str:
    """slack, discord, command or json: which message shape the target gets."""
    if target.startswith("cmd:"):
        return "command"
    shape, url = _split(target)
    if shape:
        return shape
    host = (urlsplit(url).hostname or "").lower()
    path = urlsplit(url).path
    if host == "hooks.slack.com" or host.endswith(".slack.com"):
        return "slack"
    if host in ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com") and (
        path.startswith("/api/webhooks/")
    ):
        return "discord"
    return "json"


def _money(value: Any) -> str:
    return "unknown" if value is None else f"${float(value):.2f}"


def headline(payload: Mapping[str, Any]) -> str:
    """One line a person reads first."""
    run = payload.get("run_id", "?")
    if payload["event"] == END:
        return (
            f"ralph run {run} {payload.get('status')}: {payload.get('reason')} "
            f"({payload.get('iterations')} iterations, {_money(payload.get('cost_usd'))})"
        )
    if payload["event"] == GUARD:
        return f"ralph run {run}: guard {payload.get('guard')} tripped: {payload.get('reason')}"
    return (
        f"ralph run {run} is waiting for a usage limit to reset "
        f"({payload.get('reason')}; until {payload.get('until') or 'unknown'})"
    )


def _details(payload: Mapping[str, Any]) -> list[str]:
    lines = []
    for label, key in (("branch", "branch"), ("pull request", "pr_url"), ("report", "report")):
        if payload.get(key):
            lines.append(f"{label}: {payload[key]}")
    return lines


def _inert(text: str) -> str:
    """Chat services turn `@here`, `<!channel>` and `<@id>` into pings: the agent's words and
    a repository's names must not page anyone."""
    return text.replace("@", "@\u200b").replace("<", "‹").replace(">", "›")


def body_for(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body a target of this kind is sent."""
    if kind == "json" or kind == "command":
        return dict(payload)
    text = "\n".join([headline(payload), *_details(payload)])
    if kind == "slack":
        return {"text": _inert(text)}
    # Discord: content is at most 2,000 characters; no mention is ever parsed.
    return {"content": _inert(text)[:2000], "allowed_mentions": {"parse": []}}


@dataclass
class Sender:
    """Delivers one body to one target, a few times at most, within a time budget."""

    post: Callable[[str, dict[str, Any]], int] | None = None  # url, body -> HTTP status
    run: Callable[[list[str], bytes], int] | None = None  # argv, stdin -> exit code
    sleep: Callable[[float], None] = time.sleep
    tries: int = NOTIFY_TRIES
    budget_s: float = NOTIFY_BUDGET_S

    def send(self, target: str, body: dict[str, Any]) -> None:
        started, last = time.monotonic(), ""
        for attempt in range(1, self.tries + 1):
            try:
                self._once(target, body)
                return
            except NotifyError as exc:
                last = str(exc)
                if "(permanent)" in last:
                    break
            wait = min(2.0 ** (attempt - 1), 8.0)
            if attempt == self.tries or time.monotonic() - started + wait > self.budget_s:
                break
            self.sleep(wait)
        raise NotifyError(f"{describe_target(target)}: {last}")

    def _once(self, target: str, body: dict[str, Any]) -> None:
        if target.startswith("cmd:"):
            code = (self.run or _run_command)(shlex.split(target[4:]), json.dumps(body).encode())
            if code != 0:
                raise NotifyError(f"the command exited {code}")
            return
        status = (self.post or _post)(_split(target)[1], body)
        if 200 <= status < 300:
            return
        # A redirect or a client error will not change on a retry (a moved hook is not followed:
        # the POST must not turn into a GET elsewhere); 408, 429 and 5xx may.
        permanent = 300 <= status < 500 and status not in (408, 429)
        raise NotifyError(f"HTTP {status}" + (" (permanent)" if permanent else ""))


def _post(url: str, body: dict[str, Any]) -> int:
    import httpx  # off the start-up path: only a run with --notify posts

    try:
        # No redirects: a webhook that moves must not turn the POST into something else.
        resp = httpx.post(url, json=body, timeout=REQUEST_TIMEOUT_S, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise NotifyError(type(exc).__name__) from None
    return resp.status_code


def _run_command(argv: list[str], stdin: bytes) -> int:
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, timeout=CMD_TIMEOUT_S, check=False
        ).returncode
    except FileNotFoundError:
        raise NotifyError(f"{argv[0]}: command not found (permanent)") from None
    except subprocess.TimeoutExpired:
        raise NotifyError(f"the command ran over {CMD_TIMEOUT_S:.0f}s") from None


@dataclass
class Notifier:
    """An event observer that sends notifications to the operator's targets.

    The end-of-run message waits for the pull request when the run publishes one (`expect_pr`),
    so it can carry the link; `emit` reports a failed target as a warning event.
    """

    targets: Sequence[str]
    emit: Callable[..., Any]
    report: str = ""  # the report's path, for the end message
    expect_pr: bool = False
    sender: Sender = field(default_factory=Sender)
    sent: list[dict[str, Any]] = field(default_factory=list)  # payloads sent (for the report)
    _base: dict[str, Any] = field(default_factory=dict)
    _ended: dict[str, Any] | None = None

    def handle(self, event: Event) -> None:
        data = event.data
        if event.name == "run_started":
            self._base = {
                "run_id": event.run_id,
                "prompt": data.get("prompt_name"),
                "repo": data.get("repo"),
                "branch": data.get("branch"),
                "worktree": data.get("worktree"),
            }
        elif event.name == GUARD:
            self._send(GUARD, event, guard=data.get("guard"), reason=data.get("message"))
        elif event.name == WAIT:
            self._send(WAIT, event, reason=data.get("reason"), until=data.get("until"))
        elif event.name == END:
            self._ended = {
                "status": data.get("status"),
                "exit_code": data.get("exit_code"),
                "reason": data.get("reason"),
                "iterations": data.get("iterations"),
                "cost_usd": data.get("cost_usd"),
                "usage": data.get("usage"),
                "duration_s": data.get("duration_s"),
                "resume": data.get("resume"),
                "report": self.report or None,
                "pr_url": None,
                "_event": event,
            }
            if not self.expect_pr or data.get("status") == "interrupted":
                self._send_end()
        elif event.name in ("pull_request", "pull_request_failed") and self._ended is not None:
            self._ended["pr_url"] = data.get("url")
            self._send_end()

    def close(self) -> None:
        self._send_end()  # --pr but no pull request event: the run still ended

    def _send_end(self) -> None:
        if self._ended is None:
            return
        ended, self._ended = self._ended, None
        event = ended.pop("_event")
        self._send(END, event, **ended)

    def _send(self, name: str, event: Event, **fields: Any) -> None:
        payload = {
            "schema": SCHEMA,
            "event": name,
            **self._base,
            "run_id": event.run_id,
            "iteration": event.iteration,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.ts)),
            **fields,
        }
        self.sent.append(payload)
        for target in self.targets:
            try:
                self.sender.send(target, body_for(kind_of(target), payload))
            except NotifyError as exc:
                self.emit(
                    "notification_failed",
                    level="warning",
                    target=describe_target(target),
                    message=f"could not notify {exc}",
                )
