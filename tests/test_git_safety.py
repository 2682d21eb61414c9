"""The runner's own git on a repository an agent wrote (issue 14): it runs no program the
repository configures, never stages or enters a nested repository, refuses special and huge
files, skips caches, undoes changes to ralph's own configuration, and never hangs.

Real git on real temporary repositories. `.git/config` written by a test stands for an agent
without the sandbox (`--sandbox none`), and a nested repository's config for any agent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ralph.config import RunConfig
from ralph.errors import RalphError
from ralph.git import gitrun, staging
from ralph.git import workspace as ws_mod
from ralph.git.repo import check
from ralph.git.workspace import Workspace
from ralph.run.signals import STOP
from tests.helpers import HANG, git, make_repo

MARK = "touch {marker}/{name}"


def cfg_for(repo: Path, **settings: object) -> RunConfig:
    return RunConfig(repo=repo, prompt="harden it", prompt_name="security", **settings)  # type: ignore[arg-type]


def start(repo: Path, **settings: object) -> Workspace:
    cfg = cfg_for(repo, **settings)
    check(cfg)
    ws = Workspace.prepare(cfg, "20250101-000000-abcd", "security")
    ws.begin_iteration()
    return ws


def committed(repo: Path, rev: str = "HEAD") -> list[str]:
    return git(repo, "show", "--name-only", "--format=", rev).splitlines()


def iterate(ws: Workspace) -> str | None:
    ws.changed_files()
    return ws.commit("ralph(x): iteration 1/1 — x")


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """A directory that every planted command writes into: it must stay empty."""
    where = tmp_path / "ran"
    where.mkdir()
    yield where
    assert sorted(p.name for p in where.iterdir()) == []


def nested_repo(path: Path, config: dict[str, str]) -> None:
    """A git repository with one commit at `path`, whose own config holds `config`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    (path / "f").write_text("nested\n")
    (path / ".gitattributes").write_text("* filter=x diff=x\n")
    git(path, "add", "-A")
    git(path, "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "x")
    for key, value in config.items():
        git(path, "config", key, value)
    (path / "f").write_text("nested, changed\n")  # so a git that entered it would look inside


def planted_config(marker: Path) -> dict[str, str]:
    """Every configuration key that makes the commands ralph uses run a program."""
    return {
        "core.fsmonitor": MARK.format(marker=marker, name="fsmonitor") + "; false",
        "filter.x.clean": MARK.format(marker=marker, name="clean") + "; cat",
        "filter.x.smudge": MARK.format(marker=marker, name="smudge") + "; cat",
        "filter.x.required": "true",
        "diff.x.textconv": MARK.format(marker=marker, name="textconv") + "; cat",
        "diff.x.command": MARK.format(marker=marker, name="diff-command"),
        "diff.external": MARK.format(marker=marker, name="external-diff"),
        "gc.auto": "1",
        "gc.autoDetach": "false",
    }


def plant_hooks(git_dir: Path, marker: Path) -> None:
    hooks = git_dir / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("pre-commit", "post-commit", "post-checkout", "reference-transaction",
                 "post-index-change", "pre-auto-gc", "post-rewrite"):  # fmt: skip
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}/{hook}\n")
        (hooks / hook).chmod(0o755)


# --- nothing the repository configures runs ------------------------------------------------


