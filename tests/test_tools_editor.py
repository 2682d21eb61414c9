"""The text editor tool: its commands, and confinement to the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ralph.tools.base import ToolResult
from ralph.tools.editor import EditorTool


@pytest.fixture
def repo(git_repo: Path) -> Path:
    (git_repo / "src" / "pkg" / "deep").mkdir(parents=True)
    (git_repo / "src" / "app.py").write_text("one\ntwo\nthree\n")
    (git_repo / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (git_repo / "src" / "pkg" / "deep" / "hidden_level3.py").write_text("")
    (git_repo / ".env").write_text("SECRET=1\n")
    (git_repo / "src" / ".cache").mkdir()
    return git_repo


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the repository, with a file the agent must never read or change."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "victim.txt").write_text("outside content\n")
    return path


def edit(root: Path, **tool_input: Any) -> ToolResult:
    return EditorTool(root, output_cap=2000).run(tool_input)


def test_definition_is_anthropics_schema_less_tool(repo: Path) -> None:
    assert EditorTool(repo).definition() == {
        "type": "text_editor_20250728",
        "name": "str_replace_based_edit_tool",
    }


# --- view ---------------------------------------------------------------------------------


def test_view_file_is_line_numbered(repo: Path) -> None:
    result = edit(repo, command="view", path="src/app.py")
    assert not result.is_error
    assert result.content == "src/app.py (3 lines):\n     1\tone\n     2\ttwo\n     3\tthree"


def test_view_range_and_to_the_end(repo: Path) -> None:
    assert edit(repo, command="view", path="src/app.py", view_range=[2, 2]).content.endswith(
        "     2\ttwo"
    )
    tail = edit(repo, command="view", path=str(repo / "src/app.py"), view_range=[2, -1]).content
    assert tail.endswith("     2\ttwo\n     3\tthree") and "\tone" not in tail


@pytest.mark.parametrize("view_range", [[0, 2], [3, 2], [1], "1-2", [1, "x"], [9, -1]])
def test_bad_view_ranges_are_errors(repo: Path, view_range: Any) -> None:
    result = edit(repo, command="view", path="src/app.py", view_range=view_range)
    assert result.is_error and "view_range" in result.content


def test_view_directory_lists_two_levels_without_hidden_items(repo: Path) -> None:
    result = edit(repo, command="view", path=".")
    lines = result.content.splitlines()[1:]
    assert lines == ["README.md", "src/", "src/app.py", "src/pkg/"]
    assert ".env" not in result.content and ".git" not in result.content
    sub = edit(repo, command="view", path="src").content.splitlines()[1:]
    assert sub == ["src/app.py", "src/pkg/", "src/pkg/deep/", "src/pkg/mod.py"]


def test_view_binary_file_is_refused(repo: Path) -> None:
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    result = edit(repo, command="view", path="logo.png")
    assert result.is_error and "binary file" in result.content


def test_view_huge_file_shows_the_start_and_how_to_ask_for_more(repo: Path) -> None:
    (repo / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 100_001)))
    result = edit(repo, command="view", path="big.txt")
    assert not result.is_error
    assert len(result.content) < 2600
    assert "     1\tline 1\n" in result.content and "line 100000" not in result.content
    assert "of 100000" in result.content and "view_range" in result.content
    later = edit(repo, command="view", path="big.txt", view_range=[99_999, -1]).content
    assert later.endswith(" 99999\tline 99999\n100000\tline 100000")


def test_view_very_long_line_is_cut(repo: Path) -> None:
    (repo / "min.js").write_text("x" * 50_000 + "\n")
    result = edit(repo, command="view", path="min.js")
    assert len(result.content) < 2600 and "line cut: 50000 characters" in result.content


def test_view_missing_path(repo: Path) -> None:
    result = edit(repo, command="view", path="nope.py")
    assert result.is_error and "does not exist" in result.content


# --- edits --------------------------------------------------------------------------------


def test_create_makes_parent_directories_and_overwrites(repo: Path) -> None:
    result = edit(repo, command="create", path="new/dir/f.txt", file_text="a\nb\n")
    assert not result.is_error and "Created new/dir/f.txt (2 lines)" in result.content
    assert (repo / "new/dir/f.txt").read_text() == "a\nb\n"
    again = edit(repo, command="create", path="new/dir/f.txt", file_text="c")
    assert "Overwrote" in again.content and (repo / "new/dir/f.txt").read_text() == "c"


def test_create_needs_file_text_and_a_file_path(repo: Path) -> None:
    assert edit(repo, command="create", path="x.txt").is_error
    assert not (repo / "x.txt").exists()
    result = edit(repo, command="create", path="src", file_text="x")
    assert result.is_error and "directory" in result.content


def test_str_replace_exactly_one_match(repo: Path) -> None:
    result = edit(repo, command="str_replace", path="src/app.py", old_str="two", new_str="2\n2b")
    assert not result.is_error, result.content
    assert (repo / "src/app.py").read_text() == "one\n2\n2b\nthree\n"
    assert "     2\t2\n     3\t2b" in result.content


def test_str_replace_without_match_says_so_and_changes_nothing(repo: Path) -> None:
    result = edit(repo, command="str_replace", path="src/app.py", old_str="four", new_str="4")
    assert result.is_error and "no match" in result.content
    assert (repo / "src/app.py").read_text() == "one\ntwo\nthree\n"


def test_str_replace_with_several_matches_says_how_many(repo: Path) -> None:
    (repo / "dup.txt").write_text("a = 1\nb = 2\na = 1\na = 1\n")
    result = edit(repo, command="str_replace", path="dup.txt", old_str="a = 1", new_str="a = 9")
    assert result.is_error
    assert "matches 3 times" in result.content and "lines 1, 3, 4" in result.content
    assert (repo / "dup.txt").read_text() == "a = 1\nb = 2\na = 1\na = 1\n"


def test_str_replace_handles_windows_line_endings(repo: Path) -> None:
    (repo / "win.txt").write_bytes(b"a\r\nb\r\nc\r\n")
    result = edit(repo, command="str_replace", path="win.txt", old_str="a\nb", new_str="A\nB")
    assert not result.is_error, result.content
    assert (repo / "win.txt").read_bytes() == b"A\r\nB\r\nc\r\n"


def test_str_replace_with_empty_new_str_deletes(repo: Path) -> None:
    assert not edit(repo, command="str_replace", path="src/app.py", old_str="two\n").is_error
    assert (repo / "src/app.py").read_text() == "one\nthree\n"


@pytest.mark.parametrize("key", ["insert_text", "new_str"])
def test_insert_at_top_middle_and_end(repo: Path, key: str) -> None:
    path = repo / "src/app.py"
    assert not edit(
        repo, command="insert", path="src/app.py", insert_line=0, **{key: "zero"}
    ).is_error
    assert not edit(
        repo, command="insert", path="src/app.py", insert_line=2, **{key: "1.5\n"}
    ).is_error
    assert not edit(
        repo, command="insert", path="src/app.py", insert_line=5, **{key: "end"}
    ).is_error
    assert path.read_text() == "zero\none\n1.5\ntwo\nthree\nend\n"


def test_insert_after_a_last_line_without_newline(repo: Path) -> None:
    (repo / "n.txt").write_text("a\nb")
    assert not edit(repo, command="insert", path="n.txt", insert_line=2, insert_text="c").is_error
    assert (repo / "n.txt").read_text() == "a\nb\nc\n"


def test_insert_out_of_range(repo: Path) -> None:
    result = edit(repo, command="insert", path="src/app.py", insert_line=7, insert_text="x")
    assert result.is_error and "out of range" in result.content and "has 3 lines" in result.content
    assert edit(repo, command="insert", path="src/app.py", insert_line="1", new_str="x").is_error


def test_edits_refuse_binary_files(repo: Path) -> None:
    (repo / "b.bin").write_bytes(b"\x00\x01abc")
    result = edit(repo, command="str_replace", path="b.bin", old_str="abc", new_str="x")
    assert result.is_error and "binary" in result.content
    assert (repo / "b.bin").read_bytes() == b"\x00\x01abc"


@pytest.mark.parametrize(
    "tool_input", [{}, {"command": "undo_edit", "path": "a"}, {"command": "view"}]
)
def test_unknown_commands_and_missing_paths_are_errors(repo: Path, tool_input: Any) -> None:
    assert edit(repo, **tool_input).is_error


def test_runner_secrets_in_files_are_not_shown(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_API_KEY", "runner-secret-value-42")
    (repo / "leak.txt").write_text("key=runner-secret-value-42 aws=AKIAIOSFODNN7EXAMPLE\n")
    content = edit(repo, command="view", path="leak.txt").content
    assert "runner-secret-value-42" not in content and "[REDACTED]" in content
    assert "AKIAIOSFODNN7EXAMPLE" in content  # a key hard-coded in the repo is the job's to fix


# --- confinement --------------------------------------------------------------------------


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "tool_input",
    [
        {"command": "view", "path": "../outside/victim.txt"},
        {"command": "view", "path": "src/../../outside/victim.txt"},
        {"command": "view", "path": "../outside"},
        {"command": "create", "path": "../outside/new.txt", "file_text": "x"},
        {"command": "create", "path": "../outside/victim.txt", "file_text": "x"},
        {"command": "str_replace", "path": "../outside/victim.txt", "old_str": "o", "new_str": "x"},
        {"command": "insert", "path": "../outside/victim.txt", "insert_line": 0, "new_str": "x"},
        {"command": "create", "path": "newdir/../../outside/new.txt", "file_text": "x"},
    ],
)
def test_dotdot_out_of_the_repository_is_refused(
    repo: Path, outside: Path, tool_input: dict[str, Any]
) -> None:
    before = snapshot(outside)
    result = EditorTool(repo).run(tool_input)
    assert result.is_error and "outside the repository" in result.content
    assert "outside content" not in result.content
    assert snapshot(outside) == before
    assert not (repo / "newdir").exists()


def test_absolute_paths_outside_are_refused_and_inside_accepted(repo: Path, outside: Path) -> None:
    before = snapshot(outside)
    for tool_input in (
        {"command": "view", "path": str(outside / "victim.txt")},
        {"command": "view", "path": "/etc/passwd"},
        {"command": "create", "path": str(outside / "new.txt"), "file_text": "x"},
        {"command": "str_replace", "path": str(outside / "victim.txt"), "old_str": "o"},
    ):
        result = edit(repo, **tool_input)
        assert result.is_error and "outside the repository" in result.content, tool_input
        assert "root:x:" not in result.content and "outside content" not in result.content
    assert snapshot(outside) == before
    assert not edit(repo, command="view", path=str(repo / "src" / "app.py")).is_error


def test_symlinks_pointing_out_are_refused(repo: Path, outside: Path) -> None:
    (repo / "link.txt").symlink_to(outside / "victim.txt")
    (repo / "linkdir").symlink_to(outside)
    before = snapshot(outside)
    for tool_input in (
        {"command": "view", "path": "link.txt"},
        {"command": "view", "path": "linkdir"},
        {"command": "view", "path": "linkdir/victim.txt"},
        {"command": "create", "path": "link.txt", "file_text": "x"},
        {"command": "create", "path": "linkdir/new.txt", "file_text": "x"},
        {"command": "str_replace", "path": "link.txt", "old_str": "outside", "new_str": "x"},
        {"command": "insert", "path": "linkdir/victim.txt", "insert_line": 0, "new_str": "x"},
    ):
        result = edit(repo, **tool_input)
        assert result.is_error and "symlink" in result.content, tool_input
        assert "outside content" not in result.content
    assert snapshot(outside) == before
    assert (repo / "link.txt").is_symlink()


def test_dangling_symlink_pointing_out_is_refused(repo: Path, outside: Path) -> None:
    (repo / "dangle.txt").symlink_to(outside / "created-through-link.txt")
    (repo / "dangledir").symlink_to(outside / "no-such-dir")
    for path in ("dangle.txt", "dangledir/f.txt"):
        result = edit(repo, command="create", path=path, file_text="x")
        assert result.is_error and "symlink" in result.content
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_symlinks_inside_the_repository_work(repo: Path) -> None:
    (repo / "alias.py").symlink_to("src/app.py")
    assert "     1\tone" in edit(repo, command="view", path="alias.py").content
    assert not edit(
        repo, command="str_replace", path="alias.py", old_str="one", new_str="1"
    ).is_error
    assert (repo / "src/app.py").read_text().startswith("1\n")


def test_directory_listing_does_not_follow_symlinks_out(repo: Path, outside: Path) -> None:
    (repo / "linkdir").symlink_to(outside)
    content = edit(repo, command="view", path=".").content
    assert f"linkdir -> {outside}" in content and "victim.txt" not in content


@pytest.mark.parametrize(
    "tool_input",
    [
        {"command": "create", "path": ".git/hooks/pre-commit", "file_text": "#!/bin/sh\nevil\n"},
        {"command": "create", "path": ".git/config", "file_text": "[core]\n"},
        {"command": "str_replace", "path": ".git/HEAD", "old_str": "main", "new_str": "evil"},
        {"command": "insert", "path": ".git/config", "insert_line": 0, "new_str": "[x]"},
        {"command": "create", "path": "src/../.git/info/attributes", "file_text": "x"},
        {"command": "create", "path": "gitlink/hooks/post-checkout", "file_text": "x"},
        {"command": "create", "path": ".ralph/ralph.db", "file_text": "x"},
    ],
)
def test_writes_under_git_are_refused(repo: Path, tool_input: dict[str, Any]) -> None:
    (repo / "gitlink").symlink_to(".git")
    (repo / ".ralph").mkdir()
    before = snapshot(repo / ".git")
    result = EditorTool(repo).run(tool_input)
    assert result.is_error and "rule: nothing under .git" in result.content
    assert snapshot(repo / ".git") == before
    assert not (repo / ".ralph" / "ralph.db").exists()


def test_reading_git_data_is_allowed(repo: Path) -> None:
    assert "ref: refs/heads/main" in edit(repo, command="view", path=".git/HEAD").content


def test_worktree_git_file_is_not_writable(repo: Path, tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    subprocess.run(
        ["git", "worktree", "add", "-q", "-b", "run", str(worktree)], cwd=repo, check=True
    )
    git_file = (worktree / ".git").read_text()
    result = edit(worktree, command="create", path=".git", file_text="gitdir: /tmp/evil\n")
    assert result.is_error and "rule: nothing under .git" in result.content
    assert (worktree / ".git").read_text() == git_file
    assert not edit(worktree, command="create", path="ok.txt", file_text="x").is_error


def test_hard_linked_files_are_not_written(repo: Path, outside: Path) -> None:
    os.link(outside / "victim.txt", repo / "hard.txt")
    result = edit(repo, command="str_replace", path="hard.txt", old_str="outside", new_str="x")
    assert result.is_error and "hard link" in result.content
    assert (outside / "victim.txt").read_text() == "outside content\n"


def test_view_of_a_large_directory_is_capped(repo: Path) -> None:
    many = repo / "many"
    many.mkdir()
    for i in range(400):
        (many / f"file_with_a_long_name_{i:04}.txt").write_text("")
    result = edit(repo, command="view", path="many")
    assert len(result.content) < 2200
    assert (
        "more entries not shown" in result.content
        and "file_with_a_long_name_0000" in result.content
    )


@pytest.mark.parametrize(
    "tool_input",
    [
        {"command": "create", "path": "ralph.yaml", "file_text": "max_cost: 1000\n"},
        {"command": "str_replace", "path": "ralph.yaml", "old_str": "1", "new_str": "9"},
        {"command": "insert", "path": "ralph.yaml", "insert_line": 0, "insert_text": "x: 1\n"},
        {"command": "create", "path": "src/../ralph.yaml", "file_text": "x: 1\n"},
        {"command": "create", "path": "config-link", "file_text": "x: 1\n"},  # a symlink to it
    ],
)
def test_ralph_yaml_at_the_root_is_not_written(repo: Path, tool_input: dict[str, Any]) -> None:
    (repo / "ralph.yaml").write_text("max_cost: 1\n")
    (repo / "config-link").symlink_to("ralph.yaml")
    result = EditorTool(repo).run(tool_input)
    assert result.is_error and "rule: the agent does not change ralph's settings" in result.content
    assert (repo / "ralph.yaml").read_text() == "max_cost: 1\n"


def test_ralph_yaml_is_not_created_but_can_be_read_and_nested_ones_written(repo: Path) -> None:
    result = edit(repo, command="create", path="ralph.yaml", file_text="sandbox: none\n")
    assert result.is_error and "ralph.yaml" in result.content
    assert not (repo / "ralph.yaml").exists()
    (repo / "ralph.yaml").write_text("max_iterations: 3\n")
    assert "max_iterations: 3" in edit(repo, command="view", path="ralph.yaml").content
    # Only the runner's file at the root is protected; a project's own ralph.yaml elsewhere is not.
    assert not edit(repo, command="create", path="docs/ralph.yaml", file_text="x\n").is_error
