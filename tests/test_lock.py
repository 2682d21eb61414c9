"""The dependency lock: README's test command and CI install requirements-lock.txt, so the
lock must pin, with hashes, every dependency and extra that pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-lock.txt"
REFRESH = "see README, Development, for the one-line refresh command"


def locked_pins() -> dict[str, Version]:
    """name -> pinned version, for every `name==version` entry of the lock."""
    text = LOCK.read_text(encoding="utf-8")
    return {
        canonicalize_name(m[1]): Version(m[2])
        for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", text, re.M)
    }


def declared_requirements() -> list[Requirement]:
    """The dependencies of pyproject.toml and of all its extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    declared = [*project["dependencies"], *(r for extra in extras.values() for r in extra)]
    return [Requirement(r) for r in declared]


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = locked_pins()
    for requirement in declared_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements-lock.txt: {REFRESH}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements-lock.txt pins {name}=={pins[name]}, outside {requirement}: {REFRESH}"
        )


def test_every_locked_entry_carries_a_hash() -> None:
    # pip --require-hashes refuses the whole install otherwise; this names the entry.
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text(encoding="utf-8"))
    pinned = [e for e in entries if re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*==", e)]
    assert len(pinned) == len(locked_pins())
    for entry in pinned:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_ci_runs_readme_test_command_which_installs_from_the_lock() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = readme.split("run the full test suite:\n", 1)[1].splitlines()[0]
    assert "--require-hashes -r requirements-lock.txt" in command
    assert command.endswith("pytest -n 2")
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci_lines


def test_readme_refresh_command_is_the_one_that_wrote_the_lock() -> None:
    # uv records its command in the lock's header; README's Development section must give it.
    header = LOCK.read_text(encoding="utf-8").splitlines()[1].removeprefix("#").strip()
    assert header.startswith("uv pip compile ")
    development = (ROOT / "README.md").read_text(encoding="utf-8").split("## Development", 1)[1]
    expected = header.replace("uv pip compile ", ".venv/bin/uv pip compile -q ", 1)
    assert expected in development
