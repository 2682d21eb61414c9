"""Codex as the agent of an iteration: `codex exec --json`, the prompt on stdin.

Its JSON lines: `thread.started`, `turn.started`, `item.started|updated|completed` (items
`agent_message`, `reasoning`, `command_execution` with `exit_code` and `aggregated_output`,
`file_change`, `mcp_tool_call`, `todo_list`, `error`), `turn.completed` with `usage`,
`turn.failed`, `error`. It reports no dollars: the cost comes from the price table (`pricing:`
for OpenAI models), unknown when the model has no price. The promise is judged on the last
`agent_message` of a completed turn only, never on command output.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..events import Bus
from ..models.base import Usage
from ..models.pricing import lookup
from ..run.agent import IterationOutcome
from .base import external_model
from .cli import CliAgent, check_version, copy_config, find_binary
from .process import text_of

if TYPE_CHECKING:
    from ..config import RunConfig

BIN_VARIABLE = "RALPH_CODEX_BIN"
MINIMUM = (0, 50, 0)  # `exec --json` with item events and turn usage
CREDENTIALS = ("OPENAI_API_KEY", "CODEX_API_KEY")
CONFIG_NAMES = ("config.toml", "AGENTS.md")
LOGIN_FILE = "auth.json"  # `codex login`, when no key variable is set
# Codex's own words for a usage limit, in its `error` / `turn.failed` events (not the
# model's text: an agent that writes about limits has not hit one).
LIMIT_TEXT = re.compile(r"you[’']ve hit your usage limit|usage_limit_reached", re.IGNORECASE)
AT_CLOCK = re.compile(r"try again at (\d{1,2}):(\d{2})\s*([AP]M)?", re.IGNORECASE)
IN_DELAY = re.compile(r"try again in (\d+)\s*(second|minute|hour|day)", re.IGNORECASE)
UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def codex_home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("CODEX_HOME") or Path(environ.get("HOME", "/")) / ".codex")


def read_config(environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        with open(codex_home(environ) / "config.toml", "rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def provider_key(config: Mapping[str, Any]) -> str | None:
    """The environment variable of the configured model provider's key, if it names one."""
    providers = config.get("model_providers")
    name = config.get("model_provider")
    if isinstance(providers, dict) and isinstance(providers.get(name), dict):
        key = providers[name].get("env_key")
        return str(key) if key else None
    return None


def credential_names(environ: Mapping[str, str]) -> tuple[str, ...]:
    key = provider_key(read_config(environ))
    return (*CREDENTIALS, key) if key and key not in CREDENTIALS else CREDENTIALS


def model_for_prices(cfg: RunConfig, environ: Mapping[str, str]) -> str | None:
    """The model Codex will use: --model, else its config.toml's `model`."""

    model = external_model(cfg) or read_config(environ).get("model")
    return str(model) if model else None


def preflight(environ: Mapping[str, str]) -> str:
    """The binary to run; UsageError (exit 2) when it is missing, too old or not logged in."""
    binary = find_binary("codex", BIN_VARIABLE, environ)
    check_version("codex", binary, MINIMUM, "install it with `npm install -g @openai/codex`")
    names = credential_names(environ)
    logged_in = (codex_home(environ) / LOGIN_FILE).is_file()
    if not logged_in and not any(environ.get(name) for name in names):
        raise UsageError(
            f"--agent codex: not logged in; set {' or '.join(names)}, or run `codex login`"
        )
    return binary


def reset_time(message: str, now: datetime | None = None) -> float:
    """When a usage limit resets, from Codex's message ("try again at 3:05 PM", local time,
    or "try again in 2 hours"); an hour from now when it does not say."""
    now = now or datetime.now().astimezone()
    if match := IN_DELAY.search(message):
        return now.timestamp() + int(match[1]) * UNIT_S[match[2].lower()]
    if match := AT_CLOCK.search(message):
        hour, minute = int(match[1]), int(match[2])
        if match[3]:
            hour = hour % 12 + (12 if match[3].upper() == "PM" else 0)
        at = now.replace(hour=hour % 24, minute=minute, second=0, microsecond=0)
        if at <= now - timedelta(minutes=1):
            at += timedelta(days=1)
        return at.timestamp()
    return now.timestamp() + 3600


class CodexAgent(CliAgent):
    name = "codex"
    credentials: tuple[str, ...] = CREDENTIALS

    def command(self, system: str, user_text: str) -> tuple[list[str], bytes | None]:
        # Codex's own sandbox is off: ours (bubblewrap) is the boundary, and nobody approves.
        argv = [self.binary, "exec", "--json", "--skip-git-repo-check"]
        argv += ["--dangerously-bypass-approvals-and-sandbox"]
        if self.model:
            argv += ["--model", self.model]
        # exec has no system-prompt option: the runner's rules lead the prompt.
        prompt = f"{system}\n\n---\n\n{user_text}"
        return [*argv, *self.extra_args, "-"], prompt.encode("utf-8")

    def configure(self, home: Path) -> dict[str, str]:
        target = home / ".codex"
        target.mkdir(exist_ok=True)
        names = credential_names(self.environ)
        self.credentials = names
        copied = list(CONFIG_NAMES)
        if not any(self.environ.get(name) for name in names):
            copied.append(LOGIN_FILE)
        copy_config(codex_home(self.environ), target, copied)
        return {"CODEX_HOME": str(target)}

    def start(self, out: IterationOutcome) -> CodexStream:
        model = self.model or str(read_config(self.environ).get("model") or "codex")
        return CodexStream(self.bus, out, model, self.pricing, self.max_turns)


