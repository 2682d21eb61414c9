"""One iteration: a fresh conversation between the model and the tools until the turn ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Interrupted
from ..events import Bus
from ..models.base import (
    Block,
    Message,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    StreamEvent,
    Usage,
)
from ..redact import redact
from ..tools.base import ToolResult, ToolSet
from .signals import STOP

CONTINUE_AFTER_MAX_TOKENS = (
    "[ralph] Your reply was cut off at the output token limit. Continue where you left off; "
    "keep tool calls and messages shorter."
)


@dataclass
class IterationOutcome:
    """How an iteration's conversation ended.

    outcome: ended (the model ended its turn) · max_turns · refused · context_exceeded ·
    failed (an API error after retries) · stopped (a budget ran out mid-iteration).
    """

    outcome: str
    final_text: str | None = None  # text of the message that ended the turn, if any
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    error: str | None = None
    stop_reason: str | None = None
    tool_calls: int = 0
    tool_errors: int = 0


class IterationCut(Exception):
    """An iteration that ended before its agent could return: a signal (`Interrupted`) or a
    fatal model error (`ModelError`, e.g. authentication) as its `__cause__`, carrying what
    the iteration did until then (`outcome`: its calls were billed, so they are recorded)."""

    def __init__(self, outcome: IterationOutcome) -> None:
        super().__init__(outcome.error or outcome.outcome)
        self.outcome = outcome


# Stop reasons that end the iteration without a final message.
_NOT_ENDED = ("refusal", "model_context_window_exceeded")


def _sendable(blocks: list[Block]) -> list[Block]:
    """A reply's blocks that can go back to the API, which rejects empty or blank text blocks."""
    return [b for b in blocks if b.get("type") != "text" or str(b.get("text") or "").strip()]


def _add_cost(total: float | None, cost: float | None) -> float | None:
    return None if total is None or cost is None else total + cost