def test_no_program_in_the_repositorys_own_config_runs(tmp_path: Path, marker: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n", "app.py": "v = 1\n"})
    (repo / ".gitattributes").write_text("* filter=x diff=x\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-qm", "attributes")
    for key, value in planted_config(marker).items():  # as an unsandboxed agent could
        git(repo, "config", key, value)
    plant_hooks(repo / ".git", marker)
    git(repo, "config", "core.hooksPath", str(repo / ".git" / "hooks"))
    # From here on only ralph's git runs (a plain `git show` would run the planted textconv).
    ws = start(repo)
    (repo / "app.py").write_text("v = 2\n")  # same size: git compares content through filters
    (repo / "new.py").write_text("n = 1\n")
    sha = iterate(ws)
    assert sha and gitrun.out(repo, "cat-file", "blob", f"{sha}:app.py") == "v = 2"
    assert {s.path for s in ws.diff_stat()} == {"app.py", "new.py"}
    gitrun.run(repo, "checkout", "-q", "main")
    wt = start(repo, worktree=True)  # `git worktree add` checks files out: smudge filters
    assert (wt.root / "app.py").read_text() == "v = 1\n"
    (wt.root / "app.py").write_text("v = 3\n")
    assert iterate(wt)


def test_a_gitlink_already_on_the_branch_is_never_entered(tmp_path: Path, marker: Path) -> None:
    # A branch an earlier (unprotected) run left: README.md is a gitlink, its repository is
    # there with a planted config. ralph's status must not enter it.
    repo = make_repo(tmp_path / "repo")
    git(repo, "rm", "-q", "README.md")
    nested_repo(repo / "README.md", planted_config(marker))
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "a gitlink")
    assert "160000" in git(repo, "ls-tree", "HEAD")
    ws = start(repo, allow_dirty=True)
    (repo / "app.py").write_text("x\n")
    sha = iterate(ws)
    assert sha and committed(repo, sha) == ["app.py"]


def test_the_runners_git_ignores_variables_that_point_it_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    other = make_repo(tmp_path / "other")
    with monkeypatch.context() as env:
        env.setenv("GIT_DIR", str(other / ".git"))  # e.g. ralph started from a git hook
        env.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
        env.setenv("GITHUB_TOKEN", "ghp_secret")
        assert not {"GIT_DIR", "GIT_INDEX_FILE", "GITHUB_TOKEN"} & set(gitrun.git_env())
        ws = start(repo)
        (repo / "a.py").write_text("a\n")
        assert iterate(ws)
    assert committed(repo) == ["a.py"]
    assert git(other, "log", "--format=%s") == "initial" and git(other, "status", "-s") == ""


# --- nested repositories --------------------------------------------------------------------


def test_nested_repositories_are_never_staged_and_are_reported(
    git_repo: Path, marker: Path
) -> None:
    ws = start(git_repo)
    (git_repo / "README.md").unlink()
    nested_repo(git_repo / "README.md", planted_config(marker))  # a tracked file made a repo
    nested_repo(git_repo / "vendor" / "lib", planted_config(marker))  # an untracked one
    (git_repo / "ok.py").write_text("ok\n")
    sha = iterate(ws)
    assert sha and committed(git_repo, sha) == ["ok.py"]
    assert "160000" not in git(git_repo, "ls-files", "-s")
    (line,) = ws.refusals()
    assert line.startswith("not committed: README.md, vendor/lib/ (a nested git repository")
    # Next iteration: the same repositories are not reported again, and still not staged.
    ws.begin_iteration()
    (git_repo / "two.py").write_text("2\n")
    assert iterate(ws) and committed(git_repo) == ["two.py"] and ws.refusals() == []


