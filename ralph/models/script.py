"""The scripted model: replays a YAML file of turns, for offline demos and tests.

Format (documented in README, "Scripted model"):

    model: script            # optional: the model name reported (and priced) for each call
    iterations:              # one entry per iteration; past the end the last one repeats
      - turns:
          - text: "Let me look at the code."
            tools:           # tool calls, in order: {tool_name: input}
              - bash: {command: "ls"}
              - str_replace_based_edit_tool: {command: view, path: app.py}
          - text: "Fixed it. <promise>DONE</promise>"
      - turns: ["A turn that only says this."]

A turn may also set `stop_reason` (default: tool_use when it has tools, else end_turn),
`usage` (token counts; default: estimated from the request and reply sizes) and `sleep`
(seconds to wait before replying, like a slow model). The turn played is chosen from the
request itself (its iteration, and how many assistant messages it already holds), so a
resumed or retried run replays the same turns.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..layers import load_yaml_mapping
from .base import Block, ModelRequest, ModelResponse, StreamCallback, StreamEvent, Usage

_STOP_REASONS = {
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
}
_USAGE_KEYS = {
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
}


@dataclass
class ScriptTurn:
    text: str
    tools: list[tuple[str, dict[str, Any]]]
    stop_reason: str
    usage: dict[str, int] | None
    sleep: float


def _turn(raw: Any, where: str) -> ScriptTurn:
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a turn is text or a mapping with text/tools")
    unknown = set(raw) - {"text", "tools", "stop_reason", "usage", "sleep"}
    if unknown:
        raise UsageError(f"{where}: unknown turn keys {sorted(unknown)}")
    tools: list[tuple[str, dict[str, Any]]] = []
    for call in raw.get("tools") or []:
        if not (isinstance(call, dict) and len(call) == 1):
            raise UsageError(f"{where}: each tool call is a mapping {{tool_name: input}}")
        ((name, tool_input),) = call.items()
        tools.append((str(name), tool_input if tool_input is not None else {}))
    stop = str(raw.get("stop_reason") or ("tool_use" if tools else "end_turn"))
    if stop not in _STOP_REASONS:
        raise UsageError(f"{where}: stop_reason {stop!r} is not one of {sorted(_STOP_REASONS)}")
    usage = raw.get("usage")
    if usage is not None and (not isinstance(usage, dict) or set(usage) - _USAGE_KEYS):
        raise UsageError(f"{where}: usage takes {sorted(_USAGE_KEYS)}")
    return ScriptTurn(
        str(raw.get("text") or ""),
        tools,
        stop,
        {k: int(v) for k, v in usage.items()} if usage else None,
        float(raw.get("sleep") or 0),
    )


def load_script(path: Path) -> tuple[str, list[list[ScriptTurn]]]:
    """Read and validate a script file: (model name, turns per iteration)."""

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot read model script {path}: {exc.strerror}; check --model script:PATH"
        ) from None
    data = load_yaml_mapping(text, str(path))
    iterations = data.get("iterations")
    if not isinstance(iterations, list) or not iterations:
        raise UsageError(f"{path}: a model script needs a non-empty `iterations:` list")
    parsed: list[list[ScriptTurn]] = []
    for i, entry in enumerate(iterations, 1):
        turns = entry.get("turns") if isinstance(entry, dict) else entry
        if not isinstance(turns, list) or not turns:
            raise UsageError(f"{path}: iteration {i} needs a non-empty list of turns")
        parsed.append([_turn(t, f"{path}: iteration {i} turn {j}") for j, t in enumerate(turns, 1)])
    return str(data.get("model") or "script"), parsed


class ScriptModel:
    """A Model that replays recorded turns instead of calling an API."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name, self.iterations = load_script(path)

    def complete(
        self, request: ModelRequest, on_event: StreamCallback | None = None
    ) -> ModelResponse:
        started = time.monotonic()
        turns = self.iterations[min(request.iteration, len(self.iterations)) - 1]
        index = sum(1 for m in request.messages if m.get("role") == "assistant")
        if index >= len(turns):
            turn = ScriptTurn(
                "(the script has no more turns for this iteration)", [], "end_turn", None, 0
            )
        else:
            turn = turns[index]
        if turn.sleep:
            time.sleep(turn.sleep)
        content: list[Block] = []
        if turn.text:
            content.append({"type": "text", "text": turn.text})
            if on_event:
                on_event(StreamEvent("text", turn.text))
        for k, (name, tool_input) in enumerate(turn.tools, 1):
            tool_id = f"toolu_script_{request.iteration}_{index + 1}_{k}"
            content.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
        if turn.usage is not None:
            usage = Usage(**turn.usage)
        else:
            sent = (
                len(request.system)
                + len(json.dumps(request.messages))
                + len(json.dumps(request.tools))
            )
            usage = Usage(input_tokens=sent // 4, output_tokens=len(json.dumps(content)) // 4 + 1)
        return ModelResponse(
            content, turn.stop_reason, usage, self.name, latency_s=time.monotonic() - started
        )
