"""The one redaction function: runner secrets and common token shapes become `[REDACTED]`.

Used by the journal, logs, reports and PR bodies (and by the tools, for runner secrets only).
It runs on every journal row and log line, so patterns are compiled once and the pattern of
secret values is cached per snapshot of the secret-named environment variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# Shorter values are too likely to be ordinary words or numbers found all over a log.
MIN_SECRET_LEN = 8

_SECRET_NAME = re.compile(
    r"(?:_API_KEY|_KEY|_TOKEN|_SECRET)$|PASSWORD|^AWS_|^(?:GITHUB_TOKEN|GH_TOKEN)$"
)
# AWS_* settings that are configuration, not credentials: redacting "us-east-1" everywhere
# would only make logs harder to read.
_NOT_SECRET = frozenset(
    {
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_DEFAULT_OUTPUT",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_PAGER",
        "AWS_CA_BUNDLE",
    }
)

# Token shapes, one alternation so a text is scanned once. The look-behind keeps `sk-` inside
# words such as "task-runner" from matching.
_SHAPES = re.compile(
    r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{16,}"  # Anthropic
    r"|(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"  # OpenAI
    r"|(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub classic and app tokens
    r"|(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{20,}"  # GitHub fine-grained tokens
    r"|(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"  # AWS access key ids
    # Private key blocks; a block cut off by an output cap is redacted to the end.
    r"|-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\Z)"
)


# Literal pieces every shape contains: a cheap test that skips the regex for most lines.
_SHAPE_MARKERS = (
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "AKIA",
    "ASIA",
    "PRIVATE KEY",
)


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name holds a secret."""
    upper = name.upper()
    return upper not in _NOT_SECRET and _SECRET_NAME.search(upper) is not None


def secret_values(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of the secret-named variables in `environ` (default: os.environ)."""
    if environ is None or environ is os.environ:
        # os.environ decodes every item on iteration; its raw bytes snapshot is a cheap key.
        raw = getattr(os.environ, "_data", None)
        if isinstance(raw, dict):
            return _secret_values_of(tuple(raw.items()))
        environ = os.environ
    return _secret_values(environ.items())


@lru_cache(maxsize=8)
def _secret_values_of(snapshot: tuple[tuple[bytes, bytes], ...]) -> tuple[str, ...]:
    return _secret_values((os.fsdecode(k), os.fsdecode(v)) for k, v in snapshot)


def _secret_values(items: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    values = {v for k, v in items if is_secret_name(k) and len(v) >= MIN_SECRET_LEN}
    # Longest first, so a secret containing another is replaced whole.
    return tuple(sorted(values, key=lambda v: (-len(v), v)))


@lru_cache(maxsize=16)
def _values_pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in values))


def redact(text: str, environ: Mapping[str, str] | None = None, *, shapes: bool = True) -> str:
    """`text` with runner secrets and (unless `shapes` is False) token shapes replaced.

    `shapes=False` is for tool output shown to the agent: a hardening job must be able to see
    (and remove) a key hard-coded in the repository, but never the runner's own secrets.
    """
    if not text:
        return text
    return _apply(text, _values_pattern(secret_values(environ)), shapes)


def _apply(text: str, values: re.Pattern[str] | None, shapes: bool) -> str:
    if values is not None:
        text = values.sub(REDACTED, text)
    if shapes and any(marker in text for marker in _SHAPE_MARKERS):
        text = _SHAPES.sub(REDACTED, text)
    return text


def redact_obj(obj: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of nested dicts/lists/tuples with every string (keys too) redacted."""
    values = _values_pattern(secret_values(environ))

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return _apply(item, values, True) if item else item
        if isinstance(item, Mapping):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            items = [walk(v) for v in item]
            return items if isinstance(item, list) else tuple(items)
        return item

    return walk(obj)
