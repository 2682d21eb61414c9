"""A streamed Messages API reply put together from its raw events, as plain dicts.

`anthropic.py` feeds each server-sent event of one attempt to a `Reply` and turns it into a
`ModelResponse` at the end; tool inputs are parsed here (`parse_tool_input`), so a malformed
one is reported to the agent instead of losing the reply.
"""

from __future__ import annotations

import json
from typing import Any

from .base import Block, ModelResponse, StreamCallback, StreamEvent, Usage


class Reply:
    """A streamed message put together from the API's raw events, as plain dicts.

    A tool input is parsed when its block ends; one that is not a JSON object (bad JSON, a
    lone surrogate escape, an array) is kept as `{}` and explained in `invalid` by id."""

    def __init__(self, on_event: StreamCallback | None = None) -> None:
        self.on_event = on_event
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, Block] = {}
        self.partial_json: dict[int, str] = {}
        self.invalid: dict[str, str] = {}  # tool_use id -> why its input is unusable
        self.stop_reason: str | None = None
        self.stop_details: dict[str, Any] | None = None
        self.tokens: dict[str, int] = {}

    def feed(self, event: Any) -> None:
        """Take one raw stream event."""
        kind = event.type
        if kind == "message_start":
            self.message = event.message.model_dump(mode="json", exclude_none=True)
            self._count(self.message.get("usage") or {})
        elif kind == "content_block_start":
            self.blocks[event.index] = _wire(event.content_block)
        elif kind == "content_block_delta":
            self._delta(event.index, event.delta)
        elif kind == "content_block_stop":
            self._end_block(event.index)
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason
            details = getattr(event.delta, "stop_details", None)
            if details is not None:
                self.stop_details = details.model_dump(mode="json", exclude_none=True)
            if event.usage is not None:
                self._count(event.usage.model_dump(mode="json", exclude_none=True))

    def _count(self, usage: dict[str, Any]) -> None:
        # Counts on message_delta are running totals: they replace, and an absent one keeps
        # the message_start value.
        for key in _USAGE_KEYS:
            if isinstance(usage.get(key), int):
                self.tokens[key] = usage[key]

    def _delta(self, index: int, delta: Any) -> None:
        block = self.blocks.setdefault(index, {"type": "text", "text": ""})
        kind = delta.type
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.text
            if self.on_event is not None:
                self.on_event(StreamEvent("text", delta.text))
        elif kind == "input_json_delta":
            self.partial_json[index] = self.partial_json.get(index, "") + delta.partial_json
            if self.on_event is not None:
                self.on_event(StreamEvent("tool_input", delta.partial_json))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.thinking
        elif kind == "signature_delta":
            block["signature"] = delta.signature
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(_wire(delta.citation))

    def _end_block(self, index: int) -> None:
        raw = self.partial_json.pop(index, None)
        block = self.blocks.get(index)
        if raw is None or block is None:
            return
        value, problem = parse_tool_input(raw)
        if problem is None:
            block["input"] = value
        else:
            block["input"] = {}  # the API takes an object back; the error result explains
            self.invalid[str(block.get("id"))] = problem

    def finish(self) -> None:
        """End blocks the stream left open (a stop event lost on the way)."""
        for index in list(self.partial_json):
            self._end_block(index)

    def usage(self) -> Usage:
        return Usage(**{key: self.tokens.get(key, 0) for key in _USAGE_KEYS})

    def response(
        self, name: str, latency: float, retries: int, request_id: str | None
    ) -> ModelResponse:
        return ModelResponse(
            content=[_block(self.blocks[i]) for i in sorted(self.blocks)],
            stop_reason=str(self.stop_reason),
            usage=self.usage(),
            model=str(self.message.get("model") or name),
            latency_s=latency,
            retries=retries,
            request_id=request_id,
            stop_details=self.stop_details,
            invalid_inputs=dict(self.invalid),
        )


_USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def parse_tool_input(raw: str) -> tuple[dict[str, Any], str | None]:
    """A streamed tool input as an object, or ({}, why it is not a usable JSON object)."""
    if not raw.strip():
        return {}, None  # a tool without parameters
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return {}, f"not valid JSON ({exc})"
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        return {}, f"not a JSON object but {'null' if value is None else kind}"
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return {}, "not valid JSON (a lone surrogate: \\ud800-\\udfff escapes come in pairs)"
    return value, None


def _wire(model: Any) -> dict[str, Any]:
    """An SDK object as the API sent it: the fields it sent, nulls included, and none the SDK
    filled in; the form the SDK sends a response object back in. Dropping nulls would drop
    fields the API requires back (a citation's `title` or `document_title` may be null)."""
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return dumped


def _block(block: Block) -> Block:
    """A reply's content block in the API's request shape: text and tool_use rebuilt (no
    `citations: null`, the parsed input), any other block exactly as the API sent it."""
    if block.get("type") == "text":
        out: Block = {"type": "text", "text": block.get("text", "")}
        if block.get("citations"):
            out["citations"] = block["citations"]
        return out
    if block.get("type") == "tool_use":
        out = {
            "type": "tool_use",
            "id": block.get("id"),
            "name": block.get("name"),
            "input": block.get("input", {}),
        }
        # Request fields the API may send on a call (programmatic tool calling, toolsets).
        out.update({k: block[k] for k in ("caller", "toolset_name") if block.get(k) is not None})
        return out
    return block
