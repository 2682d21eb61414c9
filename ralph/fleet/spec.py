"""FLEET.yaml: the repositories of a fleet, their prompts and settings, the fleet budget.

    fleet: nightly                # names the workflows (default: the file's name)
    max_cost: 50                  # USD across the fleet: no iteration starts past it
    prompt: security              # default prompt: a built-in name, a file (beside
                                  # FLEET.yaml) or the text
    settings: {max_iterations: 8, max_cost: 5}   # ralph settings for every repository
    temporal: {heartbeat: 60, iteration_timeout: 14400, attempts: 3, task_queue: ralph-fleet}
    repositories:
      - url: https://github.com/octo/app.git
        base: main                # default: the remote's default branch
        prompt: reliability
        settings: {verify: ["make test"]}
        github: octo/app          # owner/name when the URL does not say it
        work_remote: URL          # push run branches here instead of `url`
        pr: true                  # open a pull request at the end (default true)
      - url: https://github.com/octo/web.git
        campaign: true            # `ralph harden` instead of a prompt (one activity)
        settings: {phases: [security, remediate], phase_max_iterations: 5}

Checked here, before anything is started: a bad file is a usage error (exit 2) naming it.
Nothing secret belongs in it (it goes into workflow histories): URLs with credentials and
notification targets are refused; workers read credentials from their environment. A
worker holds `settings` (and a prompt's front matter) to the rule of a repository's
ralph.yaml, measured from its own configuration: they may only tighten it (`jobconfig`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError
from ..layers import load_yaml_mapping, parse_layer
from ..run.prompt import builtin_path, load_prompt
from .model import TASK_QUEUE, FleetJob, RepoJob, Timing

# Settings the fleet decides (or that only make sense for one process at a terminal), and
# notification targets, which are secrets: none of these in FLEET.yaml.
NOT_IN_FLEET = {
    "repo": "the fleet clones each repository itself",
    "branch": "give `branch:` on the repository entry",
    "in_place": "the fleet works on a branch of its own",
    "worktree": "the fleet works in a checkout of its own",
    "no_commit": "the fleet pushes each iteration's commit",
    "allow_dirty": "a fresh clone is never dirty",
    "dry_run": "use `ralph-loop --dry-run` on one repository",
    "pr": "give `pr:` on the repository entry",
    "pr_base": "give `base:` on the repository entry",
    "remote": "give `work_remote:` on the repository entry",
    "notify": "notification targets are secrets: set RALPH_NOTIFY in the workers' environment",
    "log_format": "a worker's display is its own",
    "output_format": "a worker's display is its own",
    "log_file": "a worker's display is its own",
    "quiet": "a worker's display is its own",
    "verbose": "a worker's display is its own",
    "show_text": "a worker's display is its own",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_TOP = {"fleet", "max_cost", "prompt", "settings", "temporal", "repositories", "pr"}
_ENTRY = {"url", "name", "base", "prompt", "settings", "github", "work_remote", "pr", "branch",
          "campaign"}  # fmt: skip
_TEMPORAL = {"heartbeat", "iteration_timeout", "attempts", "retry", "task_queue"}


def load_fleet(path: Path) -> FleetJob:
    """Read and check FLEET.yaml; a UsageError names the file and the problem."""

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_fleet(load_yaml_mapping(text, str(path)), path)


def parse_fleet(data: dict[str, Any], path: Path) -> FleetJob:
    where = str(path)
    _unknown(data, _TOP, where)
    name = str(data.get("fleet") or path.stem)
    if not _NAME.fullmatch(name):
        raise UsageError(f"{where}: fleet: {name!r} is not a name (letters, digits, . _ -)")
    max_cost = _cost(data.get("max_cost"), f"{where}: max_cost")
    defaults = _settings(data.get("settings"), f"{where}: settings")
    timing, queue = _temporal(data.get("temporal"), f"{where}: temporal")
    entries = data.get("repositories")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{where}: repositories: list at least one repository (url: ...)")
    repos: list[RepoJob] = []
    for n, entry in enumerate(entries, 1):
        repos.append(_repo(entry, data, defaults, path, f"{where}: repositories[{n}]"))
    seen: set[str] = set()
    for repo in repos:
        if repo.name in seen:
            raise UsageError(
                f"{where}: two repositories are named {repo.name!r}; give one a `name:`"
            )
        seen.add(repo.name)
    return FleetJob(name, repos, max_cost, timing, queue)


def _unknown(data: dict[str, Any], known: set[str], where: str) -> None:
    for key in data:
        if key not in known:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")


def _cost(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise UsageError(f"{where}: {value!r} is not an amount in USD above 0")
    return float(value)


def _settings(raw: Any, where: str) -> dict[str, Any]:
    """ralph settings, checked as a ralph.yaml's are, minus those the fleet decides."""

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: expected a mapping of ralph settings")
    for key in raw:
        name = str(key).replace("-", "_")
        if name in NOT_IN_FLEET:
            raise UsageError(f"{where}: {key} cannot be set in a fleet file: {NOT_IN_FLEET[name]}")
    parse_layer(raw, where)  # unknown settings and bad values, named
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def _temporal(raw: Any, where: str) -> tuple[Timing, str]:
    if raw is None:
        return Timing(), TASK_QUEUE
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: expected a mapping")
    _unknown(raw, _TEMPORAL, where)
    timing = Timing()
    for key, attr in (("heartbeat", "heartbeat_s"), ("iteration_timeout", "iteration_s"),
                      ("retry", "retry_s")):  # fmt: skip
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise UsageError(f"{where}: {key}: {value!r} is not a number of seconds above 0")
            setattr(timing, attr, float(value))
    if "attempts" in raw:
        value = raw["attempts"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{where}: attempts: {value!r} is not a whole number of 1 or more")
        timing.attempts = value
    queue = str(raw.get("task_queue") or TASK_QUEUE)
    return timing, queue


def _repo(
    entry: Any, top: dict[str, Any], defaults: dict[str, Any], path: Path, where: str
) -> RepoJob:
    if isinstance(entry, str):
        entry = {"url": entry}
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected a URL or a mapping with url:")
    _unknown(entry, _ENTRY, where)
    url = str(entry.get("url") or "").strip()
    if not url:
        raise UsageError(f"{where}: url: give the repository's clone URL")
    _no_credentials(url, f"{where}: url")
    work_remote = entry.get("work_remote")
    if work_remote is not None:
        work_remote = str(work_remote).strip()
        _no_credentials(work_remote, f"{where}: work_remote")
    name = str(entry.get("name") or _name_of(url))
    if not _NAME.fullmatch(name):
        raise UsageError(f"{where}: name {name!r} is not a name (letters, digits, . _ -)")
    campaign = entry.get("campaign", False)
    if not isinstance(campaign, bool):
        raise UsageError(f"{where}: campaign: {campaign!r} is not true or false")
    if campaign and "prompt" in entry:
        raise UsageError(
            f"{where}: give `prompt:` or `campaign: true`, not both (a campaign's phases are "
            "the `phases` setting)"
        )
    prompt_arg = entry.get("prompt", top.get("prompt"))
    if campaign:
        prompt, prompt_name = "", "harden"
    elif not prompt_arg or not isinstance(prompt_arg, str):
        raise UsageError(
            f"{where}: prompt: give a built-in name, a prompt file or the text (or "
            "`campaign: true` for a `ralph harden` campaign)"
        )
    else:
        prompt, prompt_name = _prompt(prompt_arg, path.parent, where)
    settings = {**defaults, **_settings(entry.get("settings"), f"{where}: settings")}
    github = entry.get("github")
    if github is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", str(github)):
        raise UsageError(f"{where}: github: {github!r} is not owner/name")
    pr = entry.get("pr", top.get("pr", True))
    if not isinstance(pr, bool):
        raise UsageError(f"{where}: pr: {pr!r} is not true or false")
    base = entry.get("base")
    branch = entry.get("branch")
    return RepoJob(
        name=name,
        url=url,
        prompt=prompt,
        prompt_name=prompt_name,
        base=str(base) if base else None,
        settings=settings,
        github=str(github) if github else None,
        work_remote=work_remote or None,
        pr=pr,
        branch=str(branch) if branch else None,
        campaign=campaign,
    )


def _no_credentials(url: str, where: str) -> None:
    """A URL with a user and password (or token) in it would be in every workflow history."""
    parts = urlsplit(url) if "://" in url else None
    if parts is not None and parts.password is not None:
        raise UsageError(
            f"{where}: the URL carries a credential; remove it and give the workers "
            "GITHUB_TOKEN (or a git credential helper) in their environment"
        )
    if parts is not None and parts.username and parts.scheme in {"http", "https"}:
        raise UsageError(
            f"{where}: the URL carries a user name (a token, maybe); remove it and give the "
            "workers GITHUB_TOKEN (or a git credential helper) in their environment"
        )


def _name_of(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail.removesuffix(".git") or "repo"


def _prompt(arg: str, here: Path, where: str) -> tuple[str, str]:
    """(what the worker passes as PROMPT, the prompt's name): a built-in by name, a file's
    text (read here: workers do not have the submitter's files), or the text itself."""

    if builtin_path(arg) is not None:
        return arg, arg
    try:
        spec = load_prompt(arg, cwd=here)
    except UsageError as exc:
        raise UsageError(f"{where}: prompt: {exc.message}") from None
    if spec.path is not None:  # a file: its whole text, front matter and all
        return spec.path.read_text(encoding="utf-8"), spec.name
    return spec.text, spec.name
