"""The GitOps write path shared by `argusctl apply/scale/suspend/resume/delete` and argusd's HTTP API: edit a
spec in a clone, lint it with the same validator as `lint`, the hook and argusd, commit as the
user with a message that says what changed, and push. A push that loses a race is made again
on the winner's head (the edit redone and linted there), or refused as a conflict when the
winner changed the same spec; never forced, never merged. Git is the only thing written:
argusd applies what it records.
"""
from __future__ import annotations

import difflib
import fcntl
import json
import os
import random
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from daemon.core.layout import MODELS_DIR, SPEC_SUFFIXES
from daemon.core.spec import ParsedSpec, ServingSpec, SpecPolicy
from daemon.verdicts import judged_spec
from daemon.core.specedit import SpecEditError, remove_top_level, set_top_level
from daemon.core.states import StrEnum
from daemon.core.yamldoc import YamlDocError, load_mapping
from daemon.errors import (ConflictError, GitError, NotFoundError, Problem, ProblemKind, RefusedError, SpecError,
                           UsageError)
from daemon.gitrepo import run_git

if TYPE_CHECKING:
    from daemon.config import GitCredentials

# A lost race (another push won) is redone on top of the winner this many times, waiting a
# random, growing pause between tries so racing writers fall out of step.
PUSH_ATTEMPTS = 10
RETRY_PAUSE_S = 0.05
# Another write through the same clone (a second argusctl, the API's thread) is waited for.
LOCK_WAIT_S = 120.0
# A first fetch from a forge that takes longer is stopped (a hung server never wedges a write).
REMOTE_TIMEOUT_S = 120.0
PUBLIC_ID = re.compile(r"^(?P<user>[a-z][a-z0-9_-]{0,31})-(?P<ts>\d{12})-(?P<suffix>.+)$")
# What git prints when a push lost a race with another push: the branch moved (rejected as
# not a fast-forward), or the remote's ref moved while this push held it (a lock race in
# receive-pack: "cannot lock ref ...: is at X but expected Y", "failed to update ref").
# A ref lock left behind on the server by a push that died ("Unable to create '<ref>.lock': File
# exists"): no retry helps until an admin removes it. Matched before _LOST_RACE, which it resembles.
_STALE_REF_LOCK = re.compile(r"Unable to create '(?P<lock>[^']+\.lock)': File exists")
_LOST_RACE = re.compile(r"\[rejected\]|fetch first|non-fast-forward|failed to update ref|cannot lock ref|"
                        r"incorrect old value|but expected")
_HOOK_REFUSED = re.compile(r"hook declined")


@dataclass(frozen=True)
class Clone:
    path: Path
    user: str
    branch: str
    # argusd's own clone for one API user: nobody edits it, so a write resets it to what is
    # pushed (inside the write lock) instead of refusing or replaying anything found in it.
    disposable: bool = False

    @property
    def user_dir(self) -> Path:
        return self.path / MODELS_DIR / self.user


class ChangeAction(StrEnum):
    CREATED = "created"
    CHANGED = "changed"
    SCALED = "scaled"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    DELETED = "deleted"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Change:
    """What a write did (or, with dry_run, would do)."""

    action: ChangeAction
    model_id: str           # the suffix
    path: str               # repo-relative spec path
    diff: str
    message: str
    commit: str | None = None

    def to_dict(self) -> dict:
        return {**self.__dict__, "action": self.action.value}


# git commands that talk to the GitOps repo (a forge, or a local repo's hook): run with a timeout,
# no prompt and their output redacted (daemon/remote.py), never as plain run_git.
_REMOTE_COMMANDS = frozenset({"fetch", "push", "clone", "ls-remote"})


