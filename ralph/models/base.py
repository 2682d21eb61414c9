"""The Model protocol and the plain data that flows through it.

Messages and content blocks use the Anthropic Messages API shapes as plain dicts
(`{"type": "text", "text": ...}`, `{"type": "tool_use", "id", "name", "input"}`,
`{"type": "tool_result", "tool_use_id", "content", "is_error"}`), whatever the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Block = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Billed tokens of one or more model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    @property
    def total(self) -> int:
        """All billed tokens: input, cache writes, cache reads and output."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


@dataclass
class ModelRequest:
    """One model call. `iteration` and `turn` are context for the backend, never sent."""

    system: str
    messages: list[Message]
    tools: list[dict[str, Any]]
    max_tokens: int
    iteration: int = 1
    turn: int = 1


@dataclass
class ModelResponse:
    """What one model call returned."""

    content: list[Block]
    stop_reason: str
    usage: Usage
    model: str
    latency_s: float = 0.0
    retries: int = 0
    request_id: str | None = None
    # Why the model refused (the API's stop_details: type, category, explanation), if it did.
    stop_details: dict[str, Any] | None = None
    # tool_use id -> why that call's input is not a usable JSON object (it is sent back as {}).
    invalid_inputs: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The concatenated text blocks of the reply."""
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[Block]:
        return [b for b in self.content if b.get("type") == "tool_use"]


@dataclass
class StreamEvent:
    """Progress while a call is in flight, for the live view.

    kind: "text" (data: the text delta), "retry" (data: seconds to wait, reason: why),
    "tool_input" (data: a partial JSON delta).
    """

    kind: str
    data: Any = None
    reason: str = ""


StreamCallback = Callable[[StreamEvent], None]


class ModelError(Exception):
    """A model call failed after any retries.

    `fatal` errors (authentication) end the run; others end the iteration as failed.
    """

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.status = status


class Model(Protocol):
    """A chat model with tool use. Implementations: anthropic, script."""

    name: str

    def complete(
        self, request: ModelRequest, on_event: StreamCallback | None = None
    ) -> ModelResponse: ...


@dataclass
class Pricing:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
        ) / 1_000_000
