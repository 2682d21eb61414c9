"""Claude Code as the agent of an iteration: `claude -p --output-format stream-json`.

Its JSON lines: `system` (init), `assistant` (one line per content block, all with the same
message id and usage; `parent_tool_use_id` set inside a subagent), `user` (tool results),
`rate_limit_event` (`rate_limit_info.status` rejected = a subscription usage limit, with
`resetsAt`), and a last `result` (`subtype`, `is_error`, `result`, `num_turns`,
`total_cost_usd`, `usage`). The promise is judged on `result.result` only: the final
top-level message, never tool output or a subagent's words.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..events import Bus
from ..models.base import Usage
from ..models.pricing import lookup
from ..run.agent import IterationOutcome
from .cli import CliAgent, check_version, copy_config, find_binary, usage_of
from .process import add_cost, text_of

BIN_VARIABLE = "RALPH_CLAUDE_BIN"
MINIMUM = (2, 0, 0)  # stream-json with rate_limit_event, --max-turns, --append-system-prompt
CREDENTIALS = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")
# What of ~/.claude the agent gets: settings and instructions, never history or other logins.
CONFIG_NAMES = ("settings.json", "CLAUDE.md", "agents", "commands", "skills")
LOGIN_FILE = ".credentials.json"  # `claude /login` (a subscription), when no variable is set
# Sent with every run: no telemetry, update checks or side requests from an unattended run.
QUIET = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    # The sandbox is the boundary: Claude Code refuses to skip permissions as root otherwise.
    "IS_SANDBOX": "1",
}
# Claude Code's tool names whose calls are shown like ours.
TOOL_NAMES = {"Bash": "bash"}


def config_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("CLAUDE_CONFIG_DIR") or Path(environ.get("HOME", "/")) / ".claude")


def preflight(environ: Mapping[str, str]) -> str:
    """The binary to run; UsageError (exit 2) when it is missing, too old or not logged in."""
    binary = find_binary("claude", BIN_VARIABLE, environ)
    fix = "install it with `npm install -g @anthropic-ai/claude-code`"
    check_version("claude-code", binary, MINIMUM, fix)
    logged_in = (config_dir(environ) / LOGIN_FILE).is_file()
    if not logged_in and not any(environ.get(name) for name in CREDENTIALS):
        raise UsageError(
            "--agent claude-code: not logged in; set ANTHROPIC_API_KEY, or "
            "CLAUDE_CODE_OAUTH_TOKEN (from `claude setup-token`) for a subscription"
        )
    return binary


class ClaudeCodeAgent(CliAgent):
    name = "claude-code"
    credentials = CREDENTIALS
    settings = ("ANTHROPIC_MODEL",)

    def command(self, system: str, user_text: str) -> tuple[list[str], bytes | None]:
        argv = [self.binary, "-p", "--output-format", "stream-json", "--verbose"]
        # The API's own stream events too: live text, and each call's final usage (the
        # `assistant` lines carry the usage of message_start, 1 output token).
        argv += ["--include-partial-messages"]
        # Non-interactive: nobody answers a permission prompt; the sandbox is the boundary.
        argv += ["--dangerously-skip-permissions", "--max-turns", str(self.max_turns)]
        argv += ["--append-system-prompt", system]
        if self.model:
            argv += ["--model", self.model]
        return [*argv, *self.extra_args], user_text.encode("utf-8")

    def configure(self, home: Path) -> dict[str, str]:
        source = config_dir(self.environ)
        target = home / ".claude"
        target.mkdir(exist_ok=True)
        names = list(CONFIG_NAMES)
        if not any(self.environ.get(name) for name in CREDENTIALS):
            names.append(LOGIN_FILE)
        copy_config(source, target, names)
        return dict(QUIET)

    def start(self, out: IterationOutcome) -> ClaudeStream:
        return ClaudeStream(self.bus, out, self.pricing)


@dataclass
class _Message:
    id: str
    model: str
    top_level: bool
    usage: dict[str, Any]
    content: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class ClaudeStream:
    """Turns one iteration's stream-json lines into bus events and the iteration's outcome."""

    def __init__(self, bus: Bus, out: IterationOutcome, pricing: Mapping[str, Any]) -> None:
        self.bus = bus
        self.out = out
        self.pricing = pricing
        self.pending: _Message | None = None
        self.tools: dict[str, tuple[str, Any, float]] = {}  # id -> (name, input, started)
        self.last_text: str | None = None  # the last top-level assistant text
        self.result: dict[str, Any] | None = None
        self.limited_until: float | None = None
        self.fatal: str | None = None
        self.model = ""
        self.called = time.monotonic()

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            self._flush()
            self._tool_results(event)
        elif kind == "stream_event":
            self._stream_event(event.get("event") or {}, event.get("parent_tool_use_id") is None)
        elif kind == "rate_limit_event":
            self._rate_limit(event.get("rate_limit_info") or {})
        elif kind == "result":
            self._flush()
            self.result = event
        elif kind == "system" and event.get("subtype") == "init":
            self.model = str(event.get("model") or "")

    @property
    def pending_usage(self) -> Usage:
        """The usage of the call in progress (its input is known from message_start): a
        budget can stop a call while it streams."""
        return usage_of(self.pending.usage) if self.pending is not None else Usage()

    def _stream_event(self, data: dict[str, Any], top_level: bool) -> None:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            mid = str(message.get("id") or "")
            if self.pending is not None and self.pending.id != mid:
                self._flush()
            if self.pending is None:
                self._begin(mid, str(message.get("model") or self.model), top_level)
            self._merge_usage(message.get("usage"))
        elif kind == "content_block_delta" and top_level:
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                self.bus.emit("model_text", text=str(delta.get("text") or ""))
        elif kind == "message_delta":
            self._merge_usage(data.get("usage"))
        elif kind == "message_stop":
            # The call is complete: its tools start now (their time is the tools', and the
            # live view shows what runs), not when their results arrive.
            self._flush()

    def _begin(self, mid: str, model: str, top_level: bool) -> None:
        if top_level:
            self.bus.emit("model_started", turn=self.out.turns + 1)
        self.pending = _Message(mid, model, top_level, {}, started=self.called)

    def _merge_usage(self, usage: Any) -> None:
        """A call's usage so far: the counts of message_start, raised by message_delta."""
        if self.pending is None or not isinstance(usage, dict):
            return
        for key, value in usage.items():
            if isinstance(value, int | float) and value >= (self.pending.usage.get(key) or 0):
                self.pending.usage[key] = value

    def _assistant(self, event: dict[str, Any]) -> None:
        message = event.get("message") or {}
        mid = str(message.get("id") or "")
        if self.pending is not None and self.pending.id != mid:
            self._flush()
        if message.get("model") == "<synthetic>":  # Claude Code's own note (an API error)
            self.last_text = text_of(message.get("content")) or self.last_text
            return
        if self.pending is None:
            top_level = event.get("parent_tool_use_id") is None
            self._begin(mid, str(message.get("model") or self.model), top_level)
        self._merge_usage(message.get("usage"))
        assert self.pending is not None
        blocks = message.get("content") or []
        self.pending.content += [b for b in blocks if isinstance(b, dict)]

    def _flush(self) -> None:
        """One model call is complete: count it, then show its tool calls."""
        msg, self.pending = self.pending, None
        if msg is None:
            return
        usage = usage_of(msg.usage)
        prices = lookup(msg.model, self.pricing)
        cost = prices.cost(usage) if prices else None
        self.out.usage += usage
        self.out.cost_usd = add_cost(self.out.cost_usd, cost)
        uses = [b for b in msg.content if b.get("type") == "tool_use"]
        text = "".join(str(b.get("text") or "") for b in msg.content if b.get("type") == "text")
        if msg.top_level:
            self.out.turns += 1
            if text.strip():
                self.last_text = text
        self.bus.emit(
            "model_call",
            turn=self.out.turns,
            model=msg.model,
            stop_reason="tool_use" if uses else "end_turn",
            usage=usage.as_dict(),
            cost_usd=cost,
            latency_s=round(time.monotonic() - msg.started, 4),
            retries=0,
            request_id=None,
            request_summary="claude-code" + ("" if msg.top_level else " subagent"),
            response_summary=_summary(text, uses),
        )
        for use in uses:
            name = TOOL_NAMES.get(str(use.get("name")), str(use.get("name")))
            self.tools[str(use.get("id"))] = (name, use.get("input"), time.monotonic())
            self.bus.emit(
                "tool_started", tool_use_id=use.get("id"), tool=name, input=use.get("input")
            )
        self.called = time.monotonic()

    def _tool_results(self, event: dict[str, Any]) -> None:
        content = (event.get("message") or {}).get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            use_id = str(block.get("tool_use_id"))
            name, tool_input, started = self.tools.pop(use_id, ("?", None, time.monotonic()))
            is_error = bool(block.get("is_error"))
            self.out.tool_calls += 1
            self.out.tool_errors += int(is_error)
            self.bus.emit(
                "tool_finished",
                tool_use_id=use_id,
                tool=name,
                input=tool_input,
                is_error=is_error,
                exit_code=None,
                duration_s=round(time.monotonic() - started, 4),
                output=text_of(block.get("content")),
            )
        self.called = time.monotonic()

    def _rate_limit(self, info: dict[str, Any]) -> None:
        if info.get("status") != "rejected":
            return
        resets = info.get("resetsAt")
        # No reset time given: try again in an hour (the wait bound still applies).
        self.limited_until = (
            float(resets) if isinstance(resets, int | float) else time.time() + 3600
        )
        self.bus.emit(
            "usage_limit",
            level="warning",
            agent="claude-code",
            limit=info.get("rateLimitType"),
            resets_at=self.limited_until,
        )

    def finish(self, returncode: int | None, stderr: str) -> None:
        """How the iteration ended, from the `result` line (none: the CLI died or was killed)."""
        self._flush()
        out, result = self.out, self.result
        if self.limited_until is not None:
            out.outcome, out.error = "usage_limit", "usage limit reached"
            out.final_text = None
            return
        if result is None:
            out.outcome = "failed"
            detail = " ".join(stderr.split())[-300:] or f"exit code {returncode}"
            out.error = f"claude exited without a result ({detail})"
            return
        # Usage is the sum of the calls shown (each call's final counts), so the journal's
        # calls add up to the iteration; the cost is the CLI's own when it gives one.
        cost = result.get("total_cost_usd")
        if isinstance(cost, int | float) and (cost > 0 or out.usage.total == 0):
            out.cost_usd = float(cost)
        subtype = result.get("subtype")
        text = result.get("result")
        if subtype == "success" and not result.get("is_error"):
            out.outcome = "ended"
            out.final_text = text if isinstance(text, str) and text else None
            out.stop_reason = "end_turn"
        elif subtype == "error_max_turns":
            out.outcome = "max_turns"
        else:
            out.outcome = "failed"
            status = result.get("api_error_status")
            message = text if isinstance(text, str) and text else (self.last_text or str(subtype))
            out.error = f"claude: {message}"
            if status in (401, 403):
                self.fatal = f"claude-code: authentication failed ({status}): {message}"


def _summary(text: str, uses: list[dict[str, Any]]) -> str:
    parts = []
    if text.strip():
        flat = " ".join(text.split())
        parts.append(f"text {flat[:160]!r}")
    if uses:
        parts.append("tools " + ", ".join(f"{u.get('name')}({u.get('id')})" for u in uses)[:300])
    return "; ".join(parts) or "empty"


AGENT = ClaudeCodeAgent