def _git(cwd: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    if args[0] in _REMOTE_COMMANDS and env is None:
        from daemon.remote import run_redacted_remote_git

        result = run_redacted_remote_git(list(args), cwd=cwd, timeout=REMOTE_TIMEOUT_S)
    else:
        result = run_git(*args, cwd=cwd, env=env)
    if check and result.returncode != 0:
        raise GitError(f"git {args[0]} failed in {cwd}: {(result.stderr or result.stdout).strip()}")
    return result


def clone_repo(origin: str | os.PathLike, path: Path, branch: str,
               credentials: "GitCredentials | None" = None) -> None:
    """A new clone of the GitOps repo at `path`. A remote repo (a forge URL) gets `credentials`
    in the clone's own git config before the first fetch (paths only, no secret; daemon/remote.py),
    so every later fetch and push from it authenticates the same way: argusd's server clones
    pass gitops.credentials, a user's clone none (the user's own git credentials push)."""
    from daemon.core.forge import parse_repo
    from daemon.remote import configure_remote

    origin = str(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not parse_repo(origin).remote:
        _git(path.parent, "clone", "-q", origin, str(path))
        return
    from daemon.config import GitCredentials

    path.mkdir(exist_ok=True)
    _git(path, "init", "-q", "-b", branch)
    configure_remote(path, origin, credentials or GitCredentials())
    _git(path, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
    fetched = _git(path, "fetch", "-q", "origin", check=False)
    if fetched.returncode != 0:
        raise GitError(f"cannot fetch the GitOps repo {origin}: {fetched.stderr.strip()}; check the URL, "
                       "the git credentials (yours for argusctl, gitops.credentials for argusd) and the network")


def _is_repo(origin: str | os.PathLike) -> bool:
    return _is_remote(origin) or (Path(origin) / "HEAD").exists()


def server_clone(bare: Path | str, path: Path, user: str, branch: str, git_name: str, git_email: str,
                 credentials: "GitCredentials | None" = None, signing_key: str | None = None) -> Clone:
    """The clone argusd writes through for one user of the HTTP API, made on first use and
    committing as that user's git identity. Every write resets it to exactly what is pushed
    (write_transaction, under the clone's lock), so a write that failed half-way leaves
    nothing for the next one. `bare` may be a forge's URL: the clone pushes there."""
    if not (path / ".git").exists():
        if not _is_repo(bare):
            raise GitError(f"no GitOps repo at {bare}; create it with `argusctl init` (or fix gitops.repo)")
        clone_repo(bare, path, branch, credentials)
    elif credentials is not None and _is_remote(bare):
        from daemon.remote import configure_remote

        configure_remote(path, str(bare), credentials)  # the config may have changed since
    _git(path, "config", "user.name", git_name)
    _git(path, "config", "user.email", git_email)
    if signing_key:  # gitops.api_signing_key: argusd signs the API's writes with its own key
        from daemon.remote import signing_settings

        for key, value in signing_settings(signing_key):
            _git(path, "config", key, value)
    return Clone(path, user, branch, disposable=True)


def _is_remote(origin: str | os.PathLike) -> bool:
    from daemon.core.forge import parse_repo

    return parse_repo(str(origin)).remote


def reset_to_pushed(clone: Clone) -> None:
    """A disposable clone at exactly what is pushed: one fetch, a forced checkout, a clean."""
    _git(clone.path, "fetch", "-q", "origin")
    if _git(clone.path, "rev-parse", "--verify", "-q", f"origin/{clone.branch}", check=False).returncode == 0:
        _git(clone.path, "checkout", "-q", "-f", "-B", clone.branch, f"origin/{clone.branch}")
    else:  # nothing pushed yet: the first write starts the branch
        _git(clone.path, "symbolic-ref", "HEAD", f"refs/heads/{clone.branch}")
    _git(clone.path, "clean", "-q", "-f", "-d")


def require_identity(path: Path) -> None:
    """Refuse before anything is written when git has no identity to commit as."""
    if _git(path, "var", "GIT_COMMITTER_IDENT", check=False).returncode != 0:
        raise UsageError(f"git has no identity to commit as in {path}: pass --name and --email to "
                         f"`argusctl init` (or set `git config --global user.name` and `user.email`)")


def sync_clone(clone: Clone) -> None:
    """Start from what is pushed: fetch, and replay the clone's own commits (if any) on top.
    Refuses a clone with uncommitted changes: a write must never mix them into its commit,
    nor lose them when it restores the clone after a failure."""
    dirty = _git(clone.path, "status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    dirty += _git(clone.path, "status", "--porcelain", "--", MODELS_DIR).stdout.splitlines()
    if dirty:
        shown = ", ".join(sorted({line[3:] for line in dirty})[:5])
        raise UsageError(f"{clone.path} has uncommitted changes ({shown}); commit or discard them first "
                         f"(git -C {clone.path} status shows them)")
    _git(clone.path, "fetch", "-q", "origin")
    if _git(clone.path, "rev-parse", "--verify", "-q", f"origin/{clone.branch}", check=False).returncode != 0:
        return  # nothing pushed yet
    _git(clone.path, "checkout", "-q", clone.branch)
    if _git(clone.path, "rebase", "-q", f"origin/{clone.branch}", check=False).returncode != 0:
        _git(clone.path, "rebase", "--abort", check=False)
        # the user's to resolve, in the clone: running again meets the same conflict (not a race)
        raise UsageError(f"{clone.path} has commits of its own that conflict with what is pushed; resolve them "
                         f"with `git -C {clone.path} pull --rebase`, then run the command again")


def _head(clone: Clone) -> str | None:
    found = _git(clone.path, "rev-parse", "--verify", "-q", "HEAD", check=False)
    return found.stdout.strip() if found.returncode == 0 else None


@contextmanager
def _clone_lock(clone: Clone) -> Iterator[None]:
    """One write at a time through one clone, across processes (two argusctl at once, or the
    API and a person sharing a clone): the second waits, then starts from the first's push."""
    git_dir = Path(_git(clone.path, "rev-parse", "--absolute-git-dir").stdout.strip())
    with open(git_dir / "argus-write.lock", "a+") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConflictError(f"another write through {clone.path} has not finished in {LOCK_WAIT_S:.0f} s; "
                                        "nothing was changed: run the command again when it is done") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def write_transaction(clone: Clone, sync: bool = True) -> Iterator[None]:
    """Hold the clone's write lock, start from what is pushed, and if anything inside fails
    (git, a hook, a lost conflict, an interrupt) put the clone back as it was, so a failed
    write leaves nothing behind for the next command to trip on."""
    with _clone_lock(clone):
        if clone.disposable:
            reset_to_pushed(clone)
        elif sync:
            sync_clone(clone)
        start = _head(clone)
        try:
            yield
        except BaseException:
            _restore(clone, start)
            raise


def _restore(clone: Clone, start: str | None) -> None:
    """The clone as it was at `start` (clean: sync_clone refused any uncommitted change), then
    forward onto what is pushed when that loses nothing (after a conflict: theirs)."""
    _git(clone.path, "rebase", "--abort", check=False)
    if start is not None:
        _git(clone.path, "reset", "-q", "--hard", start, check=False)
    else:  # the branch had no commit yet: forget any the write made
        _git(clone.path, "update-ref", "-d", "HEAD", check=False)
        _git(clone.path, "read-tree", "--empty", check=False)
    _git(clone.path, "clean", "-q", "-f", "-d", "--", MODELS_DIR, check=False)
    _git(clone.path, "merge", "-q", "--ff-only", f"origin/{clone.branch}", check=False)


_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of a tree with nothing in it


def unpushed_commits(clone: Clone) -> int:
    """How many commits HEAD has that the GitOps repo has not (as of the last fetch)."""
    if _head(clone) is None:
        return 0
    pushed = _git(clone.path, "rev-parse", "--verify", "-q", f"origin/{clone.branch}", check=False).returncode == 0
    counted = _git(clone.path, "rev-list", "--count", *([f"origin/{clone.branch}..HEAD"] if pushed else ["HEAD"]))
    return int(counted.stdout.strip())


def _changed_upstream(clone: Clone, base: str | None, paths: list[Path]) -> bool:
    """Whether the just-fetched remote head changed any of `paths` since `base`."""
    rels = [_rel(clone, p) for p in paths]
    diff = _git(clone.path, "diff", "--name-only", base or _EMPTY_TREE, f"origin/{clone.branch}", "--", *rels)
    return bool(diff.stdout.strip())


# What a write puts into the work tree: it edits (and validates) the files on the clone's
# current HEAD and says which files it changed and the commit message.
WriteEdit = Callable[[], tuple[list[Path], str]]


def commit_and_push(clone: Clone, edit: WriteEdit) -> str:
    """Make `edit` on HEAD, commit it and push. A push that lost a race is never forced nor its
    commit replayed: if the winner changed one of the edited files since this write read them,
    ConflictError (nobody validated the merge of the two); otherwise the clone moves to the
    winner and the edit is made, validated and committed again there, at most PUSH_ATTEMPTS
    times. Run inside write_transaction, which undoes a failure."""
    local = unpushed_commits(clone)
    if local:
        raise UsageError(f"{clone.path} has {local} commit(s) not in the GitOps repo, and a write pushes everything "
                         f"on the branch; push them (git -C {clone.path} push origin HEAD:{clone.branch}) or drop "
                         "them, then run the command again")
    first_paths: list[Path] | None = None
    for attempt in range(PUSH_ATTEMPTS):
        base = _head(clone)
        paths, message = edit()
        if first_paths is not None and paths != first_paths:  # e.g. the model's spec moved to another file
            raise ConflictError(f"someone else changed the same spec meanwhile ({message}); your change was not "
                                "pushed and your clone now has theirs: look at it, then run the command again")
        first_paths = paths
        _git(clone.path, "add", "-A", "--", *[str(p) for p in paths])
        _git(clone.path, "commit", "-q", "-m", message)
        pushed = _git(clone.path, "push", "-q", "origin", f"HEAD:{clone.branch}", check=False)
        if pushed.returncode == 0:
            return _git(clone.path, "rev-parse", "HEAD").stdout.strip()
        said = pushed.stderr
        if _HOOK_REFUSED.search(said):
            # The server refused it (the pre-receive hook): no retry helps; say why.
            reasons = [line.removeprefix("remote: ").strip() for line in pushed.stderr.splitlines()
                       if line.startswith("remote: ")]
            raise RefusedError("the GitOps repo refused the push; nothing changed:\n  " +
                               "\n  ".join(reasons or [pushed.stderr.strip()]))
        stale = _STALE_REF_LOCK.search(said)
        if stale:
            raise GitError(f"the GitOps repo's branch is locked by a push that did not finish "
                           f"({os.path.normpath(stale['lock'])} exists); nothing was pushed. An admin removes that "
                           "file once no git push to the repo is running; then run the command again")
        if not _LOST_RACE.search(said):
            raise GitError(f"git push failed in {clone.path}: {pushed.stderr.strip()}")
        # Lost a race with another push: start again from the winner's head, unless it touched our files.
        time.sleep(random.uniform(0, RETRY_PAUSE_S * 2 ** min(attempt, 4)))
        _git(clone.path, "fetch", "-q", "origin")
        if _changed_upstream(clone, base, paths):
            raise ConflictError(f"someone else changed the same spec meanwhile ({message}); your change was not "
                                "pushed and your clone now has theirs: look at it, then run the command again")
        _git(clone.path, "reset", "-q", "--hard", f"origin/{clone.branch}")
    raise ConflictError(f"other pushes won {PUSH_ATTEMPTS} times in a row; your change was not pushed: "
                        "run the command again")


def suffix_of(model: str, user: str) -> str:
    """MODEL may be the suffix or the full public id <user>-<YYYYMMDDHHMM>-<suffix>."""
    match = PUBLIC_ID.match(model)
    if match and match.group("user") == user:
        return match.group("suffix")
    return model


def _spec_files(clone: Clone) -> dict[str, Path]:
    """model_id -> file, for the user's specs that parse far enough to name one."""
    found: dict[str, Path] = {}
    if not clone.user_dir.is_dir():
        return found
    for path in sorted(clone.user_dir.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(SPEC_SUFFIXES):
            continue
        try:
            data = _mapping(path.read_bytes())
        except OSError:
            continue
        if isinstance(data.get("model_id"), str):
            found.setdefault(data["model_id"], path)
    return found


def _mapping(data: bytes) -> dict:
    """A spec file's fields through the strict loader (a hostile file in the clone must not
    crash the command: depth, size and tags are limited there); {} when it does not load."""
    try:
        return load_mapping(data, max_bytes=1 << 20).value
    except YamlDocError:
        return {}


def _locate(clone: Clone, model: str) -> tuple[str, Path]:
    """(suffix, spec file) of one of the user's models, by suffix or full public id."""
    suffix = suffix_of(model, clone.user)
    path = _spec_files(clone).get(suffix)
    if path is None:
        raise NotFoundError(f"no spec for model {suffix!r} under {MODELS_DIR}/{clone.user}/; "
                            f"`argusctl status --user {clone.user}` lists your models")
    return suffix, path


def _rel(clone: Clone, path: Path) -> str:
    return str(path.relative_to(clone.path))


def _diff(clone: Clone, path: Path, old: str, new: str) -> str:
    rel = _rel(clone, path)
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        fromfile=f"a/{rel}" if old else "/dev/null",
                                        tofile=f"b/{rel}" if new else "/dev/null"))


_NO_VALUE = object()
_SHOWN_CHARS = 48


def _default(key: str) -> object:
    """What the spec means when `key` is not written (ServingSpec's own default)."""
    field = ServingSpec.model_fields.get(key)
    if field is None or field.is_required():
        return _NO_VALUE
    return field.get_default(call_default_factory=True)


def _show(value: object) -> str:
    # A value as it reads in one line of a commit subject: a string as written unless it holds
    # a line break or another control character (then escaped), anything else as JSON.
    text = value if isinstance(value, str) and value.isprintable() else json.dumps(value, separators=(", ", ": "),
                                                                                    default=str)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."


def _changes(old: object, new: object, path: str) -> list[str]:
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(old.keys() | new.keys(), key=str)
                for line in _changes(old.get(key, _NO_VALUE), new.get(key, _NO_VALUE), f"{path}.{_show(key)}")]
    if old is _NO_VALUE or old is None:
        return [f"{path} added: {_show(new)}"]
    if new is _NO_VALUE or new is None:
        return [f"{path} removed (was {_show(old)})"]
    return [f"{path} {_show(old)} -> {_show(new)}"]


def describe_change(old: dict, new: dict) -> str:
    """What changed between two versions of a spec, for the commit message: every key of
    either file counts (nothing is listed here to keep in step with the spec), a key that is
    not written counts as its default, and nested mappings name the changed key inside."""
    changed = []
    for key in sorted(old.keys() | new.keys(), key=str):
        changed += _changes(old.get(key, _default(key)), new.get(key, _default(key)), _show(key))
    return ", ".join(changed) or "comments or layout"


def _read(path: Path) -> str:
    """A spec file's text exactly as written: bytes decoded as UTF-8 with no newline
    translation, so a CRLF file stays CRLF through every edit (Path.read_text would make it LF)."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape") if path.exists() else ""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))


def _written(clone: Clone, plan: Callable[[], Change], dry_run: bool, write: Callable[[Change], None]) -> Change:
    """Plan the change on the clone as it is; unless dry_run or unchanged, make it and push it,
    planning (and validating) it again on the winner's head after a lost race."""
    change = plan()
    if dry_run or change.action == ChangeAction.UNCHANGED:
        return change
    latest = [change]

    def edit() -> tuple[list[Path], str]:
        if _head(clone) != start:   # after a lost race: plan again on the new head
            latest[0] = plan()
            if latest[0].action == ChangeAction.UNCHANGED:
                raise ConflictError(f"someone else made the same change meanwhile ({change.message}); your clone "
                                    "now has theirs")
        write(latest[0])
        return [clone.path / latest[0].path], latest[0].message

    start = _head(clone)
    commit = commit_and_push(clone, edit)
    return Change(**{**latest[0].__dict__, "commit": commit})


def apply(clone: Clone, data: bytes, source: str, policy: SpecPolicy, dry_run: bool = False,
          known: bool = True) -> Change:
    """Put a spec file into models.d/<user>/ (replacing the file that defines its model_id).
    `known`: the config's users: names the user (judged_spec)."""
    parsed = judged_spec(source, data, clone.user, policy, known)  # SpecError: nothing is touched
    new = data.decode("utf-8")
    plan = lambda: _plan_apply(clone, new, parsed)  # noqa: E731
    write = lambda change: _write(clone.path / change.path, new)  # noqa: E731
    if dry_run:
        return _written(clone, plan, True, write)
    require_identity(clone.path)
    with write_transaction(clone):
        return _written(clone, plan, False, write)


def _plan_apply(clone: Clone, new: str, parsed: ParsedSpec) -> Change:
    suffix = parsed.spec.model_id
    target = _spec_files(clone).get(suffix) or clone.user_dir / f"{suffix}.yaml"
    rel = _rel(clone, target)
    old = _read(target)
    if old == new:
        return Change(ChangeAction.UNCHANGED, suffix, rel, "", f"{clone.user}/{suffix} is already as in {rel}")
    action = ChangeAction.CHANGED if old else ChangeAction.CREATED
    detail = describe_change(_mapping(old.encode("utf-8", errors="surrogateescape")), parsed.doc.value) \
        if old else "new model"
    return Change(action, suffix, rel, _diff(clone, target, old, new), f"apply {clone.user}/{suffix}: {detail}")


@dataclass(frozen=True)
class SpecEdit:
    """One edit of one value of a model's spec file: what it is called in the commit message
    (`<verb> alice/chat: ...`) and what the command says when the spec is already so."""

    action: ChangeAction
    verb: str
    edit: Callable[[str], str]     # the file's text -> the edited text (specedit: raises YamlDocError, SpecEditError)
    already: str                   # "<user>/<model> {already}" when the edit changes nothing


def scale(clone: Clone, model: str, replicas: int, policy: SpecPolicy, dry_run: bool = False,
          known: bool = True) -> Change:
    """Set num_replicas in the model's spec, keeping every other byte of the file as written."""
    edit = SpecEdit(ChangeAction.SCALED, "scale", lambda text: _scaled(text, replicas),
                    f"already has {replicas} replica(s)")
    return _edited(clone, model, edit, policy, dry_run, known)


def _scaled(text: str, replicas: int) -> str:
    """The spec with num_replicas set; an autoscaled spec is refused (num_replicas beside
    autoscaling would be invalid, and the user did not write it)."""
    scaling = load_mapping(text.encode("utf-8", errors="surrogateescape")).value.get("autoscaling")
    if scaling is not None:
        shown = ", ".join(f"{k} {v}" for k, v in scaling.items()) if isinstance(scaling, dict) else str(scaling)
        raise SpecEditError(f"the model is autoscaled ({shown}): scale sets a fixed num_replicas; change "
                            "autoscaling.min_replicas/max_replicas in the spec instead (argusctl apply), or remove "
                            "autoscaling there to fix the count")
    return set_top_level(text, "num_replicas", replicas)


def set_suspended(clone: Clone, model: str, suspended: bool, policy: SpecPolicy, dry_run: bool = False,
                  known: bool = True) -> Change:
    """Suspend (`suspended: true`) or resume a model. Resuming removes the line rather than
    writing `false` (a spec says only what differs from the defaults); a model already as
    asked is `unchanged`, no commit. Every other byte of the file stays as written."""
    if suspended:
        edit = SpecEdit(ChangeAction.SUSPENDED, "suspend", _suspended, "is already suspended")
    else:
        edit = SpecEdit(ChangeAction.RESUMED, "resume", _resumed, "is not suspended")
    return _edited(clone, model, edit, policy, dry_run, known)


def _says_suspended(text: str) -> object:
    return load_mapping(text.encode("utf-8", errors="surrogateescape")).value.get("suspended", False)


def _suspended(text: str) -> str:
    """The spec with `suspended: true`; one that says so already (in any spelling) is left as it is."""
    return text if _says_suspended(text) is True else set_top_level(text, "suspended", True)


def _resumed(text: str) -> str:
    """The spec without `suspended: true`; one that says `suspended: false` (or nothing) is left as it is."""
    return text if _says_suspended(text) is False else remove_top_level(text, "suspended")


def _edited(clone: Clone, model: str, edit: SpecEdit, policy: SpecPolicy, dry_run: bool, known: bool) -> Change:
    edited: dict[str, str] = {}
    plan = lambda: _plan_edit(clone, model, edit, policy, edited, known)  # noqa: E731
    write = lambda change: _write(clone.path / change.path, edited[change.path])  # noqa: E731
    if dry_run:
        return _written(clone, plan, True, write)
    require_identity(clone.path)
    with write_transaction(clone):
        return _written(clone, plan, False, write)


def _plan_edit(clone: Clone, model: str, edit: SpecEdit, policy: SpecPolicy, edited: dict[str, str],
               known: bool = True) -> Change:
    suffix, path = _locate(clone, model)
    rel = _rel(clone, path)
    old = _read(path)
    try:
        new = edit.edit(old)
    except YamlDocError as exc:
        raise SpecError([Problem(rel, exc.line, exc.col, exc.message, ProblemKind.SYNTAX)]) from None
    except SpecEditError as exc:
        raise SpecError([Problem(rel, 1, 1, str(exc))]) from None
    new_bytes = new.encode("utf-8", errors="surrogateescape")
    judged_spec(rel, new_bytes, clone.user, policy, known)  # e.g. over the replica limit
    if old == new:
        return Change(ChangeAction.UNCHANGED, suffix, rel, "", f"{clone.user}/{suffix} {edit.already}")
    edited[rel] = new
    old_map = _mapping(old.encode("utf-8", errors="surrogateescape"))
    message = f"{edit.verb} {clone.user}/{suffix}: {describe_change(old_map, _mapping(new_bytes))}"
    return Change(edit.action, suffix, rel, _diff(clone, path, old, new), message)


def delete(clone: Clone, model: str, dry_run: bool = False) -> Change:
    plan = lambda: _plan_delete(clone, model)  # noqa: E731
    write = lambda change: (clone.path / change.path).unlink()  # noqa: E731
    if dry_run:
        return _written(clone, plan, True, write)
    require_identity(clone.path)
    with write_transaction(clone):
        return _written(clone, plan, False, write)


def _plan_delete(clone: Clone, model: str) -> Change:
    suffix, path = _locate(clone, model)
    return Change(ChangeAction.DELETED, suffix, _rel(clone, path), _diff(clone, path, _read(path), ""),
                  f"delete {clone.user}/{suffix}")


__all__ = ["Clone", "Change", "ChangeAction", "apply", "scale", "set_suspended", "delete", "suffix_of", "SpecError", "commit_and_push",
           "sync_clone", "write_transaction", "require_identity", "describe_change", "server_clone", "clone_repo", "reset_to_pushed",
           "unpushed_commits"]
