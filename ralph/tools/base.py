"""The tool interface the agent receives, and the set that dispatches to tools."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class ToolResult:
    """What a tool call produced; `content` is what the model reads."""

    content: str
    is_error: bool = False
    exit_code: int | None = None


class Tool(Protocol):
    """One tool the model may call."""

    name: str

    def definition(self) -> dict[str, Any]:
        """The tool entry for the Messages API `tools` list."""
        ...

    def run(self, tool_input: dict[str, Any]) -> ToolResult: ...

    def close(self) -> None:
        """Release processes or files the tool holds (end of iteration)."""
        ...


class ToolSet:
    """Dispatches tool calls by name; unknown names and crashes become error results."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools = {t.name: t for t in tools}

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition() for t in self._tools.values()]

    def run(self, name: str, tool_input: Any) -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return ToolResult(f"Error: unknown tool {name!r}; the tools are: {known}.", True)
        if not isinstance(tool_input, dict):
            return ToolResult(
                f"Error: the input of {name} must be a JSON object, got {type(tool_input).__name__}.",
                True,
            )
        try:
            return tool.run(tool_input)
        except Exception as exc:  # a tool crash is the model's to read, not the run's end
            return ToolResult(f"Error: {name} failed: {type(exc).__name__}: {exc}", True)

    def close(self) -> None:
        for tool in self._tools.values():
            tool.close()
