"""The agent's tools: a sandboxed `bash` and a path-confined text editor."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Tool, ToolResult, ToolSet
from .bash import BashTool
from .editor import EditorTool
from .probe import choose_sandbox
from .sandbox import make_sandbox

if TYPE_CHECKING:
    from ..config import RunConfig

__all__ = ["Tool", "ToolResult", "ToolSet", "make_toolset"]


def make_toolset(cfg: RunConfig, root: Path) -> tuple[ToolSet, list[str]]:
    """The tools for repository `root`, and warnings to show the user (e.g. sandbox off).

    Raises UsageError when the sandbox or network setting cannot be honoured.
    """

    kind, warnings = choose_sandbox(cfg.sandbox, cfg.network, root)
    sandbox = make_sandbox(kind, root, cfg.network, cfg.env)
    bash = BashTool(sandbox, timeout=cfg.bash_timeout, output_cap=cfg.output_cap)
    editor = EditorTool(root, output_cap=cfg.output_cap)
    return ToolSet([bash, editor]), warnings