class CodexStream:
    """Turns one iteration's `codex exec --json` lines into bus events and its outcome."""

    def __init__(
        self, bus: Bus, out: IterationOutcome, model: str, pricing: Mapping[str, Any], turns: int
    ) -> None:
        self.bus = bus
        self.out = out
        self.model = model
        self.pricing = pricing
        self.max_turns = turns
        self.started: dict[str, float] = {}
        self.last_message: str | None = None
        self.completed = False
        self.failure: str | None = None  # turn.failed's message
        self.last_error: str | None = None
        self.turn_limit: str | None = None  # --max-turns reached
        self.limited_until: float | None = None
        self.fatal: str | None = None
        self.began = time.monotonic()

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        raw = event.get("item")
        item: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if kind == "turn.started":
            self.bus.emit("model_started", turn=1)
        elif kind == "item.started":
            self._started(item)
        elif kind == "item.completed":
            self._completed(item)
        elif kind == "turn.completed":
            self._usage(event.get("usage") or {})
            self.completed = True
        elif kind in ("turn.failed", "error"):
            error = event.get("error") if kind == "turn.failed" else event
            message = str((error or {}).get("message") or kind)
            # An `error` may be a retry notice in a turn that still completes.
            self.last_error = message
            if kind == "turn.failed":
                self.failure = message
            if LIMIT_TEXT.search(message) and self.limited_until is None:
                self.limited_until = reset_time(message)
                self.bus.emit(
                    "usage_limit", level="warning", agent="codex", resets_at=self.limited_until
                )

    def _label(self, item: dict[str, Any]) -> tuple[str, Any] | None:
        kind = item.get("type")
        if kind == "command_execution":
            return "bash", {"command": str(item.get("command") or "")}
        if kind == "file_change":
            return "apply_patch", {"changes": item.get("changes")}
        if kind == "mcp_tool_call":
            return f"mcp:{item.get('server')}/{item.get('tool')}", item.get("arguments")
        if kind == "web_search":
            return "web_search", {"query": item.get("query")}
        return None

    def _started(self, item: dict[str, Any]) -> None:
        label = self._label(item)
        if label is None:
            return
        iid = str(item.get("id"))
        self.started[iid] = time.monotonic()
        self.bus.emit("tool_started", tool_use_id=iid, tool=label[0], input=label[1])

    def _completed(self, item: dict[str, Any]) -> None:
        kind = item.get("type")
        if kind == "agent_message":
            text = str(item.get("text") or "")
            self.bus.emit("model_text", text=text)
            self.last_message = text
            self.out.turns += 1
            return
        if kind == "error":
            self.bus.emit("warning", level="warning", message=f"codex: {item.get('message')}")
            return
        label = self._label(item)
        if label is None:
            return
        iid = str(item.get("id"))
        started = self.started.pop(iid, None)
        if started is None:  # a call with no item.started: show it starting now
            self.bus.emit("tool_started", tool_use_id=iid, tool=label[0], input=label[1])
            started = time.monotonic()
        code = item.get("exit_code")
        failed = item.get("status") == "failed"
        self.out.tool_calls += 1
        self.out.tool_errors += int(failed or (isinstance(code, int) and code != 0))
        output = item.get("aggregated_output")
        if output is None and kind == "mcp_tool_call":
            output = text_of((item.get("result") or {}).get("content"))
        self.bus.emit(
            "tool_finished",
            tool_use_id=iid,
            tool=label[0],
            input=label[1],
            is_error=failed,
            exit_code=code if isinstance(code, int) else None,
            duration_s=round(time.monotonic() - started, 4),
            output=str(output or ""),
        )
        if self.out.tool_calls >= self.max_turns:
            self.turn_limit = f"--max-turns {self.max_turns}: codex made that many tool calls"

    def _usage(self, data: dict[str, Any]) -> None:
        def count(key: str) -> int:
            value = data.get(key)
            return int(value) if isinstance(value, int | float) else 0

        cached, written = count("cached_input_tokens"), count("cache_write_input_tokens")
        usage = Usage(
            max(0, count("input_tokens") - cached - written),
            count("output_tokens"),
            written,
            cached,
        )
        prices = lookup(self.model, self.pricing)
        cost = prices.cost(usage) if prices else None
        self.out.usage += usage
        self.out.cost_usd = (
            None if self.out.cost_usd is None or cost is None else self.out.cost_usd + cost
        )
        self.bus.emit(
            "model_call",
            turn=max(1, self.out.turns),
            model=self.model,
            stop_reason="end_turn",
            usage=usage.as_dict(),
            cost_usd=cost,
            latency_s=round(time.monotonic() - self.began, 4),
            retries=0,
            request_id=None,
            request_summary="codex turn",
            response_summary=f"{self.out.tool_calls} tool calls",
        )

    def should_stop(self) -> str | None:
        """Codex has no turn limit of its own: --max-turns counts its tool calls."""
        return self.turn_limit

    def finish(self, returncode: int | None, stderr: str) -> None:
        out = self.out
        if self.limited_until is not None:
            out.outcome, out.error = "usage_limit", "usage limit reached"
            return
        if self.turn_limit and not self.completed:
            out.outcome, out.error = "max_turns", self.turn_limit
            return
        if self.completed:
            out.outcome, out.stop_reason = "ended", "end_turn"
            out.final_text = self.last_message or None
            return
        out.outcome = "failed"
        detail = (
            self.failure
            or self.last_error
            or " ".join(stderr.split())[-300:]
            or f"exit code {returncode}"
        )
        out.error = f"codex: {detail}"
        if re.search(r"\b401\b|unauthorized|invalid api key", detail, re.IGNORECASE):
            self.fatal = f"codex: authentication failed: {detail}"


AGENT = CodexAgent
