"""`ralph demo`: the security prompt, offline, on a small vulnerable app in a fresh git repo."""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .config import STATE_DIR, RunConfig, build_config
from .errors import UsageError
from .git import gitrun
from .git.repo import ensure_excluded
from .layers import COMMAND_LINE, parse_layer
from .run.campaign import campaign_config
from .run.campaign_run import run_campaign
from .run.runner import execute
from .settings import DEFAULT_MODEL
from .views.ui import make_observers

DEMO_DIR = Path(__file__).parent / "demo"
APP_DIR = DEMO_DIR / "vulnerable-app"
SESSION = DEMO_DIR / "session.yaml"

BANNER = (
    "ralph demo: a RECORDED session stands in for the model (no API key, no network); the "
    "loop, tools, sandbox, completion gate, journal and git are the real ones."
)


def ralph_command(argv0: str | None = None) -> str:
    """How to run ralph again from a shell: `ralph` when that is on PATH, else its full path.

    After the README's install ralph lives in .venv/bin, which is usually not on PATH.
    """
    here = Path(argv0 if argv0 is not None else sys.argv[0]).absolute().parent / "ralph"
    if here.is_file():
        on_path = shutil.which("ralph")
        if on_path and Path(on_path).resolve() == here.resolve():
            return "ralph"
        return shlex.quote(str(here))
    # Started another way (python -m ralph): name this interpreter, whose ralph is the one running.
    return f"{shlex.quote(sys.executable)} -m ralph"


def _git(repo: Path, *args: str) -> str:
    return gitrun.out(repo, *args)


def prepare_repo(target: Path | None) -> Path:
    """Copy the vulnerable app into a new git repository (a temporary one by default)."""
    if target is None:
        repo = Path(tempfile.mkdtemp(prefix="ralph-demo-")) / "vulnerable-app"
    else:
        repo = target.expanduser().resolve()
        if repo.exists() and any(repo.iterdir()):
            raise UsageError(f"--dir {repo} is not empty; name a new or empty directory")
    shutil.copytree(
        APP_DIR, repo, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.name", "ralph demo")
    _git(repo, "config", "user.email", "demo@ralph-loop.invalid")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "Vulnerable app: the starting point of the demo")
    return repo


PACE_S = 1.2  # seconds each recorded model turn takes when paced: the live view can be read


def paced_session(repo: Path) -> Path:
    """A copy of the recorded session whose every turn takes PACE_S, as a model's would, in
    the demo repository's `.ralph/` (git ignores it; `ralph resume` of the demo finds it)."""
    import yaml  # 19 ms: only for the paced demo

    data = yaml.safe_load(SESSION.read_text(encoding="utf-8"))
    for iteration in data["iterations"]:
        turns = iteration["turns"]
        for i, turn in enumerate(turns):
            turns[i] = {"text": turn} if isinstance(turn, str) else turn
            turns[i].setdefault("sleep", PACE_S)
    ensure_excluded(repo / ".git")
    path = repo / STATE_DIR / "demo-session.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def demo_config(repo: Path, sandbox: str = "auto", session: Path = SESSION) -> RunConfig:
    """The run the demo makes: the built-in security prompt and the recorded session. Only
    these settings: the user's ralph.yaml and RALPH_* variables are not the demo's."""
    flags = {
        "model": f"script:{session}",
        "sandbox": sandbox,
        "stall_limit": 3,
        "max_iterations": 6,
        "verify": ["PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -q"],
    }
    return build_config("security", parse_layer(flags, COMMAND_LINE), repo, environ={})


