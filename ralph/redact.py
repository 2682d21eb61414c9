"""The one redaction function: runner secrets and common token shapes become `[REDACTED]`.

Used by the journal, logs, reports and PR bodies (and by the tools, for runner secrets only).
It runs on every journal row and log line, so patterns are compiled once and the pattern of
secret values is cached per snapshot of the secret-named environment variables.

A runner secret is found in the forms a command prints it in without trying to hide it: as
it is, URL-encoded, in hex, in base64 (standard or URL-safe, at any byte offset of the
encoded data), and in pieces (`${KEY:0:20}` then `${KEY:20}`, a wrapped base64 line): any
run of FRAGMENT or more characters of one of those forms. A determined agent that can read
a secret can still transform it past any redaction (reverse it, encrypt it); the sandbox,
which keeps the runner's secrets out of the agent's reach, is the defence against that.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"

# Shorter values are too likely to be ordinary words or numbers found all over a log.
MIN_SECRET_LEN = 8
# The shortest piece of a secret (or of its encoded forms) that is redacted on its own.
FRAGMENT = 12

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


def encoded_forms(value: str) -> list[str]:
    """`value` and the encodings a command may print it in (see the module's docstring)."""
    raw = value.encode("utf-8", "surrogateescape")
    forms = [value, quote(value, safe=""), quote_plus(value), raw.hex(), raw.hex().upper()]
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            # The characters that depend on `value` alone: not the first group of four when
            # other bytes precede it, nor the last when other bytes follow.
            encoded = encode(b"\0" * offset + raw).decode("ascii")
            end = 4 * ((offset + len(raw)) // 3)
            forms.append(encoded[4 if offset else 0 : end])
    return list(dict.fromkeys(f for f in forms if len(f) >= MIN_SECRET_LEN))


@dataclass(frozen=True)
class _Matcher:
    """What finds the secrets of one environment snapshot in a text."""

    whole: re.Pattern[str]  # every form, whole (fast: one regex in C)
    runs: re.Pattern[str]  # runs of the forms' characters, FRAGMENT or longer
    pieces: frozenset[str]  # every FRAGMENT-long piece of every form

    def sub(self, text: str) -> str:
        text = self.whole.sub(REDACTED, text)
        return self.runs.sub(self._pieces_of_run, text) if self.pieces else text

    def search(self, text: str) -> bool:
        if self.whole.search(text):
            return True
        return any(self._covered(m.group()) for m in self.runs.finditer(text))

    def _covered(self, run: str) -> list[tuple[int, int]]:
        """The spans of `run` made of pieces of a secret, merged."""
        spans: list[tuple[int, int]] = []
        for i in range(len(run) - FRAGMENT + 1):
            if run[i : i + FRAGMENT] in self.pieces:
                if spans and i <= spans[-1][1]:
                    spans[-1] = (spans[-1][0], i + FRAGMENT)
                else:
                    spans.append((i, i + FRAGMENT))
        return spans

    def _pieces_of_run(self, match: re.Match[str]) -> str:
        run = match.group()
        spans = self._covered(run)
        if not spans:
            return run
        out, last = [], 0
        for start, end in spans:
            out += [run[last:start], REDACTED]
            last = end
        out.append(run[last:])
        return "".join(out)


@lru_cache(maxsize=16)
def _matcher(values: tuple[str, ...]) -> _Matcher | None:
    if not values:
        return None
    forms = sorted({f for v in values for f in encoded_forms(v)}, key=lambda f: (-len(f), f))
    pieces = frozenset(f[i : i + FRAGMENT] for f in forms for i in range(len(f) - FRAGMENT + 1))
    chars = "".join(sorted({c for f in forms for c in f}))
    return _Matcher(
        whole=re.compile("|".join(re.escape(f) for f in forms)),
        runs=re.compile(f"[{re.escape(chars)}]{{{FRAGMENT},}}"),
        pieces=pieces,
    )


def redact(text: str, environ: Mapping[str, str] | None = None, *, shapes: bool = True) -> str:
    """`text` with runner secrets and (unless `shapes` is False) token shapes replaced.

    `shapes=False` is for tool output shown to the agent: a hardening job must be able to see
    (and remove) a key hard-coded in the repository, but never the runner's own secrets.
    """
    if not text:
        return text
    return _apply(text, _matcher(secret_values(environ)), shapes)


def contains_secret(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `text` holds a runner secret in any form `redact` hides (e.g. a file name or a
    file's content that the runner is about to commit)."""
    matcher = _matcher(secret_values(environ))
    return bool(text) and matcher is not None and matcher.search(text)


def _apply(text: str, values: _Matcher | None, shapes: bool) -> str:
    if values is not None:
        text = values.sub(text)
    if shapes and any(marker in text for marker in _SHAPE_MARKERS):
        text = _SHAPES.sub(REDACTED, text)
    return text


def redact_obj(obj: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of nested dicts/lists/tuples with every string (keys too) redacted."""
    values = _matcher(secret_values(environ))

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
