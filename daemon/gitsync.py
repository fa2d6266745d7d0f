"""Read the GitOps repo: commits on the tracked branch and spec blobs in their trees.

Never a working tree: everything is read from committed objects, so a bare repo users push
to and a local clone behave the same. Thin shell over git (through gitpython); every git
failure becomes a GitError that says what to check.
"""
from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import git
from git.exc import InvalidGitRepositoryError, NoSuchPathError

from .errors import GitError

MODELS_DIR = "models.d"
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parent: str | None      # first parent; None for a root commit
    author: str             # "Name <email>"
    author_email: str
    committed_at: datetime  # UTC committer time: fixes a new model's public id


@dataclass(frozen=True)
class TreeFile:
    path: str
    blob: str
    mode: str


def is_spec_path(path: str) -> bool:
    """Whether a path under models.d/ is one argus reads (YAML, not hidden)."""
    name = path.rsplit("/", 1)[-1]
    return path.startswith(MODELS_DIR + "/") and name.endswith(SPEC_SUFFIXES) and not name.startswith(".")


def user_of(path: str) -> str | None:
    """`models.d/<user>/<name>.yaml` -> user; None for any other depth."""
    parts = path.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == MODELS_DIR else None


def missing_repo(path: str) -> GitError:
    return GitError(f"no git repository at {path}; create it (git init --bare), restore it, "
                    "or fix gitops.repo in the config")


class GitRepo:
    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            self.repo = git.Repo(self.path)
        except (NoSuchPathError, InvalidGitRepositoryError):
            raise missing_repo(self.path) from None
        except Exception as exc:  # corrupt config and friends
            raise GitError(f"cannot open the git repository at {self.path}: {exc}") from None

    @property
    def git_dir(self) -> str:
        return self.repo.git_dir

    def close(self) -> None:
        self.repo.close()

    def _check_present(self) -> None:
        if not os.path.isdir(self.path):
            raise missing_repo(self.path)

    def _run(self, *args: str) -> tuple[int, str, str]:
        """(status, stdout, stderr) of one git command; only "cannot run git at all" raises."""
        try:
            # Literal pathspecs: a directory named "a*" must not match other users' directories.
            status, out, err = self.repo.git.execute(["git", "--literal-pathspecs", *args], with_exceptions=False,
                                                     with_extended_output=True, stdout_as_string=True,
                                                     strip_newline_in_stdout=False)
        except (git.exc.GitError, OSError) as exc:  # e.g. the repository directory vanished
            self._check_present()
            raise GitError(f"cannot run git in {self.path}: {exc}") from None
        return status, out, err

    def _git(self, *args: str) -> str:
        status, out, err = self._run(*args)
        if status != 0:
            self._check_present()
            raise GitError(f"git {args[0]} failed in {self.path}: {err.strip() or f'exit {status}'}")
        return out

    def branch_head(self, branch: str) -> str | None:
        """The branch's commit, or None when the branch does not exist yet (empty repo)."""
        status, out, _ = self._run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
        if status != 0:
            self._check_present()
            return None
        return out.strip() or None

    def resolve(self, ref: str) -> str | None:
        """The commit a ref, branch, tag or sha names; None when it names none."""
        status, out, _ = self._run("rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
        return out.strip() if status == 0 and out.strip() else None

    def has_commit(self, sha: str) -> bool:
        return self._run("cat-file", "-e", f"{sha}^{{commit}}")[0] == 0

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        status, _, err = self._run("merge-base", "--is-ancestor", ancestor, descendant)
        if status in (0, 1):
            return status == 0
        raise GitError(f"git merge-base failed in {self.path}: {err.strip()}")

    def commits(self, since: str | None, head: str) -> list[CommitInfo]:
        """Commits after `since` up to `head`, oldest first, along first parents."""
        revs = f"{since}..{head}" if since else head
        out = self._git("log", "--reverse", "--first-parent", "-z", "--format=%H%x1f%P%x1f%an <%ae>%x1f%ae%x1f%ct",
                        revs, "--")
        commits = []
        for record in filter(None, out.split("\x00")):
            sha, parents, author, email, ctime = record.strip("\n").split("\x1f")
            commits.append(CommitInfo(sha, parents.split()[0] if parents else None, author, email,
                                      datetime.fromtimestamp(int(ctime), tz=timezone.utc)))
        return commits

    def commit_info(self, sha: str) -> CommitInfo:
        out = self._git("log", "-1", "-z", "--format=%H%x1f%P%x1f%an <%ae>%x1f%ae%x1f%ct", sha, "--")
        sha, parents, author, email, ctime = out.strip("\x00\n").split("\x1f")
        return CommitInfo(sha, parents.split()[0] if parents else None, author, email,
                          datetime.fromtimestamp(int(ctime), tz=timezone.utc))

    def changed_paths(self, parent: str | None, sha: str) -> list[str]:
        """Paths under models.d/ that differ between the parent and the commit."""
        args = ["diff-tree", "-r", "--no-renames", "--no-commit-id", "--name-only", "-z"]
        args += [parent, sha] if parent else ["--root", sha]
        out = self._git(*args, "--", f"{MODELS_DIR}/")
        return [p for p in out.split("\x00") if p]

    def tree_files(self, sha: str, pathspecs: list[str] | None = None) -> list[TreeFile]:
        """Files at the given paths ("models.d/alice/" for a directory); all of models.d when None."""
        pathspecs = list(pathspecs) if pathspecs else [f"{MODELS_DIR}/"]
        files = []
        for chunk_start in range(0, len(pathspecs), 2000):  # stay far below ARG_MAX
            out = self._git("ls-tree", "-r", "-z", "--full-tree", sha, "--", *pathspecs[chunk_start:chunk_start + 2000])
            for entry in filter(None, out.split("\x00")):
                meta, path = entry.split("\t", 1)
                mode, _kind, blob = meta.split()
                files.append(TreeFile(path, blob, mode))
        return files

    def read_blobs(self, blobs: list[str], limit: int) -> dict[str, bytes]:
        """Each blob's first limit+1 bytes (enough to tell a spec is over the limit), read by
        one `git cat-file --batch` for the whole list; oversized blobs are never held whole."""
        wanted = list(dict.fromkeys(blobs))
        if not wanted:
            return {}
        try:
            proc = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.git_dir, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            self._check_present()
            raise GitError(f"cannot run git in {self.path}: {exc}") from None
        feeder = threading.Thread(target=_feed, args=(proc.stdin, wanted), daemon=True)
        feeder.start()
        out: dict[str, bytes] = {}
        try:
            for sha in wanted:
                header = proc.stdout.readline().split()
                if len(header) != 3 or header[1] != b"blob":
                    raise GitError(f"cannot read object {sha} in {self.path}: {b' '.join(header).decode()}")
                size = int(header[2])
                out[sha] = proc.stdout.read(min(size, limit + 1))
                remaining = size - len(out[sha])
                while remaining > 0:  # skip the rest of an oversized blob in chunks
                    remaining -= len(proc.stdout.read(min(remaining, 1 << 20)) or b"x" * remaining)
                proc.stdout.read(1)  # the newline after the content
        finally:
            feeder.join()
            proc.stdout.close()
            proc.wait()
        return out


def _feed(stdin, shas: list[str]) -> None:
    try:
        stdin.write("".join(f"{sha}\n" for sha in shas).encode())
        stdin.close()
    except OSError:  # git exited early; the reader reports it
        pass
