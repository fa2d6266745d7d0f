"""The repo tracks nothing a fresh clone cannot have.

A tracked symlink to a directory in one machine's /tmp once broke every fresh clone while
CI stayed green on the machine that still had the target. These tests read what git tracks
(the index, not the work tree), so a leftover on this machine cannot hide a problem.
"""
import posixpath
import subprocess
from pathlib import Path

import pytest

# Path parts and file endings that only a machine makes: venvs, caches, build output,
# local state and logs.
MACHINE_MADE_PARTS = ("__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache",
                      "node_modules", ".ipynb_checkpoints")
MACHINE_MADE_PREFIXES = (".venv",)
MACHINE_MADE_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".db", ".db-wal", ".db-shm", ".sqlite", ".log")
MACHINE_MADE_TOP = ("var", "bench/out")


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True).stdout


def tracked_problems(repo: Path) -> list[str]:
    """Every tracked entry that a fresh clone of `repo` could not use, with why."""
    problems = []
    entries = [line.split(b"\t", 1) for line in _git(repo, "ls-files", "-s", "-z").split(b"\0") if line]
    paths = {path.decode() for _, path in entries}
    directories = {posixpath.dirname(p) for p in paths}
    directories |= {d for p in directories for d in _ancestors(p)}
    for meta, raw_path in entries:
        path = raw_path.decode()
        mode = meta.split()[0]
        parts = path.split("/")
        if (any(part in MACHINE_MADE_PARTS or part.startswith(MACHINE_MADE_PREFIXES) for part in parts)
                or any(part.endswith(MACHINE_MADE_SUFFIXES) for part in parts)
                or any(path == top or path.startswith(top + "/") for top in MACHINE_MADE_TOP)):
            problems.append(f"{path}: made on a machine (venv, cache, build output, state or log); untrack it")
        if mode == b"120000":
            target = _git(repo, "cat-file", "-p", f":{path}").decode()
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if target.startswith("/"):
                problems.append(f"{path}: symlink to the absolute path {target}; a fresh clone has no such target")
            elif resolved == ".." or resolved.startswith("../"):
                problems.append(f"{path}: symlink to {target}, outside the repo")
            elif resolved not in paths and resolved not in directories:
                problems.append(f"{path}: symlink to {target}, which the repo does not track")
        if mode == b"160000":
            problems.append(f"{path}: a submodule; a fresh clone without --recursive gets an empty folder")
    return problems


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def test_this_repo_tracks_nothing_a_fresh_clone_cannot_have(repo_root):
    assert tracked_problems(repo_root) == []


@pytest.mark.parametrize("name", [".venv", ".venv-serve"])
def test_venv_names_are_ignored_as_files_dirs_and_links(repo_root, name):
    # `.venv-serve/` in .gitignore did not match a symlink of that name, so `git add -A` took it.
    for candidate in (name, name + "/bin/python"):
        assert subprocess.run(["git", "-C", str(repo_root), "check-ignore", "-q", "--no-index", candidate]).returncode == 0


def _repo_with(tmp_path: Path, build) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "README.md").write_text("ok\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "a.md").write_text("a\n")
    build(repo)
    subprocess.run(["git", "-C", str(repo), "add", "-A", "--force"], check=True)
    return repo


@pytest.mark.parametrize("build, expected", [
    (lambda r: (r / ".venv-serve").symlink_to("/tmp/ci2/.venv-serve"), ".venv-serve: made on a machine"),
    (lambda r: (r / "serve-env").symlink_to("/tmp/ci2/.venv-serve"), "serve-env: symlink to the absolute path"),
    (lambda r: (r / "up").symlink_to("../../elsewhere"), "up: symlink to ../../elsewhere, outside the repo"),
    (lambda r: (r / "docs" / "gone").symlink_to("missing.md"), "docs/gone: symlink to missing.md, which the repo"),
    (lambda r: (r / "pkg" / "__pycache__").mkdir(parents=True) or (r / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"x"),
     "pkg/__pycache__/m.pyc: made on a machine"),
    (lambda r: (r / "var").mkdir() or (r / "var" / "argus.db").write_bytes(b"x"), "var/argus.db: made on a machine"),
    (lambda r: (r / "argus.egg-info").mkdir() or (r / "argus.egg-info" / "PKG-INFO").write_text("x"),
     "argus.egg-info/PKG-INFO: made on a machine"),
    (lambda r: (r / "argusd.log").write_text("x"), "argusd.log: made on a machine"),
])
def test_the_check_catches_what_breaks_a_fresh_clone(tmp_path, build, expected):
    problems = tracked_problems(_repo_with(tmp_path, build))
    assert any(p.startswith(expected) for p in problems), problems


def test_links_inside_the_repo_are_fine(tmp_path):
    def build(repo):
        (repo / "docs" / "readme-link.md").symlink_to("../README.md")
        (repo / "docs-link").symlink_to("docs")
    assert tracked_problems(_repo_with(tmp_path, build)) == []


def test_no_two_test_files_share_a_name(repo_root):
    """tests/ has no __init__.py: pytest imports each file by its basename, so two files of one
    name fail to collect when one process runs both (as scripts/test.sh's first part does)."""
    names: dict[str, list[str]] = {}
    for path in sorted((repo_root / "tests").rglob("test_*.py")):
        names.setdefault(path.name, []).append(str(path.relative_to(repo_root)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}


def test_every_exit_trap_of_a_script_leaves_the_exit_status_alone(repo_root):
    """Under `set -e` a command that fails inside an EXIT trap becomes the script's exit status:
    scripts/test.sh's `pkill -P <job>` found nothing to stop once the job had ended, and a CI run
    whose tests all passed exited 1. Each trap runs here with nothing to clean up."""
    import re
    traps = [(path.name, body) for path in sorted((repo_root / "scripts").rglob("*.sh"))
             for body in re.findall(r"^\s*trap '([^']*)' EXIT", path.read_text(), re.M)]
    assert traps, "no EXIT trap found: the pattern above no longer matches the scripts"
    for name, body in traps:
        # Every variable a trap names points at nothing that exists.
        names = sorted(set(re.findall(r"\$\{?(\w+)", body)))
        setup = "".join(f"{var}=999999999; " for var in names if var not in ("SUDO",)) + "SUDO=; "
        script = f"set -euo pipefail; {setup}trap '{body}' EXIT; exit 0"
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd="/tmp")
        assert result.returncode == 0, f"{name}: trap {body!r} exits {result.returncode}: {result.stderr}"
