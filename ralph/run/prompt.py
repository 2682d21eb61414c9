"""Prompt files: resolving the PROMPT argument, front matter, built-in prompts."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ..errors import UsageError
from ..layers import load_yaml_mapping, parse_layer
from .promise import prompt_promises

BUILTIN_DIR = Path(__file__).parents[1] / "prompts"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.DOTALL | re.M)


@dataclass
class PromptSpec:
    """A resolved prompt: its text (front matter removed), name, origin and settings."""

    text: str
    name: str
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    note: str | None = None  # one line for stderr, e.g. that a built-in stood in for a file

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith("builtin:")

    @property
    def promises(self) -> list[str]:
        return prompt_promises(self.text)


def builtin_names() -> list[str]:
    """Names of the prompts shipped with ralph (security, observability, ...)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.md") if p.stem.lower() != "readme")


def builtin_path(name: str) -> Path | None:
    path = BUILTIN_DIR / f"{name}.md"
    return path if name in builtin_names() else None


def split_front_matter(text: str, where: str) -> tuple[dict[str, Any], str]:
    """Separate YAML front matter (between `---` lines at the top) from the body."""
    match = _FRONT_MATTER.match(text)
    if not match:
        if text.startswith("---\n") or text.startswith("---\r\n"):
            raise UsageError(f"{where}: front matter starts with --- but has no closing --- line")
        return {}, text
    raw = load_yaml_mapping(match.group(1), where, line_offset=1)
    return parse_layer(raw, f"{where} front matter"), text[match.end() :]


def _looks_like_path(arg: str) -> bool:
    """A file name ending (even with spaces) or a slash without spaces; not a sentence."""
    if "\n" in arg or len(arg) > 1024 or "<promise>" in arg:
        return False
    if arg.rstrip().endswith((".md", ".txt", ".markdown", ".prompt", ".yaml")):
        return True
    return "/" in arg and not re.search(r"\s", arg.strip())


def _builtin_stand_in(arg: str) -> str | None:
    """The built-in name when `arg` is prompts/<built-in>.md (the README's usage), else None."""
    parts = Path(arg).parts
    if parts[:1] == (".",):
        parts = parts[1:]
    if len(parts) != 2 or parts[0] != "prompts" or not parts[1].endswith(".md"):
        return None
    name = parts[1][: -len(".md")]
    return name if builtin_path(name) is not None else None


def _slug(text: str, words: int = 3) -> str:
    parts = re.findall(r"[a-z0-9]+", text.lower())[:words]
    return "-".join(parts) or "inline"


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"prompt file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read prompt file {path}: {exc.strerror}") from None


def _from_text(text: str, name: str, source: str, path: Path | None) -> PromptSpec:
    settings, body = split_front_matter(text, str(path) if path else source)
    if not body.strip():
        if source == "-":
            raise UsageError("the prompt on standard input (-) is empty; pipe the task in")
        raise UsageError(f"the prompt in {path or source} is empty; write the task in it")
    return PromptSpec(body.strip() + "\n", name, source, settings, path)


def load_prompt(arg: str, stdin: TextIO | None = None, cwd: Path | None = None) -> PromptSpec:
    """Resolve PROMPT: a file path, `-` for stdin, a built-in name, or inline text."""
    cwd = cwd or Path.cwd()
    if arg == "-":
        text = (stdin or sys.stdin).read()
        return _from_text(text, "stdin", "-", None)
    if not arg.strip():
        raise UsageError("the prompt is empty; give a prompt file, a built-in name or the text")
    candidate = Path(arg).expanduser()
    if not candidate.is_absolute():
        candidate = cwd / candidate
    builtin = builtin_path(arg)
    if builtin is not None:
        # A built-in name is the built-in, even beside a file of that name: the agent could
        # have written `./security` in an earlier run to stand in for it.
        spec = _from_text(_read_file(builtin), arg, f"builtin:{arg}", builtin)
        if candidate.exists():
            spec.note = (
                f"using the built-in prompt {arg!r}, not the file {arg} here; "
                f"to run that file, name it as a path: ./{arg}"
            )
        return spec
    if "\n" not in arg and len(arg) < 4096 and candidate.is_file():
        return _from_text(_read_file(candidate), candidate.stem, str(candidate), candidate)
    stand_in = _builtin_stand_in(arg) if "\n" not in arg else None
    if stand_in is not None and not candidate.exists():
        # The README's `ralph-loop prompts/security.md` works in any repository.
        spec = load_prompt(stand_in, stdin, cwd)
        spec.note = (
            f"{arg} not found; using the built-in prompt {stand_in!r} "
            "(`ralph init --prompts` copies the built-ins into prompts/ for editing)"
        )
        return spec
    if _looks_like_path(arg):
        if candidate.is_dir():
            raise UsageError(f"prompt {arg} is a directory; name a prompt file inside it")
        hint = (
            # "Fix the bug in notes.md" reads as a file name with spaces: say how to mean text.
            "; if it is the prompt text, end it with something other than a file name, or "
            "pass it on stdin with -"
            if re.search(r"\s", arg.strip())
            else ""
        )
        if builtin_path(Path(arg).stem) is not None:  # security.md, other/security.md
            hint = f"; the built-in is `ralph-loop {Path(arg).stem}`"
        raise UsageError(
            f"prompt file {arg} does not exist; check the path, or run `ralph prompts` "
            f"for the built-in names{hint}"
        )
    if not re.search(r"\s", arg.strip()):
        close = difflib.get_close_matches(arg, builtin_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(
            f"{arg!r} is not a prompt file or built-in prompt; {hint}built-ins: "
            f"{', '.join(builtin_names())} (inline prompts are sentences, quoted)"
        )
    return _from_text(arg, _slug(arg), "inline", None)
