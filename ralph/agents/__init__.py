"""The agent of an iteration: the built-in one, or a coding-agent CLI run per iteration.

Whatever the agent, the loop around it is the same: fresh context per iteration, promise
rules, gate, guards and budgets, commits, journal, live view, report and PR. An external
agent (Claude Code, Codex) runs as one sandboxed process per iteration; its JSON-lines
output is turned into the bus events the built-in agent emits (model_call, tool_started,
tool_finished, model_text), so every observer works unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..models.pricing import lookup
from ..tools.netns import loopback_ports
from ..tools.probe import choose_sandbox
from ..tools.sandbox import Sandbox, make_sandbox
from . import claude_code, codex
from .base import AGENTS, EXTERNAL, CliModel, IterationAgent, StopCheck, external_model
from .codex import model_for_prices, read_config
from .limits import LimitAware

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..events import Bus

__all__ = ["AGENTS", "EXTERNAL", "CliModel", "IterationAgent", "StopCheck", "external_model"]


def preflight(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Check the run's agent CLIs before anything is created (exit 2 when one is missing, too
    old or not logged in, or cannot work with these settings); their binaries by name."""
    source = os.environ if environ is None else environ
    names = [n for n in dict.fromkeys([cfg.agent, cfg.fallback_agent or ""]) if n in EXTERNAL]
    if cfg.fallback_agent and cfg.fallback_agent == cfg.agent:
        raise UsageError(
            f"--fallback-agent {cfg.fallback_agent} is the run's agent already; name another"
        )
    binaries: dict[str, str] = {}
    for name in names:
        if cfg.network == "off":
            raise UsageError(
                f"--agent {name} needs the network to reach its API; drop --network off or use "
                "--agent builtin"
            )
        binaries[name] = _CHECKED[name] = _module(name).preflight(source)
    if "codex" in names and cfg.max_cost is not None:
        model = model_for_prices(cfg, source)

        if model is None or lookup(model, cfg.pricing) is None:
            raise UsageError(
                f"--max-cost with --agent codex needs the price of its model "
                f"({model or 'unknown: pass --model'}); add it under `pricing:` in ralph.yaml "
                "or RALPH_PRICING, or use --max-tokens"
            )
    return binaries


# The binaries the last preflight found, by agent name (the run that follows uses them).
_CHECKED: dict[str, str] = {}


def _module(name: str) -> Any:
    if name == "claude-code":
        return claude_code

    return codex


def assemble(
    cfg: RunConfig, model: Any, builtin: Callable[[], IterationAgent], root: Path, bus: Bus
) -> IterationAgent:
    """The run's agent: the built-in one, or an agent CLI wrapped to wait out (or fall back
    from) its usage limits."""

    def make(name: str) -> IterationAgent:
        if name == "builtin":
            return builtin()
        binary = _CHECKED.get(name) or _module(name).preflight(os.environ)
        return build(name, cfg, binary, root, bus)

    if cfg.agent == "builtin" and not cfg.fallback_agent:
        return builtin()

    fallback = make(cfg.fallback_agent) if cfg.fallback_agent else None
    return LimitAware(
        make(cfg.agent),
        cfg.agent,
        bus,
        max_wait=cfg.usage_limit_wait,
        fallback=fallback,
        fallback_name=cfg.fallback_agent or "",
    )


def build(
    name: str,
    cfg: RunConfig,
    binary: str,
    root: Path,
    bus: Any,
    sandbox: Any = None,
) -> IterationAgent:
    """An agent CLI for the run, in the same sandbox as the bash tool (its own private HOME)."""

    if sandbox is None:
        kind, _ = choose_sandbox(cfg.sandbox, cfg.network, root)
        # The API endpoints the operator set stay reachable from the sandbox's own network,
        # even on the host's loopback (a local server or proxy); no other host port is.
        ports = loopback_ports(endpoints(name, os.environ))
        sandbox = make_sandbox(kind, root, cfg.network, (), ports)
    cls = _module(name).AGENT
    agent: IterationAgent = cls(
        binary,
        sandbox,
        bus,
        max_turns=cfg.max_turns,
        model=external_model(cfg),
        extra_args=cfg.agent_args if name == cfg.agent else (),
        pricing=cfg.pricing,
    )
    return agent


def first_command(cfg: RunConfig, system: str, user_text: str) -> dict[str, Any]:
    """The command line and standard input of the first iteration's agent CLI (--dry-run)."""

    binary = _CHECKED.get(cfg.agent) or _module(cfg.agent).preflight(os.environ)
    agent = build(cfg.agent, cfg, binary, cfg.repo, _NoBus(), Sandbox("none", cfg.repo))
    argv, stdin = agent.command(system, user_text)  # type: ignore[attr-defined]
    return {"agent": cfg.agent, "argv": argv, "stdin": (stdin or b"").decode("utf-8")}


class _NoBus:
    def emit(self, name: str, level: str = "info", **data: Any) -> None:
        pass


def endpoints(name: str, environ: Mapping[str, str]) -> list[str]:
    """The API base URLs the operator configured for agent CLI `name`: its environment's and,
    for Codex, its config.toml's model providers."""
    urls = [environ[v] for v in ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL") if environ.get(v)]
    if name == "codex":
        providers = read_config(environ).get("model_providers")
        if isinstance(providers, dict):
            urls += [
                str(p["base_url"])
                for p in providers.values()
                if isinstance(p, dict) and p.get("base_url")
            ]
    return urls