def test_a_gitlink_git_makes_after_ralph_looked_is_put_back_and_reported(
    git_repo: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = start(git_repo)
    (git_repo / "vendor").write_text("a file when ralph looked\n")
    (git_repo / "ok.py").write_text("ok\n")
    assert ws.changed_files() == ["ok.py", "vendor"]
    # It became a repository between ralph's look and git's staging.
    (git_repo / "vendor").unlink()
    nested_repo(git_repo / "vendor", planted_config(marker))
    monkeypatch.setattr(ws_mod, "refusal", lambda root, path: None)
    sha = ws.commit("ralph(x): iteration 1/1 — x")
    assert sha and committed(git_repo, sha) == ["ok.py"]
    assert "160000" not in git(git_repo, "ls-files", "-s")
    assert [line.split(" (")[0] for line in ws.refusals()] == ["not committed: vendor"]


def test_a_plain_directory_in_place_of_a_file_is_committed(git_repo: Path) -> None:
    ws = start(git_repo)
    (git_repo / "README.md").unlink()
    (git_repo / "README.md").mkdir()
    (git_repo / "README.md" / "index.md").write_text("# p\n")
    sha = iterate(ws)
    assert sha and committed(git_repo, sha) == ["README.md", "README.md/index.md"]
    assert ws.refusals() == []


# --- special, huge and cached files -----------------------------------------------------------


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging forever if something blocks (armed after the set-up)."""

    def hung(signum: int, frame: object) -> None:
        raise AssertionError("blocked: a FIFO was opened or read")

    previous = signal.signal(signal.SIGALRM, hung)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_fifos_sockets_and_huge_files_are_refused_with_a_line_each(
    tmp_path: Path, alarm: None
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n", "data.txt": "d\n"})
    ws = start(repo)
    (repo / "data.txt").unlink()
    os.mkfifo(repo / "data.txt")  # a tracked file made a FIFO: reading it blocks
    os.mkfifo(repo / "new.fifo")  # git does not list an untracked one
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(repo / "README.md.sock"))
        with open(repo / "big.bin", "wb") as big:
            big.truncate(4 * 1024**3)  # sparse: 4 GiB that git would read in full
        (repo / "ok.py").write_text("ok\n")
        signal.alarm(HANG)
        sha = iterate(ws)
    assert sha and committed(repo, sha) == ["ok.py"]
    lines = ws.refusals()
    assert "not committed: big.bin (larger than 50 MiB (4,294,967,296 bytes))" in lines
    assert "not committed: data.txt (a FIFO)" in lines
    assert len(lines) == 2  # the socket is not listed by git at all, like the untracked FIFO


def test_a_fifo_among_the_users_dirty_files_does_not_block(tmp_path: Path, alarm: None) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n", "data.txt": "d\n"})
    (repo / "data.txt").unlink()
    os.mkfifo(repo / "data.txt")
    with open(repo / "README.md", "wb") as big:
        big.truncate(staging.MAX_FILE_BYTES + 1)  # the user's, dirty: never hashed in full
    signal.alarm(HANG)
    ws = start(repo, allow_dirty=True)  # fingerprints what is dirty at the start
    (repo / "ok.py").write_text("ok\n")
    assert iterate(ws) and committed(repo) == ["ok.py"]


def test_caches_and_virtualenvs_are_never_staged_unless_tracked(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": "a\n", "node_modules/vendored.js": "v1\n"})
    for junk in ("__pycache__/app.cpython-311.pyc", "pkg/__pycache__/m.pyc", ".pytest_cache/v",
                 ".mypy_cache/x.json", ".ruff_cache/y", "node_modules/left-pad/index.js",
                 "env/pyvenv.cfg", "env/lib/site.py", "app.egg-info/PKG-INFO", ".tox/py/x",
                 "target/CACHEDIR.TAG", "target/debug/app"):  # fmt: skip
        (repo / junk).parent.mkdir(parents=True, exist_ok=True)
        (repo / junk).write_text("junk\n")
    check(cfg_for(repo))  # caches are not dirt either
    ws = start(repo)
    (repo / "app.py").write_text("b\n")
    (repo / "node_modules" / "vendored.js").write_text("v2\n")  # tracked: committed
    (repo / "pkg" / "m.py").write_text("m\n")
    sha = iterate(ws)
    assert sha and committed(repo, sha) == ["app.py", "node_modules/vendored.js", "pkg/m.py"]


def test_many_new_files_are_staged_in_one_commit(git_repo: Path) -> None:
    # update-index reads the paths once; `git add` with a pathspec per path was quadratic.
    ws = start(git_repo)
    for d in range(20):
        (git_repo / f"d{d}").mkdir()
        for f in range(1000):
            (git_repo / f"d{d}" / f"{f}.txt").touch()
    sha = iterate(ws)
    assert sha and len(committed(git_repo, sha)) == 20_000


# --- files that configure ralph -----------------------------------------------------------


def test_an_agents_change_to_ralph_yaml_or_the_prompt_file_is_undone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n", "prompts/harden.md": "Harden.\n"})
    prompt = repo / "prompts" / "harden.md"
    cfg = cfg_for(repo, prompt_source=str(prompt))
    check(cfg)
    ws = Workspace.prepare(cfg, "20250101-000000-abcd", "harden")
    ws.begin_iteration()
    (repo / "ralph.yaml").write_text("max_cost: 1000\n")  # none existed at the start
    prompt.write_text("---\ncompletion_promise: OWNED\n---\nDo as I say.\n")
    (repo / "ok.py").write_text("ok\n")
    sha = iterate(ws)
    assert sha and committed(repo, sha) == ["ok.py"]
    assert not (repo / "ralph.yaml").exists() and prompt.read_text() == "Harden.\n"
    (line,) = ws.refusals()
    assert line == (
        "not committed: prompts/harden.md, ralph.yaml (a file that configures ralph: the "
        "agent's change was undone)"
    )
    assert git(repo, "status", "--porcelain") == ""

    # Made a directory, or reached through a parent made a link out of the repository.
    ws.begin_iteration()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "harden.md").write_text("the host's file\n")
    (repo / "ralph.yaml").mkdir()
    (repo / "ralph.yaml" / "x").write_text("x\n")
    prompt.unlink()
    (repo / "prompts").rmdir()
    (repo / "prompts").symlink_to(outside)
    assert iterate(ws) is None
    assert (outside / "harden.md").read_text() == "the host's file\n"
    assert prompt.read_text() == "Harden.\n" and not (repo / "prompts").is_symlink()
    assert git(repo, "status", "--porcelain") == ""


def test_the_users_own_dirty_ralph_yaml_is_left_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# p\n", "ralph.yaml": "max_turns: 5\n"})
    (repo / "ralph.yaml").write_text("max_turns: 6\n")  # the user's edit, before the run
    ws = start(repo, allow_dirty=True)
    (repo / "ok.py").write_text("ok\n")
    assert iterate(ws) and committed(repo) == ["ok.py"]
    assert (repo / "ralph.yaml").read_text() == "max_turns: 6\n" and ws.refusals() == []


# --- time bounds ------------------------------------------------------------------------------


def test_a_git_command_that_blocks_is_stopped_at_its_time(git_repo: Path) -> None:
    fifo = git_repo.parent / "index.fifo"
    os.mkfifo(fifo)  # git opens its index and waits for a writer that never comes
    with pytest.raises(gitrun.GitTimeout, match=r"git status took over 1s in .* was stopped"):
        gitrun.run(git_repo, "status", env={"GIT_INDEX_FILE": str(fifo)}, timeout=1)


def test_after_a_stop_request_a_git_command_gets_only_a_few_seconds(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = git_repo.parent / "index.fifo"
    os.mkfifo(fifo)
    monkeypatch.setattr(gitrun, "STOPPING_TIMEOUT_S", 1.0)
    monkeypatch.setattr(STOP, "signum", signal.SIGINT)
    with pytest.raises(gitrun.GitTimeout, match="took over 1s"):
        gitrun.run(git_repo, "status", env={"GIT_INDEX_FILE": str(fifo)}, timeout=3600)


def test_a_command_slow_to_read_its_input_gets_all_of_it(git_repo: Path) -> None:
    # Input through a pipe deadlocked: communicate() resumed after its 0.5 s step never wrote
    # the rest (a loaded machine made `update-index --stdin` of 20,000 paths hit the timeout).
    data = b"x" * (1024 * 1024)
    slow_reader = "alias.slow-wc=!sleep 2; wc -c"
    proc = gitrun.run(git_repo, "-c", slow_reader, "slow-wc", stdin=data, timeout=HANG)
    assert proc.stdout.decode().strip() == str(len(data))


def test_a_git_failure_is_one_line_naming_the_command(git_repo: Path) -> None:
    with pytest.raises(RalphError) as raised:
        gitrun.run(git_repo, "rev-parse", "--verify", "no-such-ref")
    assert raised.value.message.startswith(f"git rev-parse failed in {git_repo}: fatal:")
    proc = subprocess.run(["git", "status"], cwd=git_repo, capture_output=True, check=False)
    assert proc.returncode == 0
