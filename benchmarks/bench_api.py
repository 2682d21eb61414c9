"""Figures 4 and 5: what the real Anthropic backend sends, and how much of it the prompt cache
serves; the real SDK over HTTP to the local Messages API server (tests/fakeapi.py)."""

from __future__ import annotations

import json
from typing import Any

from common import ROOT, Row, Settings, environment, silenced, verdict

REQUEST_TARGET = 4096  # bytes of system prompt + tool definitions
CACHE_TARGET = 0.85
CALLS = 20  # model calls in the measured iteration
# Sonnet's smallest cacheable prefix, in tokens: shorter breakpoints are not cached.
MIN_CACHE_TOKENS = 1024
CLAUDE_CODE = (76_000, 17_000)  # bytes and tokens per request (design notes)
# Tokens the API adds for the schema-less Anthropic tools and tool use (Anthropic's tool-use
# docs): the tool-use system prompt, bash_20250124 and text_editor_20250728.
SERVER_SIDE_TOKENS = 346 + 245 + 700


def _compact(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def recorded_calls(calls: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(text, tool, input) of the first `calls` tool calls of the demo's recorded security
    session, one per model call as agents usually make them."""
    import yaml

    session = yaml.safe_load((ROOT / "ralph" / "demo" / "session.yaml").read_text())
    out: list[tuple[str, str, dict[str, Any]]] = []
    for iteration in session["iterations"]:
        for turn in iteration["turns"]:
            if not isinstance(turn, dict):
                continue
            said = str(turn.get("text") or "")
            for call in turn.get("tools") or []:
                ((name, tool_input),) = call.items()
                out.append((said, name, tool_input))
                said = ""
    if len(out) < calls:
        raise RuntimeError(f"the demo session has {len(out)} tool calls, {calls} needed")
    return out[:calls]


def _replies(calls: int) -> list[Any]:
    from tests.fakeapi import Message, text, tool_use

    replies: list[Any] = []
    for said, name, tool_input in recorded_calls(calls - 1):
        blocks = [text(said)] if said else []
        replies.append(Message([*blocks, tool_use(name, tool_input)]))
    replies.append(Message("Fixed the injection and recorded the audit; more to do next time."))
    return replies


def _cache_share(usages: list[dict[str, int]]) -> tuple[float, int, int]:
    read = sum(u["cache_read_input_tokens"] for u in usages)
    total = sum(
        u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"]
        for u in usages
    )
    return (read / total if total else 0.0), read, total


def api_figures(s: Settings) -> list[Row]:
    """Figures 4 and 5 from two iterations of 20 model calls over the demo's vulnerable app."""
    from ralph.config import DEFAULT_MODEL
    from ralph.demo_run import demo_config, prepare_repo
    from ralph.run.runner import execute
    from tests.fakeapi import FakeAPI

    iterations = 1 if s.quick else 2  # the second shows the cache as the next iteration finds it
    repo = prepare_repo(s.work / "api" / "vulnerable-app")
    cfg = demo_config(repo, sandbox="none")
    cfg.model, cfg.max_iterations, cfg.stall_limit, cfg.quiet = DEFAULT_MODEL, iterations, 0, True
    with FakeAPI(auto_cache=True, min_cache_tokens=MIN_CACHE_TOKENS) as api:
        for _ in range(iterations):
            api.add(*_replies(CALLS))
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "bench-key"}
        with environment(**env), silenced():
            result = execute(cfg)
        requests, usages = list(api.requests), list(api.usages)
    if result.iterations != iterations or len(usages) != iterations * CALLS:
        raise RuntimeError(
            f"expected {iterations} iterations of {CALLS} calls, got {result.iterations} and "
            f"{len(usages)} calls ({result.status}: {result.reason})"
        )
    first = requests[0].json
    fixed = _compact(first.get("system")) + _compact(first.get("tools"))
    whole = len(requests[0].body)
    cc_bytes, cc_tokens = CLAUDE_CODE
    cold, read, total = _cache_share(usages[:CALLS])
    warm = _cache_share(usages[CALLS:])[0] if iterations > 1 else None
    next_one = f"; the next iteration {warm:.2f}" if warm is not None else ""
    return [
        Row(
            4,
            "request: system prompt + tool definitions",
            fixed,
            "B",
            f"< {REQUEST_TARGET:,} B",
            verdict(fixed < REQUEST_TARGET),
            f"~{fixed // 4:,} tokens (bytes/4); Claude Code ~{cc_bytes // 1000} KB / "
            f"~{cc_tokens // 1000}k tokens, {cc_bytes / fixed:.0f}x more. The API adds "
            f"~{SERVER_SIDE_TOKENS:,} tokens of its own for the bash and editor tool types",
            {"tokens_estimate": fixed // 4},
        ),
        Row(
            4,
            "request: whole first request (security prompt)",
            whole,
            "B",
            "info",
            "INFO",
            f"~{whole // 4:,} tokens; Claude Code ~{cc_bytes // 1000} KB "
            f"({cc_bytes / whole:.1f}x), mini-swe-agent ~3.3 KB (design notes)",
            {"tokens_estimate": whole // 4},
        ),
        Row(
            5,
            f"cache reads / input tokens, {CALLS} calls",
            cold,
            "ratio",
            f">= {CACHE_TARGET:.2f}",
            verdict(cold >= CACHE_TARGET),
            f"first iteration, cold cache: {read:,} of {total:,} input tokens read from the "
            f"cache{next_one} (prefixes under {MIN_CACHE_TOKENS} tokens are not cached, as "
            "with Sonnet)",
            {"warm_next_iteration": warm, "cache_read_tokens": read, "input_tokens": total},
        ),
    ]
