"""Read the GitOps repo: commits on the tracked branch and spec blobs in their trees.

Never a working tree: everything is read from committed objects, so a bare repo users push
to and a local clone behave the same. A thin shell: git runs through `run_git` (and one
streaming `cat-file --batch`); gitpython only opens and checks the repository. Every git
failure becomes a GitError that says what to check.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import git
from git.exc import InvalidGitRepositoryError, NoSuchPathError

from daemon.core.forge import SignatureStatus
from daemon.core.layout import MODELS_DIR
from daemon.core.ownership import Changer, merge_changed_paths
from daemon.errors import GitError

# Years 1970-9999: a public id carries the creation time as YYYYMMDDHHMM.
_MAX_COMMIT_TIME = 253402300800


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    parent: str | None      # first parent; None for a root commit
    author: str             # "Name <email>"
    author_email: str
    committed_at: datetime | None  # UTC committer time (fixes a new model's public id); None if out of range
    parents: tuple[str, ...] = ()
    raw_time: str = ""      # the committer time as git recorded it
    signature: tuple[str, str] | None = None  # (%G?, %GS) when the repo checks signatures

    def changer(self) -> Changer:
        return Changer(self.sha, self.author, self.author_email, self.signature)


def commit_time(raw: str) -> datetime | None:
    """The committer time, or None when it cannot stand in a public id (before 1970, after 9999)."""
    try:
        seconds = int(raw)
    except ValueError:
        return None
    if not 0 <= seconds < _MAX_COMMIT_TIME:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


# NUL between fields: the one byte no name or e-mail in a commit can hold (\x1f can).
_LOG_FORMAT = "%H%x00%P%x00%ct%x00%ae%x00%an%x00"
# With signatures checked: git's verdict (%G?) and the principal of the allowed signer (%GS).
# %GP: the primary key's fingerprint, which names the user of an OpenPGP key; %GF: the signing
# key's fingerprint, "SHA256:..." for an SSH key (whose %GS is the allowed signers' principal).
_SIGNED_LOG_FORMAT = _LOG_FORMAT + "%G?%x00%GS%x00%GP%x00%GF%x00"


@dataclass(frozen=True)
class SignatureCheck:
    """How git verifies signatures for gitops.require_signed: SSH keys through an allowed
    signers file (each key's principal is its user), OpenPGP keys imported into a keyring of
    their own (`gnupg_home`, trust-model always: being in the config is the trust), whose
    primary fingerprints name their users."""
    allowed_signers: str
    gnupg_home: str | None = None
    openpgp_users: tuple[tuple[str, str], ...] = ()   # (primary key fingerprint, user)

    def signer(self, status: str, principal: str, primary: str, key: str = "") -> tuple[SignatureStatus, str]:
        """(git's %G?, the user the signature proves or "") for one commit. Only an SSH
        signature's principal (%GS) names a user: for OpenPGP %GS is the key's user ID, which
        the key's maker chose, so an OpenPGP signer is its primary fingerprint's user or no one."""
        verdict = SignatureStatus.of(status)
        if key.startswith("SHA256:"):
            return verdict, principal
        return verdict, dict(self.openpgp_users).get(primary.upper(), "")


def _parse_log(out: str, check: SignatureCheck | None = None) -> list[CommitInfo]:
    fields = out.split("\x00")
    width = 9 if check else 5
    commits = []
    for i in range(0, len(fields) - (width - 1), width):
        sha, parents, ctime, email, name = fields[i:i + 5]
        sha = sha.lstrip("\n")
        parent_list = tuple(parents.split())
        signature = check.signer(*fields[i + 5:i + 9]) if check else None
        commits.append(CommitInfo(sha, parent_list[0] if parent_list else None, f"{name} <{email}>", email,
                                  commit_time(ctime), parent_list, ctime, signature))
    return commits


@dataclass(frozen=True)
class TreeFile:
    path: str
    blob: str
    mode: str


def blob_id(data: bytes) -> str:
    """The id git gives a file with this content (git hash-object)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def run_git(*args: str, cwd: str | os.PathLike, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
    """The one way argus runs git (the streaming blob reader below aside). Literal pathspecs:
    a directory named "a*" must not match other users' directories. Replace refs ignored:
    refs/replace/* must never change what argus reads. Output decoded without ever failing
    on bytes that are not UTF-8 (a file name can hold any). Only "git cannot run" raises."""
    try:
        return subprocess.run(["git", "--literal-pathspecs", "--no-replace-objects", *args], cwd=cwd,
                              capture_output=True, text=True, encoding="utf-8", errors="replace",
                              env={**os.environ, **env} if env else None, input=input)
    except OSError as exc:
        raise GitError(f"cannot run git in {cwd}: {exc}") from None


def missing_repo(path: str) -> GitError:
    return GitError(f"no git repository at {path}; create it (git init --bare), restore it, "
                    "or fix gitops.repo in the config")


class GitRepo:
    def __init__(self, path: str | os.PathLike, signatures: SignatureCheck | None = None):
        """`signatures` (gitops.require_signed): every commit read then carries git's verdict on
        its signature and the user it proves, judged by core.ownership."""
        self.path = str(path)
        self.signatures = signatures
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
            done = run_git(*args, cwd=self.path)
        except GitError:  # e.g. the repository directory vanished
            self._check_present()
            raise
        return done.returncode, done.stdout, done.stderr

    def _git(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
        if input is not None or env is not None:
            done = run_git(*args, cwd=self.path, env=env, input=input)
            status, out, err = done.returncode, done.stdout, done.stderr
        else:
            status, out, err = self._run(*args)
        if status != 0:
            self._check_present()
            raise GitError(f"git {args[0]} failed in {self.path}: {err.strip() or f'exit {status}'}")
        return out

    def branch_head(self, branch: str) -> str | None:
        """The branch's commit, or None when the branch does not exist yet (empty repo)."""
        ref = f"refs/heads/{branch}"
        status, out, _ = self._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if status == 0 and out.strip():
            return out.strip()
        self._check_present()
        # No commit: the branch may still exist, pointing at an object this repo does not have
        # (an interrupted copy, a deleted object) or at something that is not a commit. That is
        # a damaged repo, not an empty one: say so instead of syncing nothing in silence.
        status, out, _ = self._run("for-each-ref", "--format=%(refname)%00%(objectname)", ref)
        target = next((line.split("\x00", 1)[1] for line in out.splitlines()
                       if line.split("\x00", 1)[0] == ref), None) if status == 0 else None
        if target is None:
            return None
        missing = self._run("cat-file", "-e", target)[0] != 0
        what = "an object this repository does not have" if missing else "an object that is not a commit"
        raise GitError(f"{ref} in {self.path} points at {target}, {what}: the repository is damaged (an "
                       f"interrupted copy or a lost object; `git -C {self.path} fsck` lists the damage). Restore it "
                       f"from a backup, or point the branch at a good commit: git -C {self.path} update-ref {ref} <commit>")

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
        """The tracked branch's steps after `since` up to `head`, oldest first: first parents
        that descend from `since` (a branch merged in by a fast-forward is one step, its merge)."""
        revs = [f"{since}..{head}", "--ancestry-path"] if since else [head]
        return self._log("--reverse", "--first-parent", *revs)

    def range_commits(self, since: str | None, head: str) -> list[CommitInfo]:
        """Every commit in since..head (merged side branches included), oldest first."""
        revs = [head, "--not", since] if since else [head]
        return self._log("--reverse", "--topo-order", *revs)

    def commit_info(self, sha: str) -> CommitInfo:
        return self._log("-1", sha)[0]

    def _log(self, *args: str) -> list[CommitInfo]:
        check = self.signatures
        if check is None:
            return _parse_log(self._git("log", f"--format={_LOG_FORMAT}", *args, "--"))
        env = {"GNUPGHOME": check.gnupg_home} if check.gnupg_home else {}
        out = self._git("-c", f"gpg.ssh.allowedSignersFile={check.allowed_signers}", "log",
                        f"--format={_SIGNED_LOG_FORMAT}", *args, "--", env=env)
        return _parse_log(out, check)

    def merge_base(self, shas: tuple[str, ...]) -> str | None:
        status, out, _ = self._run("merge-base", "--octopus", *shas)
        return out.split()[0] if status == 0 and out.strip() else None

    def blobs_at(self, sha: str | None, paths: list[str]) -> dict[str, str]:
        """path -> blob id (any entry: blob, link or submodule) for those of `paths` that `sha` has."""
        if sha is None or not paths:
            return {}
        return {f.path: f.blob for f in self.tree_files(sha, paths)}

    def changers(self, before: str | None, after: str) -> dict[str, list[Changer]]:
        """Every models.d path that differs between `before` and `after`, with the commits in
        before..after that made it so (an empty list: none did, e.g. a reset). Merges are judged
        by core.ownership.merge_changed_paths."""
        changed = self.changed_paths(before, after)
        out: dict[str, list[Changer]] = {p: [] for p in changed}
        if not changed:
            return out
        commits = self.range_commits(before, after)
        if len(commits) == 1 and commits[0].sha == after and commits[0].parents == ((before,) if before else ()):
            return {p: [commits[0].changer()] for p in changed}  # the common case: one plain commit
        for commit in commits:
            own = self.own_changes(commit)
            for path in own & out.keys():
                out[path].append(commit.changer())
        return out

    def own_changes(self, commit: CommitInfo) -> set[str]:
        """The models.d paths one commit changed itself (a merge: only what no parent brought)."""
        if len(commit.parents) <= 1:
            return set(self.changed_paths(commit.parent, commit.sha))
        candidates = sorted({p for parent in commit.parents for p in self.changed_paths(parent, commit.sha)})
        if not candidates:
            return set()
        base = self.merge_base(commit.parents)
        return merge_changed_paths(candidates, self.blobs_at(base, candidates),
                                   [self.blobs_at(p, candidates) for p in commit.parents],
                                   self.blobs_at(commit.sha, candidates))

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

    # -- a file argusd keeps under a ref of its own (the id ledger) ------------------------------

    def read_ref_file(self, ref: str, name: str) -> tuple[str | None, str | None]:
        """(the commit `ref` names, the text of `name` in its tree); (None, None) when there is no
        such ref, (commit, None) when its tree has no such file."""
        status, out, _ = self._run("rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
        if status != 0 or not out.strip():
            self._check_present()
            return None, None
        commit = out.strip()
        status, out, _ = self._run("cat-file", "blob", f"{commit}:{name}")
        return commit, out if status == 0 else None

    def write_ref_file(self, ref: str, name: str, text: str, parent: str | None, message: str) -> str:
        """Commit `text` as the only file `name` under `ref`, on top of `parent` (what the ref
        named when it was read; None: it must not exist yet). A ref moved by someone else since
        is not overwritten: git refuses, and the caller reads again next time."""
        who = {"GIT_AUTHOR_NAME": "argusd", "GIT_AUTHOR_EMAIL": "argusd@localhost",
               "GIT_COMMITTER_NAME": "argusd", "GIT_COMMITTER_EMAIL": "argusd@localhost"}
        blob = self._git("hash-object", "-w", "--stdin", input=text).strip()
        tree = self._git("mktree", input=f"100644 blob {blob}\t{name}\n").strip()
        commit = self._git("commit-tree", tree, *(["-p", parent] if parent else []), "-m", message, env=who).strip()
        self._git("update-ref", "-m", message, ref, commit, parent or "0" * 40)
        return commit

    def read_blobs(self, blobs: list[str], limit: int) -> dict[str, bytes]:
        """Each blob's first limit+1 bytes (enough to tell a spec is over the limit), read by
        one `git cat-file --batch` for the whole list; oversized blobs are never held whole.
        An id that is missing or not a blob is left out of the result."""
        wanted = list(dict.fromkeys(blobs))
        if not wanted:
            return {}
        try:
            proc = subprocess.Popen(["git", "--no-replace-objects", "cat-file", "--batch"], cwd=self.git_dir, stdin=subprocess.PIPE,
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
                if len(header) == 2 and header[1] == b"missing":
                    continue  # absent from the result: the caller rejects that file, nothing wedges
                if len(header) != 3:
                    raise GitError(f"cannot read object {sha} in {self.path}: {b' '.join(header).decode()}")
                size = int(header[2])
                if header[1] != b"blob":  # e.g. a tree or commit id where a blob was expected
                    proc.stdout.read(size + 1)
                    continue
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