def run_demo(
    target: Path | None, sandbox: str, echo: Callable[[str], None], pace: bool | None = None
) -> int:
    """Prepare the repository, run the loop, say where the result is; returns the exit code.
    `pace`: each model turn takes PACE_S (None: when the live view goes to a terminal)."""

    echo(BANNER)
    repo = prepare_repo(target)
    if pace is None:
        pace = sys.stderr.isatty()
    cfg = demo_config(repo, sandbox, paced_session(repo) if pace else SESSION)
    echo(f"repository: {repo}")
    result = execute(cfg, make_observers(cfg))
    branch = _git(repo, "branch", "--show-current")
    if result.cost_usd is not None:
        echo(
            f"\nThe cost shown, ${result.cost_usd:.2f}, is simulated: the recorded session's "
            f"tokens priced as {DEFAULT_MODEL}; no model was called."
        )
    echo(
        f"\nThe hardened repository is {repo} (branch {branch}). See what each iteration did:\n"
        f"  git -C {repo} log --stat main..{branch}\n"
        f"  cat {repo}/sdlc/security-audit.md\n"
        f"  {ralph_command()} show --repo {repo} {result.run_id} --report"
    )
    return int(result.exit_code)


# --- `ralph demo --harden`: the whole campaign ------------------------------------------------

HARDEN_DIR = DEMO_DIR / "harden"  # a recorded session per phase (security: SESSION)
# Iterations the demo gives each phase: the recorded sessions are this long.
HARDEN_ITERATIONS = {
    "security": 6,
    "reliability": 1,
    "observability": 1,
    "incident-response": 1,
    "remediate": 4,
}
HARDEN_BANNER = (
    "ralph demo --harden: a RECORDED session per phase stands in for the model (no API key, no "
    "network); the campaign, loop, tools, sandbox, gates, task list, journal and git are the "
    "real ones. The security audit completes and files remediation tasks; reliability, "
    "observability and incident response get one iteration each in this demo, so they end "
    "without their promise (reported; the campaign goes on); remediate then works off the "
    "tasks the audit filed."
)


def harden_demo_config(repo: Path, sandbox: str = "auto") -> RunConfig:
    """The demo campaign's settings: only these (not the user's ralph.yaml or RALPH_*)."""

    flags = {
        "model": f"script:{SESSION}",
        "sandbox": sandbox,
        "stall_limit": 3,
        "verify": ["PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -q"],
    }
    return campaign_config(parse_layer(flags, COMMAND_LINE), repo, environ={})


def _demo_phase(cfg: RunConfig) -> None:
    """Each phase replays its own recorded session, for as many iterations as it holds."""
    name = cfg.prompt_name
    if name != "security":
        cfg.model = f"script:{HARDEN_DIR / (name + '.yaml')}"
    cfg.max_iterations = HARDEN_ITERATIONS[name]


def run_harden_demo(target: Path | None, sandbox: str, echo: Callable[[str], None]) -> int:
    """`ralph demo --harden`: the whole campaign on the vulnerable app; the exit code."""

    echo(HARDEN_BANNER)
    repo = prepare_repo(target)
    cfg = harden_demo_config(repo, sandbox)
    echo(f"repository: {repo}")
    result = run_campaign(cfg, make_observers, lambda line: echo(line), _demo_phase)
    echo("")
    echo(f"campaign {result.campaign_id}: {result.status}: {result.reason}")
    for outcome in result.phases:
        echo(f"  {outcome.phase:<18} {outcome.status}: {outcome.reason}")
    tasks = (repo / "sdlc" / "remediation-tasks.md").read_text(encoding="utf-8")
    echo("\nThe remediation tasks the audit filed, as the campaign left them:")
    for line in tasks.splitlines():
        if line.startswith("- ["):
            echo(f"  {line}")
    if result.cost_usd is not None:
        echo(
            f"\nThe cost shown, ${result.cost_usd:.2f}, is simulated: the recorded sessions' "
            f"tokens priced as {DEFAULT_MODEL}; no model was called."
        )
    echo(
        f"\nThe hardened repository is {repo} (branch {result.branch}). See the campaign:\n"
        f"  cat {result.report}\n"
        f"  git -C {repo} log --oneline main..{result.branch}\n"
        f"  cat {repo}/sdlc/remediation-tasks.md"
    )
    # The demo's phases that end without their promise do so by design: it succeeded when
    # the audit completed and the remediation run closed every task it filed.
    done = {o.phase: o.status for o in result.phases}
    ok = done.get("security") == "completed" and done.get("remediate") == "completed"
    return 0 if ok else int(result.exit_code)
