"""What of the host's hidden directories the agent's tools need inside the sandbox.

bwrap hides homes and daemon socket directories (see sandbox); the tools on the runner's PATH
often live there (pyenv, nvm, pipx, ~/.local/bin, Homebrew). `tool_dirs` finds the
directories those tools need, to bind back read-only, and never a whole hidden directory.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path


def under(path: Path, dirs: Sequence[Path]) -> bool:
    return any(path.is_relative_to(d) for d in dirs)


def _python_prefix(venv: Path) -> Path | None:
    """The base Python installation of the virtual environment `venv`, if it has one.

    pyvenv.cfg is repository content, so its `home` is trusted only when it names a real
    Python installation (bin/python3 and lib/python3.*), never an arbitrary host directory.
    The path is the one written there (Python follows it as written, symlinks included).
    """
    try:
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home" and os.path.isabs(value.strip()):
            prefix = Path(os.path.normpath(value.strip())).parent
            if (prefix / "bin" / "python3").is_file() and any(prefix.glob("lib/python3.*/")):
                return prefix
    return None


def rustup_home(path_var: str, environ: Mapping[str, str]) -> Path | None:
    """Where the rustup on PATH keeps its toolchains, when PATH has one.

    Its proxies (cargo, rustc, ...) find them through RUSTUP_HOME, by default ~/.rustup of a
    HOME the agent does not share: the agent is given this path, or every cargo fails with
    "rustup could not choose a version".
    """
    entries = [e for e in path_var.split(os.pathsep) if os.path.isabs(e)]
    if not any(os.path.isfile(os.path.join(entry, "rustup")) for entry in entries):
        return None
    home = environ.get("RUSTUP_HOME") or os.path.join(environ.get("HOME", ""), ".rustup")
    if not os.path.isabs(home):
        return None
    real = Path(os.path.realpath(home))
    return real if (real / "toolchains").is_dir() else None


# Entries of a PATH directory looked at for symlinks into hidden directories.
LINKS_SCANNED = 500
# Files that mark a `bin`'s parent as one installation the tools need whole: a Homebrew prefix
# (kegs link each other's libraries through it), a Go root (src, pkg/tool), a JDK (conf).
# Never a shared prefix like ~/.local or ~/.cargo, which hold keyrings and credentials.
INSTALL_MARKERS = (("Cellar",), ("VERSION", "src", "pkg/tool"), ("release", "conf", "lib"))


def _installation(path: Path) -> bool:
    """Whether the `bin` directory `path` belongs to one such installation."""
    return path.name == "bin" and any(
        all((path.parent / name).exists() for name in names) for names in INSTALL_MARKERS
    )


def _with_lib(path: Path) -> list[Path]:
    """A `bin` directory and the `lib` beside it, where its programs keep their code (npm in
    ~/.nvm/versions/node/vX/lib, `pip install --user` in ~/.local/lib)."""
    lib = path.parent / "lib"
    return [path, lib] if path.name == "bin" and lib.is_dir() else [path]


def sandbox_path(path: str | Path, hidden: Sequence[Path]) -> Path:
    """Where the absolute `path` leads in the sandbox: its symlinks are followed until it
    enters a hidden directory, where none is left (its tmpfs is empty).

    A mount point must be made there: bwrap cannot make one through a symlink into a hidden
    directory (a symlinked $HOME, /home -> /var/home), and the real path alone would miss a
    link that is itself hidden (~/bin -> ~/dotfiles/bin, NixOS's /run/current-system).
    """
    parts = Path(os.path.normpath(path)).parts[1:]
    current = Path("/")
    for index, part in enumerate(parts):
        current = current / part
        if under(current, hidden):
            return current.joinpath(*parts[index + 1 :])
        if current.is_symlink():
            current = Path(os.path.realpath(current))
    return current


def tool_dirs(root: Path, hidden: Sequence[Path], path_var: str) -> list[Path]:
    """What of the hidden directories the agent's tools need, to re-bind read-only.

    From the runner's PATH: each directory in a hidden one (a version manager's whole root for
    its `shims`, e.g. ~/.pyenv; a `bin` with its `lib`) and the directories its symlinks
    point to (pipx and uv install links). From the repository's `.venv` or `venv`: the Python
    installation it was made from. Each where the agent reaches it (`sandbox_path`) and at its
    real path; never a whole hidden directory, nor the repository's own (`hidden` and `root`
    are real paths).
    """

    def reached(path: str | Path) -> set[Path]:
        return {Path(os.path.realpath(path)), sandbox_path(path, hidden)}

    wanted: list[Path] = []
    for entry in path_var.split(os.pathsep):
        if not os.path.isabs(entry) or not os.path.isdir(entry):
            continue
        path = Path(os.path.normpath(entry))
        real = Path(os.path.realpath(path))
        if not any(under(p, hidden) for p in reached(path)):
            continue
        if real.name == "shims":
            # The whole root (its versions, its libexec), or just the shims when the root
            # is a hidden directory itself.
            wanted += [path.parent, path]
            continue
        if _installation(path):
            wanted.append(path.parent)
        wanted += _with_lib(path)
        try:
            with os.scandir(real) as entries:
                first = itertools.islice(entries, LINKS_SCANNED)
                links = [item.path for item in first if item.is_symlink()]
        except OSError:
            links = []
        for link in links:
            target = Path(os.path.realpath(link))
            if target.is_file() and under(target, hidden) and not target.is_relative_to(real):
                wanted += _with_lib(target.parent)
    for venv in (root / ".venv", root / "venv"):
        prefix = _python_prefix(venv)
        if prefix is not None:
            wanted.append(prefix)
    places = set().union(*map(reached, wanted)) if wanted else set()
    chosen: list[Path] = []
    for path in sorted(places, key=lambda p: (len(p.parts), p)):
        # Paths in the repository are bound with it; a whole hidden directory is never re-bound.
        if not under(path, hidden) or path in hidden:
            continue
        if Path(os.path.realpath(path)).is_relative_to(root) or under(path, chosen):
            continue
        chosen.append(path)
    return chosen
