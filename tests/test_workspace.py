"""The git workspace on real temporary repositories: branches, worktrees, dirty trees, commits."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from ralph.config import RunConfig, find_main_repo
from ralph.errors import RalphError, UsageError
from ralph.git import commits, gitrun
from ralph.git import repo as repo_mod
from ralph.git import workspace as ws_mod
from ralph.git.commits import commit_message
from ralph.git.repo import check
from ralph.git.workspace import Workspace
from tests.helpers import BIN, clean_env, git, make_repo, run_cli, write_script


def cfg_for(repo: Path, **settings: object) -> RunConfig:
    return RunConfig(repo=repo, prompt="harden it", prompt_name="security", **settings)  # type: ignore[arg-type]


def start(repo: Path, run_id: str = "20250101-000000-abcd", **settings: object) -> Workspace:
    cfg = cfg_for(repo, **settings)
    check(cfg)
    ws = Workspace.prepare(cfg, run_id, "security")
    ws.begin_iteration()
    return ws


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a checkout except git's and ralph's own data."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in (".git", ".ralph")
    }


def porcelain(repo: Path) -> list[str]:
    """`git status --porcelain` lines, leading spaces kept (they say staged or not)."""
    out = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def committed_files(repo: Path, rev: str = "HEAD") -> list[str]:
    return git(repo, "show", "--name-only", "--format=", rev).splitlines()


# --- refusing a repository ----------------------------------------------------------------


def test_not_a_git_repository_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"is not a git repository; run `git init` or pass --repo"):
        check(cfg_for(tmp_path))
    with pytest.raises(UsageError) as raised:
        check(cfg_for(tmp_path / "missing"))
    assert raised.value.exit_code == 2


def test_repository_without_commits_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(UsageError, match="no commits yet"):
        check(cfg_for(tmp_path))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the repository to another user")
def test_a_repository_git_refuses_for_its_owner_names_the_real_cause(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    subprocess.run(["chown", "-R", "12345:12345", str(repo)], check=True)
    home = tmp_path / "home"
    home.mkdir()  # no ~/.gitconfig, so no safe.directory
    env = clean_env(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", ANTHROPIC_API_KEY="sk-ant-test")
    args = ["Fix it. <promise>DONE</promise>", "--dry-run", "--sandbox", "none"]
    proc = run_cli(args, cwd=repo, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "owned by another user" in proc.stderr and "safe.directory" in proc.stderr
    assert "no commits" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_dirty_tree_is_refused_naming_files_and_the_ways_out(git_repo: Path) -> None:
    (git_repo / "README.md").write_text("changed\n")
    for n in range(6):
        (git_repo / f"new{n}.txt").write_text("x\n")
    with pytest.raises(UsageError) as raised:
        check(cfg_for(git_repo))
    message = raised.value.message
    assert "README.md" in message and "new0.txt" in message
    assert "and 2 more" in message  # 7 paths: 5 named, the rest counted
    assert "--worktree" in message and "--allow-dirty" in message
    assert "\n" not in message
    check(cfg_for(git_repo, worktree=True))  # the two ways out are accepted
    check(cfg_for(git_repo, allow_dirty=True))
    with pytest.raises(UsageError):
        check(cfg_for(git_repo, no_commit=True))  # --no-commit is no way out


def test_ignored_files_and_ralph_state_are_not_dirt(git_repo: Path) -> None:
    (git_repo / ".gitignore").write_text("*.log\n")
    git(git_repo, "add", ".gitignore")
    git(git_repo, "commit", "-q", "-m", "ignore logs")
    (git_repo / "debug.log").write_text("noise\n")
    (git_repo / ".ralph" / "runs").mkdir(parents=True)
    (git_repo / ".ralph" / "ralph.db").write_bytes(b"journal")
    check(cfg_for(git_repo))  # no error


def test_an_existing_branch_is_never_reused(git_repo: Path) -> None:
    git(git_repo, "branch", "mine")
    with pytest.raises(UsageError, match="branch mine already exists"):
        check(cfg_for(git_repo, branch="mine"))
    with pytest.raises(UsageError, match="not a valid git branch name"):
        check(cfg_for(git_repo, branch="bad..name"))


def test_a_checkout_with_a_live_run_in_it_is_refused_to_another_run(git_repo: Path) -> None:
    other = repo_mod.acquire_checkout_lock(git_repo, "20250101-000000-aaaa")  # run A, live
    try:
        with pytest.raises(UsageError) as raised:
            check(cfg_for(git_repo))
        message = raised.value.message
        assert "another run is working in" in message and "run 20250101-000000-aaaa" in message
        assert "--worktree" in message and "\n" not in message and raised.value.exit_code == 2
        for setting in ({"in_place": True}, {"allow_dirty": True}, {"branch": "b"}):
            with pytest.raises(UsageError, match="another run is working"):
                check(cfg_for(git_repo, **setting))
        check(cfg_for(git_repo, worktree=True))  # its own checkout: no conflict
        with pytest.raises(UsageError, match="another run is working"):
            repo_mod.acquire_checkout_lock(git_repo, "20250101-000000-bbbb")  # the race, too
        with pytest.raises(UsageError, match=r"wait for it to end .*then resume"):
            repo_mod.acquire_checkout_lock(git_repo, "20250101-000000-bbbb", resuming=True)
    finally:
        other.release()
    check(cfg_for(git_repo))  # A ended (or died): the checkout is free


def test_run_b_never_switches_head_under_a_live_run_a(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    waiting, go = tmp_path / "waiting", tmp_path / "go"
    block = f"touch {waiting}; until [ -f {go} ]; do sleep 0.05; done; echo a > a.txt"
    slow = write_script(
        tmp_path / "a.yaml",
        [[{"text": "w", "tools": [{"bash": {"command": block}}]}, "A done <promise>X</promise>"]],
    )
    quick = write_script(tmp_path / "b.yaml", [["B done <promise>X</promise>"]])
    common = ["go <promise>X</promise>", "--sandbox", "none", "--max-iterations", "1"]
    run_a = subprocess.Popen(
        [str(BIN / "ralph-loop"), *common, "--model", f"script:{slow}"],
        cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not waiting.exists():
            assert run_a.poll() is None, run_a.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        branch_a = git(repo, "branch", "--show-current")
        branches = git(repo, "branch", "--format=%(refname:short)")
        for extra in ([], ["--dry-run"], ["--in-place"], ["--allow-dirty"]):
            run_b = run_cli([*common, "--model", f"script:{quick}", *extra], cwd=repo)
            assert run_b.returncode == 2, run_b.stderr
            lines = run_b.stderr.strip().splitlines()
            assert len(lines) == 1 and "another run is working" in lines[0], run_b.stderr
            assert "--worktree" in lines[0]
        assert git(repo, "branch", "--show-current") == branch_a  # HEAD left alone
        assert git(repo, "branch", "--format=%(refname:short)") == branches
        in_worktree = run_cli([*common, "--model", f"script:{quick}", "--worktree"], cwd=repo)
        assert in_worktree.returncode == 0, in_worktree.stderr  # the way out works
    finally:
        go.touch()
        _, err = run_a.communicate(timeout=300)
    assert run_a.returncode == 0, err
    assert (
        git(repo, "show", "--name-only", "--format=", branch_a) == "a.txt"
    )  # A's work, on A's branch


# --- --dry-run: the same checks, nothing created ----------------------------------------------


def test_dry_run_refuses_what_a_run_refuses_and_creates_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    plain = tmp_path / "plain"
    plain.mkdir()
    script = write_script(tmp_path / "s.yaml", [["done <promise>X</promise>"]])
    prompt = tmp_path / "p.md"
    prompt.write_text("go <promise>X</promise>\n")
    no_keys = {k: v for k, v in clean_env().items() if not k.startswith("ANTHROPIC_")}

    def dry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli([str(prompt), "--dry-run", "--sandbox", "none", *args], cwd=repo, env=env)

    refused = {
        "cannot read model script": dry("--model", "script:/nope.yaml"),
        "no Anthropic credentials": dry("--model", "claude-sonnet-4-5", env=no_keys),
        "is not a git repository": dry("--model", f"script:{script}", "--repo", str(plain)),
        "no commits yet": dry("--model", f"script:{script}", "--repo", str(empty)),
    }
    (repo / "dirt.txt").write_text("x\n")
    refused["uncommitted changes (dirt.txt)"] = dry("--model", f"script:{script}")
    for message, proc in refused.items():
        assert proc.returncode == 2, (message, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert proc.stdout == ""
    ok = dry("--model", f"script:{script}", "--allow-dirty")
    assert ok.returncode == 0, ok.stderr
    for where in (repo, empty, plain):
        assert not (where / ".ralph").exists()  # no journal, no lock, no worktree
    assert git(repo, "branch", "--format=%(refname:short)") == "main"
    assert git(repo, "status", "--porcelain") == "?? dirt.txt"


# --- branches and worktrees ---------------------------------------------------------------


def test_default_branch_is_named_after_the_prompt_and_utc_time(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    frozen = time.gmtime(time.time())  # both runs start in this second, however slow the machine
    monkeypatch.setattr(time, "gmtime", lambda secs=None: frozen)
    base = git(git_repo, "rev-parse", "HEAD")
    ws = start(git_repo)
    assert re.fullmatch(r"ralph/security-\d{8}-\d{6}", ws.branch)
    assert git(git_repo, "symbolic-ref", "--short", "HEAD") == ws.branch
    assert ws.base_commit == base
    assert ws.root == ws.main_repo == git_repo
    assert not ws.worktree
    # a second run in the same second gets its own branch, never the first one's
    git(git_repo, "checkout", "-q", "main")
    again = Workspace.prepare(cfg_for(git_repo), "20250101-000000-ef01", "security")
    assert again.branch != ws.branch and again.branch.startswith(ws.branch[:-2])


def test_branch_option_and_in_place(git_repo: Path) -> None:
    ws = start(git_repo, branch="hardening")
    assert ws.branch == "hardening" == git(git_repo, "symbolic-ref", "--short", "HEAD")
    git(git_repo, "checkout", "-q", "main")
    here = start(git_repo, in_place=True)
    assert here.branch == "main" == git(git_repo, "symbolic-ref", "--short", "HEAD")


def test_ralph_dir_is_excluded_once_through_info_exclude(git_repo: Path) -> None:
    start(git_repo)
    git(git_repo, "checkout", "-q", "main")
    start(git_repo, run_id="20250101-000001-abcd")
    exclude = (git_repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("/.ralph/") == 1
    assert not (git_repo / ".gitignore").exists()
    (git_repo / ".ralph" / "x").mkdir(parents=True)
    (git_repo / ".ralph" / "x" / "f").write_text("state")
    assert git(git_repo, "status", "--porcelain") == ""


def test_worktree_leaves_the_users_checkout_byte_for_byte_unchanged(git_repo: Path) -> None:
    (git_repo / "src").mkdir()
    (git_repo / "src" / "app.py").write_text("print('v1')\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "app")
    # the user's own uncommitted work, staged and not, tracked and not
    (git_repo / "README.md").write_text("# my edit in progress\n")
    (git_repo / "notes.txt").write_text("user's notes\n")
    (git_repo / "src" / "app.py").write_text("print('user wip')\n")
    git(git_repo, "add", "src/app.py")
    before_files, before_status = tree_bytes(git_repo), git(git_repo, "status", "--porcelain")
    before_head = git(git_repo, "rev-parse", "HEAD", "--symbolic-full-name", "HEAD")
    before_index = (git_repo / ".git" / "index").read_bytes()

    ws = start(git_repo, run_id="run-wt", worktree=True)
    assert ws.worktree and ws.root == ws.main_repo / ".ralph" / "worktrees" / "run-wt"
    assert ws.main_repo == git_repo
    # the worktree is a clean checkout of HEAD, without the user's uncommitted changes
    assert (ws.root / "src" / "app.py").read_text() == "print('v1')\n"
    assert not (ws.root / "notes.txt").exists()
    (ws.root / "src" / "app.py").write_text("print('hardened')\n")
    (ws.root / "SECURITY.md").write_text("# policy\n")
    assert ws.changed_files() == ["SECURITY.md", "src/app.py"]
    sha = ws.commit(commit_message("security", 1, 3, "harden app", "run-wt"))
    assert sha and git(git_repo, "rev-parse", ws.branch) == sha
    assert sorted(committed_files(git_repo, sha)) == ["SECURITY.md", "src/app.py"]

    assert tree_bytes(git_repo) == before_files
    assert git(git_repo, "status", "--porcelain") == before_status
    assert git(git_repo, "rev-parse", "HEAD", "--symbolic-full-name", "HEAD") == before_head
    assert (git_repo / ".git" / "index").read_bytes() == before_index
    assert find_main_repo(ws.root / "src") == ws.main_repo
    assert find_main_repo(git_repo) == git_repo


# --- commits ------------------------------------------------------------------------------


def test_commit_message_subject_and_trailers(git_repo: Path) -> None:
    message = commit_message("security", 2, 5, "Added rate limiting\n\nmore", "r-1")
    assert message.splitlines()[0] == "ralph(security): iteration 2/5 — Added rate limiting more"
    assert "iteration 3/∞ — " in commit_message("security", 3, 0, "x", "r-1")
    assert commit_message("security", 4, 5, "x", "r-1", interrupted=True).startswith(
        "ralph(security): iteration 4 (interrupted)\n"
    )
    long = commit_message("p", 1, 1, "word " * 40, "r").splitlines()[0]
    assert len(long.split(" — ", 1)[1]) <= 72 and long.endswith("…")

    ws = start(git_repo, run_id="r-1")
    (ws.root / "a.py").write_text("a = 1\n")
    ws.changed_files()
    sha = ws.commit(message)
    assert sha
    assert git(git_repo, "log", "-1", "--format=%s", sha) == message.splitlines()[0]
    trailers = git(git_repo, "log", "-1", "--format=%(trailers:only,unfold)", sha)
    assert trailers.splitlines() == ["Ralph-Run: r-1", "Ralph-Iteration: 2"]
    body = git(git_repo, "log", "-1", "--format=%B", sha)
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"], input=body, capture_output=True, text=True
    ).stdout
    assert parsed.splitlines() == ["Ralph-Run: r-1", "Ralph-Iteration: 2"]
    # the user's identity when configured
    assert git(git_repo, "log", "-1", "--format=%an <%ae>|%cn", sha) == (
        "Test User <test@example.com>|Test User"
    )


def test_nothing_changed_means_no_commit(git_repo: Path) -> None:
    ws = start(git_repo)
    head = git(git_repo, "rev-parse", "HEAD")
    assert ws.changed_files() == []
    assert ws.commit("ralph(x): iteration 1/1 — nothing") is None
    assert git(git_repo, "rev-parse", "HEAD") == head


def test_deletions_and_odd_names_are_committed(git_repo: Path) -> None:
    ws = start(git_repo)
    (git_repo / "README.md").unlink()
    (git_repo / "*.py").write_text("a literal star\n")
    (git_repo / "dir with space").mkdir()
    (git_repo / "dir with space" / "ünïcode.txt").write_text("x\n")
    assert ws.changed_files() == ["*.py", "README.md", "dir with space/ünïcode.txt"]
    sha = ws.commit("ralph(x): iteration 1/1 — odd names")
    assert sha
    assert git(git_repo, "status", "--porcelain") == ""
    assert "README.md" not in git(git_repo, "ls-tree", "-r", "--name-only", "HEAD")


def test_ralph_state_is_never_committed(git_repo: Path) -> None:
    # even when the user's .gitignore un-ignores it, which overrides info/exclude
    (git_repo / ".gitignore").write_text("!.ralph/\n")
    git(git_repo, "add", ".gitignore")
    git(git_repo, "commit", "-q", "-m", "gitignore")
    ws = start(git_repo)
    (git_repo / ".ralph" / "runs" / "r").mkdir(parents=True)
    (git_repo / ".ralph" / "ralph.db").write_bytes(b"journal")
    (git_repo / ".ralph" / "runs" / "r" / "lock").write_text("pid")
    (git_repo / "work.py").write_text("x = 1\n")
    assert ws.changed_files() == ["work.py"]
    sha = ws.commit("ralph(x): iteration 1/1 — work")
    tracked = git(git_repo, "ls-tree", "-r", "--name-only", sha).splitlines()
    assert "work.py" in tracked and not any(p.startswith(".ralph") for p in tracked)


def test_allow_dirty_commits_only_the_paths_ralph_changed(git_repo: Path) -> None:
    (git_repo / "lib.py").write_text("lib = 1\n")
    git(git_repo, "add", "lib.py")
    git(git_repo, "commit", "-q", "-m", "lib")
    (git_repo / "README.md").write_text("# user's edit\n")  # the user's, tracked
    (git_repo / "user.txt").write_text("user's scratch\n")  # the user's, untracked
    ws = start(git_repo, allow_dirty=True)
    (git_repo / "README.md").write_text("# user's edit\n+ agent's line\n")  # both touched it
    (git_repo / "lib.py").write_text("lib = 2\n")  # clean at start: ralph's
    (git_repo / "new.py").write_text("new = 1\n")  # new: ralph's
    assert ws.changed_files() == ["README.md", "lib.py", "new.py"]
    sha = ws.commit("ralph(x): iteration 1/2 — lib")
    assert sha and sorted(committed_files(git_repo, sha)) == ["lib.py", "new.py"]
    assert ws.last_commit_files == ["lib.py", "new.py"]
    assert (git_repo / "README.md").read_text() == "# user's edit\n+ agent's line\n"
    assert porcelain(git_repo) == [" M README.md", "?? user.txt"]
    # the next iteration: the user's paths are still theirs, nothing new to commit
    ws.begin_iteration()
    assert ws.changed_files() == []
    assert ws.commit("ralph(x): iteration 2/2 — none") is None


def test_allow_dirty_keeps_the_users_staged_changes_staged_and_uncommitted(git_repo: Path) -> None:
    (git_repo / "staged.txt").write_text("user staged this\n")
    git(git_repo, "add", "staged.txt")
    ws = start(git_repo, allow_dirty=True)
    (git_repo / "agent.py").write_text("x = 1\n")
    ws.changed_files()
    sha = ws.commit("ralph(x): iteration 1/1 — agent")
    assert sha and committed_files(git_repo, sha) == ["agent.py"]
    assert porcelain(git_repo) == ["A  staged.txt"]


def test_allow_dirty_never_commits_a_users_file_the_agent_staged(git_repo: Path) -> None:
    (git_repo / "README.md").write_text("the user's edit\n")
    ws = start(git_repo, allow_dirty=True)
    git(git_repo, "add", "-A")  # an agent without the sandbox can run git itself
    (git_repo / "agent.py").write_text("x = 1\n")
    ws.changed_files()
    sha = ws.commit("ralph(x): iteration 1/1 — agent")
    assert sha and committed_files(git_repo, sha) == ["agent.py"]
    assert porcelain(git_repo) == ["M  README.md"]


def test_commits_run_no_hooks_and_use_a_fixed_identity_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    marker = tmp_path / "hook-ran"
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-checkout"):
        path = repo / ".git" / "hooks" / hook
        path.write_text(f"#!/bin/sh\necho {hook} >> {marker}\nexit 1\n")
        path.chmod(0o755)
    ws = start(repo)
    (repo / "a.py").write_text("a\n")
    ws.changed_files()
    sha = ws.commit("ralph(x): iteration 1/1 — a")
    assert sha
    assert not marker.exists()
    assert git(repo, "log", "-1", "--format=%an <%ae>", sha) == commits.IDENTITY[0] + (
        f" <{commits.IDENTITY[1]}>"
    )


def test_commit_refuses_when_head_left_the_run_branch(git_repo: Path) -> None:
    ws = start(git_repo)
    git(git_repo, "checkout", "-q", "main")
    (git_repo / "a.py").write_text("a\n")
    ws.changed_files()
    with pytest.raises(RalphError, match="not the run's branch"):
        ws.commit("ralph(x): iteration 1/1 — a")
    assert git(git_repo, "rev-parse", "main") == ws.base_commit


def test_an_iteration_asks_git_status_once(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = cfg_for(git_repo)
    check(cfg)
    ws = Workspace.prepare(cfg, "r-6", "security")
    calls: list[Path] = []
    real = ws_mod._status
    monkeypatch.setattr(
        ws_mod, "_status", lambda root, filters=None: calls.append(root) or real(root, filters)
    )
    for i in range(3):
        ws.begin_iteration()
        (git_repo / f"f{i}.py").write_text("x\n")
        assert ws.changed_files() == [f"f{i}.py"]
        assert ws.commit(f"ralph(x): iteration {i + 1}/3 — f{i}")
    assert len(calls) == 3  # changed_files only: begin_iteration reuses the state after commit


def test_diff_stat_lists_files_changed_on_the_branch(git_repo: Path) -> None:
    ws = start(git_repo)
    (git_repo / "README.md").write_text("# project\nmore\n")
    (git_repo / "b.bin").write_bytes(b"\0\1\2")
    ws.changed_files()
    ws.commit("ralph(x): iteration 1/1 — b")
    stats = {s.path: (s.added, s.deleted) for s in ws.diff_stat()}
    assert stats == {"README.md": (1, 0), "b.bin": (None, None)}


# --- resume ---------------------------------------------------------------------------------


def test_reopen_checks_out_the_run_branch_and_refuses_foreign_changes(git_repo: Path) -> None:
    ws = start(git_repo, run_id="r-2")
    (git_repo / "work.py").write_text("x\n")
    ws.changed_files()
    ws.commit("ralph(x): iteration 1/2 — work")
    git(git_repo, "checkout", "-q", "main")
    (git_repo / "README.md").write_text("the user's change\n")
    cfg = cfg_for(git_repo)
    with pytest.raises(UsageError, match=r"uncommitted changes \(README\.md\)"):
        Workspace.reopen(cfg, ws.branch, None, ws.base_commit, "r-2")
    git(git_repo, "checkout", "-q", "--", "README.md")
    again = Workspace.reopen(cfg, ws.branch, None, ws.base_commit, "r-2")
    assert git(git_repo, "symbolic-ref", "--short", "HEAD") == ws.branch == again.branch
    with pytest.raises(UsageError, match="no longer exists"):
        Workspace.reopen(cfg, "ralph/gone", None, ws.base_commit, "r-2")


def test_reopen_commits_the_dead_iterations_work(git_repo: Path) -> None:
    ws = start(git_repo, run_id="r-3")
    (git_repo / "half.py").write_text("half done\n")  # then the process is killed
    again = Workspace.reopen(cfg_for(git_repo), ws.branch, None, ws.base_commit, "r-3")
    assert again.changed_files() == ["half.py"]
    sha = again.commit(commit_message("security", 1, 3, "", "r-3", interrupted=True))
    assert sha and committed_files(git_repo, sha) == ["half.py"]


def test_reopen_with_allow_dirty_still_leaves_the_users_files(git_repo: Path) -> None:
    (git_repo / "README.md").write_text("user's\n")
    ws = start(git_repo, run_id="r-4", allow_dirty=True)
    (git_repo / "agent.py").write_text("x\n")  # then the process is killed
    again = Workspace.reopen(
        cfg_for(git_repo, allow_dirty=True), ws.branch, None, ws.base_commit, "r-4"
    )
    again.changed_files()
    sha = again.commit("ralph(x): iteration 1 (interrupted)")
    assert sha and committed_files(git_repo, sha) == ["agent.py"]
    assert porcelain(git_repo) == [" M README.md"]


def test_reopen_recreates_a_removed_worktree(git_repo: Path) -> None:
    ws = start(git_repo, run_id="r-5", worktree=True)
    (ws.root / "a.py").write_text("a\n")
    ws.changed_files()
    sha = ws.commit("ralph(x): iteration 1/2 — a")
    subprocess.run(["rm", "-rf", str(ws.root)], check=True)
    again = Workspace.reopen(cfg_for(git_repo, worktree=True), ws.branch, ws.root, ws.base_commit)
    assert (again.root / "a.py").read_text() == "a\n"
    assert git(again.root, "rev-parse", "HEAD") == sha


def test_reopen_and_a_git_lock_left_by_a_killed_git(git_repo: Path) -> None:
    ws = start(git_repo, run_id="r-7")
    lock = git_repo / ".git" / "index.lock"
    lock.write_text("")
    with open(lock) as held:  # a live process holds it (someone's git): the user decides
        with pytest.raises(UsageError, match=r"index\.lock exists"):
            Workspace.reopen(cfg_for(git_repo), ws.branch, None, ws.base_commit, "r-7")
        assert held and lock.exists()
    # Nobody holds it: a git killed with the run left it, and it is removed.
    Workspace.reopen(cfg_for(git_repo), ws.branch, None, ws.base_commit, "r-7")
    assert not lock.exists()
    git(git_repo, "checkout", "-q", "main")
    wt = start(git_repo, run_id="r-8", worktree=True)
    wt_lock = Path(git(wt.root, "rev-parse", "--path-format=absolute", "--git-path", "index.lock"))
    wt_lock.write_text("")  # ralph's own worktree, and we hold the run lock: stale
    again = Workspace.reopen(cfg_for(git_repo, worktree=True), wt.branch, wt.root, wt.base_commit)
    assert not wt_lock.exists()
    (again.root / "a.py").write_text("a\n")
    again.changed_files()
    assert again.commit("ralph(x): iteration 1/1 — a")


# --- races with other processes -------------------------------------------------------------


def test_a_brief_index_lock_is_waited_out_and_a_stale_one_is_named(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    ws = start(git_repo)
    lock = git_repo / ".git" / "index.lock"
    (git_repo / "a.py").write_text("a\n")
    lock.write_text("")  # another git (an editor's `git status`) holds the index a moment
    other_git_done = threading.Timer(0.3, lock.unlink)
    other_git_done.start()
    try:
        ws.changed_files()
        sha = ws.commit("ralph(x): iteration 1/2 — a")
    finally:
        other_git_done.join()
    assert sha and committed_files(git_repo, sha) == ["a.py"]

    monkeypatch.setattr(gitrun, "INDEX_LOCK_WAIT_S", 0.2)
    ws.begin_iteration()
    (git_repo / "b.py").write_text("b\n")
    lock.write_text("")  # left by a killed git: the error names it, in one line
    ws.changed_files()
    with pytest.raises(RalphError) as raised:
        ws.commit("ralph(x): iteration 2/2 — b")
    message = raised.value.message
    assert message.startswith(
        f"git update-index failed in {git_repo}: fatal: Unable to create '{lock}'"
    )
    assert "delete that file" in message and "\n" not in message


def test_a_branch_name_taken_between_look_and_create_gets_the_next_suffix(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = repo_mod.default_branch_name("security")
    monkeypatch.setattr(repo_mod, "default_branch_name", lambda prompt, now=None: name)
    first = start(git_repo, run_id="r-1", worktree=True)
    real_look = repo_mod._branch_exists
    looked: list[str] = []

    def looked_before_the_first_run_made_it(root: Path, branch: str) -> bool:
        if branch == name and not looked:  # two --worktree runs started in the same second
            looked.append(branch)
            return False
        return real_look(root, branch)

    monkeypatch.setattr(repo_mod, "_branch_exists", looked_before_the_first_run_made_it)
    second = start(git_repo, run_id="r-2", worktree=True)
    assert (first.branch, second.branch) == (name, f"{name}-2")
    assert git(second.root, "branch", "--show-current") == f"{name}-2"
    # A --branch NAME another run took since `check`: a usage error, nothing half-made.
    with pytest.raises(UsageError, match=f"branch {name}-2 already exists"):
        Workspace.prepare(cfg_for(git_repo, worktree=True, branch=f"{name}-2"), "r-3", "x")
    assert not (git_repo / ".ralph" / "worktrees" / "r-3").exists()
    assert len(git(git_repo, "worktree", "list").splitlines()) == 3


def test_worktree_runs_started_together_all_run_on_their_own_branches(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    script = write_script(
        tmp_path / "s.yaml",
        [
            [
                {"text": "w", "tools": [{"bash": {"command": "echo x > w.txt"}}]},
                "<promise>X</promise>",
            ]
        ],
    )
    args = [str(BIN / "ralph-loop"), "go <promise>X</promise>", "--model", f"script:{script}"]
    args += ["--sandbox", "none", "--max-iterations", "1", "--worktree"]
    procs = [
        subprocess.Popen(args, cwd=repo, env=clean_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    branches = git(repo, "branch", "--format=%(refname:short)").splitlines()
    assert len(branches) == 4 and git(repo, "branch", "--show-current") == "main"
    for branch in branches[1:] if branches[0] == "main" else branches[:-1]:
        assert git(repo, "show", "--name-only", "--format=", branch) == "w.txt"


def test_a_run_that_came_and_went_before_the_checkout_lock_is_seen(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ralph.cli import build_config
    from ralph.run.runner import execute

    script = write_script(git_repo.parent / "s.yaml", [["done <promise>X</promise>"]])
    flags = {"model": f"script:{script}", "sandbox": "none", "max_iterations": 1}
    cfg = build_config("go <promise>X</promise>", flags, git_repo)
    real_lock = repo_mod.acquire_checkout_lock

    def after_another_run(main: Path, run_id: str, resuming: bool = False) -> object:
        # Run A took the checkout after this run's check, ran with --no-commit and ended.
        (main / "left.txt").write_text("A's uncommitted work\n")
        return real_lock(main, run_id, resuming)

    monkeypatch.setattr(repo_mod, "acquire_checkout_lock", after_another_run)
    with pytest.raises(UsageError, match=r"uncommitted changes \(left\.txt\)"):
        execute(cfg)
    assert git(git_repo, "branch", "--format=%(refname:short)") == "main"
    assert git(git_repo, "log", "--format=%s") == "initial"
    check(cfg_for(git_repo, allow_dirty=True))  # and the checkout lock was let go


def test_a_checkout_ralph_cannot_write_in_is_refused_in_one_line(
    requires_bwrap: None, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    script = write_script(tmp_path / "s.yaml", [["done <promise>X</promise>"]])
    run = [str(BIN / "ralph-loop"), "go <promise>X</promise>", "--model", f"script:{script}"]
    run += ["--sandbox", "none", "--max-iterations", "1"]
    read_only = ["bwrap", "--bind", "/", "/", "--ro-bind", str(repo), str(repo)]
    read_only += ["--dev", "/dev", "--proc", "/proc"]
    for extra in ([], ["--worktree"], ["--dry-run"]):
        proc = subprocess.run(
            [*read_only, *run, *extra], cwd=repo, env=clean_env(), capture_output=True, text=True
        )
        assert proc.returncode == 2, (extra, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{repo} is not writable" in lines[0], proc.stderr
    assert not (repo / ".ralph").exists()
    (repo / ".ralph").write_text("not a directory\n")
    proc = run_cli(["go <promise>X</promise>", "--model", f"script:{script}", "--sandbox", "none"],
                   cwd=repo)  # fmt: skip
    assert proc.returncode == 2 and ".ralph is not a directory" in proc.stderr, proc.stderr
    assert git(repo, "branch", "--format=%(refname:short)") == "main"


def test_reopen_refuses_ref_locks_left_by_a_killed_git(git_repo: Path) -> None:
    ws = start(git_repo, run_id="r-9")
    git_dir = git_repo / ".git"
    # A `git update-ref` killed with the run leaves the branch's lock, and HEAD's when HEAD
    # names the branch: the first commit would fail, after the iteration's work.
    # Held by a live process, it is refused; held by none (a git killed with the run), removed.
    for lock in (git_dir / "refs" / "heads" / f"{ws.branch}.lock", git_dir / "HEAD.lock"):
        lock.write_text("")
        with open(lock), pytest.raises(UsageError) as raised:
            Workspace.reopen(cfg_for(git_repo), ws.branch, None, ws.base_commit, "r-9")
        assert f"{lock} exists" in raised.value.message and "delete it" in raised.value.message
        Workspace.reopen(cfg_for(git_repo), ws.branch, None, ws.base_commit, "r-9")
        assert not lock.exists()
    again = Workspace.reopen(cfg_for(git_repo), ws.branch, None, ws.base_commit, "r-9")
    (git_repo / "a.py").write_text("a\n")
    again.changed_files()
    assert again.commit("ralph(x): iteration 1/1 — a")

    git(git_repo, "checkout", "-q", "main")
    wt = start(git_repo, run_id="r-10", worktree=True)
    head_lock = git_dir / "worktrees" / "r-10" / "HEAD.lock"
    head_lock.write_text("")  # the run's own worktree, and we hold the run lock: stale
    again = Workspace.reopen(cfg_for(git_repo, worktree=True), wt.branch, wt.root, wt.base_commit)
    assert not head_lock.exists()
    (again.root / "b.py").write_text("b\n")
    again.changed_files()
    assert again.commit("ralph(x): iteration 1/1 — b")
    branch_lock = git_dir / "refs" / "heads" / f"{wt.branch}.lock"
    branch_lock.write_text("")  # shared by every checkout of the repository: a live holder
    with open(branch_lock), pytest.raises(UsageError, match="exists"):
        Workspace.reopen(cfg_for(git_repo, worktree=True), wt.branch, wt.root, wt.base_commit)
