"""What every agent of an iteration is, whichever it is: the loop's view of it
(IterationAgent), the budget check it calls, and the model name an agent CLI is given."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..config import DEFAULT_MODEL
from ..models import is_script
from ..models.base import ModelError

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..models.base import Model, ModelRequest, StreamCallback, Usage
    from ..run.agent import IterationOutcome

AGENTS = ("builtin", "claude-code", "codex")
EXTERNAL = ("claude-code", "codex")

StopCheck = Callable[["Usage", "float | None"], "str | None"]


class IterationAgent(Protocol):
    """What the loop needs of an agent: run one iteration. `stop_check` is called whenever
    usage grows; a reason it gives stops the iteration (a budget ran out). A signal or a
    fatal model error raises IterationCut (ralph.agent) carrying the iteration so far."""

    def iterate(
        self, system: str, user_text: str, iteration: int, stop_check: StopCheck
    ) -> IterationOutcome: ...


def external_model(cfg: RunConfig) -> str | None:
    """The model to pass to an agent CLI: --model when given (not the built-in default, an
    Anthropic id the CLI may not serve), else None (the CLI's own configuration decides)."""

    # A script: model is the built-in fallback's (a test or a demo), never the CLI's.
    return None if cfg.model == DEFAULT_MODEL or is_script(cfg.model) else cfg.model


class CliModel:
    """Stands for an agent CLI's model where the runner names one (run_started); `builtin`
    is the built-in agent's model when that is the fallback."""

    def __init__(self, cfg: RunConfig, builtin: Model | None = None) -> None:
        self.name = external_model(cfg) or cfg.agent
        self.builtin = builtin

    def complete(self, request: ModelRequest, on_event: StreamCallback | None = None) -> Any:
        raise ModelError("an agent CLI makes its own model calls", fatal=True)
