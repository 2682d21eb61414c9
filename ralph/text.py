"""Text for every view: control characters removed, one-line and head-and-tail clipping,
durations, token counts, costs, and how a tool call is named and how it ended.

The bottom layer of the views: it imports nothing of ralph's, so any module may use it.
"""

from __future__ import annotations

import re
from typing import Any

# ANSI escape sequences and other C0/C1 control characters except newline and tab: tool output
# (pytest colours, progress bars with \r) must never reach the terminal raw.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def clean(text: object) -> str:
    """`text` as a string without escape sequences or control characters (keeps \\n and \\t)."""
    return _CONTROL.sub("", str(text).replace("\r\n", "\n"))


def short(text: object, width: int = 80) -> str:
    """One line of at most `width` characters: whitespace collapsed, ellipsized."""
    line = " ".join(clean(text).split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def last_line(text: str) -> str:
    """The last non-empty line of `text` (what a compact view shows of streamed text)."""
    for line in reversed(clean(text).splitlines()):
        if line.strip():
            return line.strip()
    return ""


def fmt_duration(seconds: float | None) -> str:
    """`4s`, `2m05s`, `1h02m`: short wall-clock durations."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = int(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_tokens(count: int | None) -> str:
    """`950`, `12.3k`, `1.20M`."""
    if count is None:
        return "-"
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.2f}M"


def fmt_cost(cost: float | None) -> str:
    """`$0.0123` below a dollar, `$4.20` above; `?` when the price is unknown."""
    if cost is None:
        return "?"
    return f"${cost:.4f}" if cost < 1 else f"${cost:.2f}"


def usage_total(usage: Any) -> int:
    """All billed tokens of a usage dict (input, output, cache writes and reads)."""
    if not isinstance(usage, dict):
        return 0
    return sum(int(v or 0) for v in usage.values() if isinstance(v, int | float))


def tool_label(tool: str, tool_input: Any, width: int = 60) -> str:
    """`bash: pytest -q`, `edit: create notes/a.md`: what a tool call does, on one line."""
    data = tool_input if isinstance(tool_input, dict) else {}
    if tool == "bash":
        if data.get("restart"):
            return "bash: (restart)"
        return "bash: " + short(data.get("command", ""), width)
    if tool == "str_replace_based_edit_tool":
        return short(f"edit: {data.get('command', '?')} {data.get('path', '')}", width + 6)
    return short(f"{tool}: {' '.join(f'{k}={v}' for k, v in data.items())}", width + 6)


def tool_failed(data: dict[str, Any]) -> bool:
    """Whether a tool call failed: the tool reported an error, or its command exited non-zero.

    The bash tool reports a command that ran and failed as `is_error: false` with its exit
    code (the tool worked), so the exit code alone must mark the call as failed.
    """
    return bool(data.get("is_error")) or data.get("exit_code") not in (None, 0)


def tool_outcome(data: dict[str, Any]) -> str:
    """`ok`, `exit 1`, `error`: how a tool call ended."""
    code = data.get("exit_code")
    if code not in (None, 0):
        return f"exit {code}"
    return "error" if data.get("is_error") else "ok"


def clip(text: str, keep: int) -> str:
    """`text` cut to about `keep` characters, keeping its head and tail (errors live there)."""
    if len(text) <= keep:
        return text
    head, tail = keep * 3 // 4, keep // 4
    return f"{text[:head]}\n[… {len(text) - head - tail} characters cut …]\n{text[-tail:]}"


def clip_all(value: Any, keep: int) -> Any:
    """`value` with every string in it (in dicts and lists too) clipped to `keep` characters."""
    if isinstance(value, str):
        return clip(value, keep)
    if isinstance(value, dict):
        return {k: clip_all(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [clip_all(v, keep) for v in value]
    return value