def _clip(text: str, limit: int) -> str:
    """`text` on one line, redacted, then cut to `limit` characters (redacted first: a secret
    cut in two would no longer be recognised)."""

    flat = " ".join(redact(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def request_summary(request: ModelRequest) -> str:
    """A short line about what a model call sent, for the journal."""
    last = request.messages[-1] if request.messages else {}
    content = last.get("content")
    blocks = content if isinstance(content, list) else []
    results = [str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"]
    chars = sum(len(str(m.get("content", ""))) for m in request.messages)
    parts = [f"turn {request.turn}", f"{len(request.messages)} messages"]
    if results:
        parts.append(f"tool results {_clip(', '.join(results), 200)}")
    parts.append(f"{chars} chars")
    return "; ".join(parts)


def response_summary(response: ModelResponse) -> str:
    """A short, redacted line about what a model call returned, for the journal."""
    parts = [f"stop {response.stop_reason}"]
    if response.text.strip():
        parts.append(f"text {_clip(response.text, 160)!r}")
    uses = [f"{u.get('name')}({u.get('id')})" for u in response.tool_uses]
    if uses:
        parts.append(f"tools {_clip(', '.join(uses), 300)}")
    if response.stop_details:
        parts.append(f"details {_clip(str(response.stop_details), 200)}")
    return "; ".join(parts)


def refusal_reason(response: ModelResponse) -> str:
    """Why the model refused, as far as the API says: its category, explanation and text."""
    details = response.stop_details or {}
    reason = "the model refused to continue"
    if details.get("category"):
        reason += f" (category: {details['category']})"
    if details.get("explanation"):
        reason += f": {_clip(str(details['explanation']), 300)}"
    if response.text.strip():
        reason += f"; it said: {_clip(response.text, 300)}"
    return reason


class Agent:
    """Runs one iteration's model/tool conversation; knows nothing of loops or git."""

    def __init__(
        self,
        model: Model,
        tools: ToolSet,
        bus: Bus,
        *,
        max_turns: int = 50,
        max_output_tokens: int = 16000,
        cost_of: Callable[[ModelResponse], float | None] = lambda r: None,
        stop_check: Callable[[Usage, float | None], str | None] = lambda u, c: None,
    ) -> None:
        self.model = model
        self.tools = tools
        self.bus = bus
        self.max_turns = max_turns
        self.max_output_tokens = max_output_tokens
        self.cost_of = cost_of
        self.stop_check = stop_check  # the default of iterate()'s stop_check
        self.messages: list[Message] = []  # the iteration's conversation so far

    def _on_stream(self, event: StreamEvent) -> None:
        if event.kind == "text":
            self.bus.emit("model_text", text=event.data)
        elif event.kind == "retry":
            self.bus.emit("model_retry", level="warning", wait_s=event.data, reason=event.reason)

    def _call(self, request: ModelRequest) -> ModelResponse:
        self.bus.emit("model_started", turn=request.turn)
        with STOP.interruptible():
            response = self.model.complete(request, self._on_stream)
        self.bus.emit(
            "model_call",
            turn=request.turn,
            model=response.model,
            stop_reason=response.stop_reason,
            usage=response.usage.as_dict(),
            cost_usd=self.cost_of(response),
            latency_s=round(response.latency_s, 4),
            retries=response.retries,
            request_id=response.request_id,
            request_summary=request_summary(request),
            response_summary=response_summary(response),
        )
        return response

    def _run_tools(
        self, uses: list[Block], out: IterationOutcome, invalid: dict[str, str] | None = None
    ) -> list[Block]:
        """Run the calls in order; a call whose input was unusable JSON gets an error result."""
        results: list[Block] = []
        for use in uses:
            name, tool_input = use.get("name", ""), use.get("input")
            self.bus.emit("tool_started", tool_use_id=use.get("id"), tool=name, input=tool_input)
            started = time.monotonic()
            problem = (invalid or {}).get(str(use.get("id")))
            if problem is not None:
                result = ToolResult(
                    f"Error: the input of this {name} call was {problem}, so nothing ran. "
                    "Call the tool again with its input as one JSON object.",
                    True,
                )
            else:
                with STOP.interruptible():
                    result = self.tools.run(name, tool_input)
            out.tool_calls += 1
            out.tool_errors += int(result.is_error)
            self.bus.emit(
                "tool_finished",
                tool_use_id=use.get("id"),
                tool=name,
                input=tool_input,
                is_error=result.is_error,
                exit_code=result.exit_code,
                duration_s=round(time.monotonic() - started, 4),
                output=result.content,
            )
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": use.get("id"),
                "content": result.content or "(no output)",
            }
            if result.is_error:
                block["is_error"] = True
            results.append(block)
        return results

    def iterate(
        self,
        system: str,
        user_text: str,
        iteration: int,
        stop_check: Callable[[Usage, float | None], str | None] | None = None,
    ) -> IterationOutcome:
        """Run a fresh conversation until the model ends its turn (or a limit ends it);
        `stop_check` is called after every model call, and a reason it gives stops it.

        Raises IterationCut, with the iteration so far, on a signal or a fatal model error
        (authentication): either ends the run.
        """
        self.messages = []
        out = IterationOutcome("max_turns")
        try:
            try:
                return self._converse(
                    system, user_text, iteration, out, stop_check or self.stop_check
                )
            finally:
                self.tools.close()  # the next iteration's shell starts fresh at the repo root
                # What the model saw and said, however the iteration ended (the journal keeps
                # it, redacted, for `ralph show RUN --iteration N`).
                self.bus.emit(
                    "conversation",
                    system=system,
                    tools=[t.get("name") for t in self.tools.definitions()],
                    messages=self.messages,
                )
        except (Interrupted, ModelError) as exc:
            raise IterationCut(out) from exc

    def _converse(
        self,
        system: str,
        user_text: str,
        iteration: int,
        out: IterationOutcome,
        stop_check: Callable[[Usage, float | None], str | None],
    ) -> IterationOutcome:
        messages = self.messages
        messages.append({"role": "user", "content": [{"type": "text", "text": user_text}]})
        tool_defs = self.tools.definitions()
        for turn in range(1, self.max_turns + 1):
            request = ModelRequest(
                system, messages, tool_defs, self.max_output_tokens, iteration, turn
            )
            try:
                response = self._call(request)
            except ModelError as exc:
                self.bus.emit(
                    "model_error",
                    level="error",
                    message=exc.message,
                    status=exc.status,
                    fatal=exc.fatal,
                )
                out.outcome, out.error = "failed", exc.message
                if exc.fatal:
                    raise  # as IterationCut, with this iteration's calls so far
                return out
            out.turns = turn
            out.usage += response.usage
            out.cost_usd = _add_cost(out.cost_usd, self.cost_of(response))
            out.stop_reason = response.stop_reason
            if response.stop_reason == "max_tokens":
                # Keep what was said, drop a tool call that may be cut off, ask to go on.
                kept = [b for b in _sendable(response.content) if b.get("type") != "tool_use"]
                if kept:
                    messages.append({"role": "assistant", "content": kept})
                messages.append(
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": CONTINUE_AFTER_MAX_TOKENS}],
                    }
                )
            elif content := _sendable(response.content):
                messages.append({"role": "assistant", "content": content})
            runs_tools = response.stop_reason == "tool_use" and bool(response.tool_uses)
            goes_on = runs_tools or response.stop_reason in ("max_tokens", "pause_turn")
            if not goes_on and response.stop_reason not in _NOT_ENDED:
                # The turn ended: its final text is recorded before a budget check, so a
                # promise made in the call that spent the budget still counts.
                out.final_text = response.text or None
            reason = stop_check(out.usage, out.cost_usd)
            if reason:
                out.outcome, out.error = "stopped", reason
                return out
            if runs_tools:
                results = self._run_tools(response.tool_uses, out, response.invalid_inputs)
                messages.append({"role": "user", "content": results})
            elif goes_on:
                continue
            elif response.stop_reason == "refusal":
                out.outcome, out.error = "refused", refusal_reason(response)
                return out
            elif response.stop_reason == "model_context_window_exceeded":
                out.outcome = "context_exceeded"
                return out
            else:  # end_turn, stop_sequence, or tool_use without tool calls
                out.outcome = "ended"
                return out
        return out
