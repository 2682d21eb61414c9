"""Model backends: `script:PATH` replays a recorded session; anything else is an Anthropic id."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import RunConfig
from ..errors import UsageError
from .base import Model, Pricing

SCRIPT_PREFIX = "script:"


def is_script(model: str) -> bool:
    return model.startswith(SCRIPT_PREFIX)


def make_model(cfg: RunConfig) -> Model:
    """Build the run's model; bad settings and missing credentials are usage errors."""
    if is_script(cfg.model):
        from .script import ScriptModel  # `ralph runs` imports models.base, not the backends

        raw = cfg.model[len(SCRIPT_PREFIX) :]
        if not raw:
            raise UsageError("--model script: needs a path, e.g. --model script:session.yaml")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        return ScriptModel(path)
    from .anthropic import AnthropicModel, check_credentials  # (the same)

    check_credentials(os.environ)
    model = AnthropicModel(model=cfg.model, retry_window=cfg.retry_window)
    if not cfg.dry_run:
        model.warm()  # the SDK's import overlaps the run's set-up (git, journal, sandbox)
    return model


def model_pricing(model_name: str, cfg: RunConfig) -> Pricing | None:
    """Price of a model id (built-in table, overridden by `pricing:` in ralph.yaml)."""
    from .pricing import lookup  # (the same)

    return lookup(model_name, cfg.pricing)
