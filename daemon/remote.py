"""A remote GitOps repo (a forge) as argusd and argus's clones reach it: the shell.

argusd keeps a bare mirror of the tracked branch and fetches into it; sync then reads the
mirror exactly as it reads a local bare repo, so a remote repo is recorded with the same
events, ownership rules and refusals. Credentials are files the config names, put into a
repo's own git config as paths (core.sshCommand for SSH, a credential helper that cats the
token file for HTTPS): no secret is ever in a URL, an argument list, a log line or an error.
The last fetch's outcome is kept in a small JSON file beside the store, for `argusctl status`
and `doctor`.
"""
from __future__ import annotations

import json
import re
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from daemon.config import Config, GitCredentials, gitops_mirror
from daemon.core.forge import RepoKind, parse_repo
from daemon.errors import GitError
from daemon.gitrepo import run_git

if TYPE_CHECKING:
    from daemon.gitrepo import SignatureCheck

# git never asks on a terminal (argusd has none; a prompt would hang the fetch).
NO_PROMPT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false"}
FETCH_STATE_FILE = "gitops-fetch.json"


def ssh_command(creds: GitCredentials) -> str:
    """The ssh git runs: only this key, only this known_hosts, never a prompt, never a host key
    accepted on first use, and a dead connection noticed within ~30 s."""
    return " ".join(["ssh", "-F", "/dev/null", "-i", shlex.quote(creds.ssh_key or ""),
                     "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={shlex.quote(creds.known_hosts or '')}",
                     "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
                     "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"])


def credential_helper(creds: GitCredentials) -> str:
    """A git credential helper that answers `get` with the user and the token file's content
    (read at each use, so rotating the file needs no restart); the token is in no argument."""
    path = shlex.quote(creds.token_file or "")
    user = shlex.quote(creds.username)
    return (f"!f() {{ test \"$1\" = get || exit 0; printf 'username=%s\\n' {user}; "
            f"printf 'password=%s\\n' \"$(cat {path})\"; }}; f")


def configure_remote(repo_dir: str | os.PathLike, url: str, creds: GitCredentials) -> None:
    """Point `repo_dir`'s origin at `url` and give it the config's credentials (paths only).
    Run each time a repo is opened, so a changed config takes effect."""
    kind = parse_repo(url).kind
    settings: list[tuple[str, Optional[str]]] = [("remote.origin.url", url)]
    if kind is RepoKind.SSH and creds.ssh_key:
        settings.append(("core.sshCommand", ssh_command(creds)))
    else:
        settings.append(("core.sshCommand", None))
    # Slow-but-alive HTTP transfers are kept; a stalled one is dropped after 30 s.
    settings += [("http.lowSpeedLimit", "1"), ("http.lowSpeedTime", "30")]
    for key, value in settings:
        if value is None:
            run_git("config", "--unset-all", key, cwd=repo_dir)
        else:
            _checked(run_git("config", key, value, cwd=repo_dir), repo_dir)
    # The helper answers for the repo's URL only (credential.<url>.helper), and no redirect is
    # followed: the token never goes to another host. An empty helper first: no helper from the
    # system or user config sees this remote. (A bare credential.helper is an older argus's.)
    scoped = f"credential.{url}.helper"
    for key in ("credential.helper", scoped, TOKEN_FILE_KEY, "http.followRedirects"):
        run_git("config", "--unset-all", key, cwd=repo_dir)
    if kind is RepoKind.HTTPS and creds.token_file:
        _checked(run_git("config", TOKEN_FILE_KEY, creds.token_file, cwd=repo_dir), repo_dir)
        _checked(run_git("config", "http.followRedirects", "false", cwd=repo_dir), repo_dir)
        _checked(run_git("config", "--add", scoped, "", cwd=repo_dir), repo_dir)
        _checked(run_git("config", "--add", scoped, credential_helper(creds), cwd=repo_dir), repo_dir)


def _checked(done: subprocess.CompletedProcess, where: str | os.PathLike) -> None:
    if done.returncode != 0:
        raise GitError(f"cannot configure the git remote in {where}: {done.stderr.strip()}")


# user:password@ in a URL git or a server prints (a bare user, as in ssh://git@host, is no secret).
_URL_SECRET = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s@:]+:[^/\s@]+@")


def redact(text: str, creds: GitCredentials | None) -> str:
    """`text` without the token or a password in a URL, should any server or git ever echo
    them back: the one redaction for every remote git error argus shows or logs."""
    text = _URL_SECRET.sub(r"\1***@", text)
    if creds is not None and creds.token_file:
        try:
            token = Path(creds.token_file).read_text().strip()
        except OSError:
            return text
        if len(token) >= 4:
            text = text.replace(token, "***")
    return text


TOKEN_FILE_KEY = "argus.tokenFile"  # in a clone's git config: whose token its errors must not show


def run_redacted_remote_git(args: list[str], cwd: str | os.PathLike, timeout: float) -> subprocess.CompletedProcess:
    """run_remote_git with its output redacted (the token configure_remote gave `cwd`, if any)."""
    done = run_remote_git(args, cwd=cwd, timeout=timeout)
    token_file = run_git("config", "--get", TOKEN_FILE_KEY, cwd=cwd).stdout.strip() or None
    creds = GitCredentials(token_file=token_file) if token_file else None
    return subprocess.CompletedProcess(done.args, done.returncode, redact(done.stdout, creds),
                                       redact(done.stderr, creds))


def run_remote_git(args: list[str], cwd: str | os.PathLike, timeout: float) -> subprocess.CompletedProcess:
    """git talking to a remote, stopped whole (ssh and git-remote-https too: its own process
    group) when it takes longer than `timeout`: a hung server never wedges argusd."""
    env = {**os.environ, **NO_PROMPT_ENV}
    try:
        proc = subprocess.Popen(["git", "--no-replace-objects", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=True)
    except OSError as exc:
        raise GitError(f"cannot run git in {cwd}: {exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise GitError(f"git {args[0]} did not finish in {timeout:g} s (gitops.fetch_timeout_seconds); "
                           "the server or the network hangs") from None
    except BaseException:
        # Ctrl-C (or any other way out) stops the push too: in its own session it would not get
        # the terminal's SIGINT, and would go on to push after the user gave up on it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@dataclass
class FetchState:
    """What the last fetches did, as `status`, `doctor` and the API show it."""
    repo: str
    last_attempt: Optional[str] = None
    last_success: Optional[str] = None
    failures: int = 0              # failed fetches in a row
    error: Optional[str] = None    # the last failure's message (no secret), None after a success
    next_attempt_in: float = 0.0   # seconds after last_attempt (the backoff)


def fetch_state_path(config: Config) -> Path:
    return Path(config.state.db).parent / FETCH_STATE_FILE


def write_fetch_state(path: Path, state: FetchState) -> None:
    """Atomically (a reader sees the old file or the new one, never half of one)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(state), handle)
        os.replace(tmp, path)
    except OSError:
        pass  # a hint for status only; never a reason to stop syncing


def read_fetch_state(config: Config) -> Optional[FetchState]:
    """The state argusd last wrote, or None (a local repo, or argusd never fetched)."""
    try:
        data = json.loads(fetch_state_path(config).read_text())
        return FetchState(**{k: data[k] for k in FetchState.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError):
        return None


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Mirror:
    """argusd's bare mirror of the tracked branch of a remote repo."""

    def __init__(self, config: Config):
        gitops = config.gitops
        self.url = gitops.repo
        self.branch = gitops.branch
        self.creds = gitops.credentials
        self.timeout = gitops.fetch_timeout_seconds
        self.path = gitops_mirror(config)
        self._configured = False

    def ensure(self) -> None:
        """The mirror exists and fetches from the configured URL with the configured credentials
        (set once per argusd run: the config's credentials win over whatever the mirror had)."""
        if not os.path.exists(os.path.join(self.path, "HEAD")):
            os.makedirs(self.path, exist_ok=True)
            done = run_git("init", "-q", "--bare", "-b", self.branch, cwd=self.path)
            if done.returncode != 0:
                raise GitError(f"cannot create the mirror {self.path}: {done.stderr.strip()}")
            self._configured = False
        if not self._configured:
            configure_remote(self.path, self.url, self.creds)
            self._configured = True

    def fetch(self) -> bool:
        """Fetch the tracked branch, forced (a force-push upstream is resynced by the syncer with
        the same ownership rule). Only that branch: argusd's own refs here (the id ledger) stay.
        True when the branch exists upstream; False when the remote has no such branch yet."""
        self.ensure()
        spec = f"+refs/heads/{self.branch}:refs/heads/{self.branch}"
        done = run_remote_git(["fetch", "--no-tags", "--no-write-fetch-head", "-q", "origin", spec],
                              cwd=self.path, timeout=self.timeout)
        if done.returncode == 0:
            return True
        said = redact(done.stderr.strip(), self.creds)
        if "couldn't find remote ref" in said:
            return False
        raise GitError(f"fetching {self.url} into {self.path} failed: {said or f'exit {done.returncode}'}")


def fetch_summary(config: Config, now: Optional[datetime] = None) -> Optional[dict]:
    """A remote repo's fetch state for `argusctl status` (None for a local repo)."""
    if not config.gitops.location.remote:
        return None
    state = read_fetch_state(config)
    if state is None or state.repo != config.gitops.repo:
        return {"repo": config.gitops.repo, "ok": None, "last_success": None, "failures": 0, "error": None}
    now = now or datetime.now(timezone.utc)
    age = None
    if state.last_success:
        age = (now - datetime.fromisoformat(state.last_success)).total_seconds()
    return {"repo": state.repo, "ok": state.error is None, "last_success": state.last_success,
            "seconds_since_success": age, "failures": state.failures, "error": state.error}


def fetch_line(summary: Optional[dict]) -> Optional[str]:
    """One line of `argusctl status` about the remote repo, or None for a local one."""
    if summary is None:
        return None
    since = summary.get("seconds_since_success")
    good = "never" if since is None else f"{since:.0f} s ago"
    if summary["ok"] is None:
        return f"GitOps repo: {summary['repo']} (not fetched yet: is argusd running?)"
    if summary["ok"]:
        return f"GitOps repo: {summary['repo']} (last fetched {good})"
    return (f"GitOps repo: {summary['repo']}: fetch failing ({summary['failures']} in a row, last good {good}): "
            f"{summary['error']}; models keep serving what was recorded")


GPG_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes with its NUL; a margin for gpg's own names
SHORT_HOME_PREFIX = "argus-gnupg-"
SHORT_HOME_NOTE = "gnupg.short-home"   # in the signers directory: the short home made last time


def _drop_short_home(directory: Path) -> None:
    """Remove the short keyring home the previous start made (only a directory of argusd's own:
    in /tmp, named as argusd names them, owned by this user, not a symlink)."""
    note = directory / SHORT_HOME_NOTE
    try:
        old = Path(note.read_text().strip())
    except OSError:
        return
    note.unlink(missing_ok=True)
    try:
        info = old.lstat()
    except OSError:
        return
    if (old.parent == Path("/tmp") and old.name.startswith(SHORT_HOME_PREFIX) and stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()):
        shutil.rmtree(old, ignore_errors=True)


def prepare_signatures(config: Config, directory: Path) -> Optional["SignatureCheck"]:
    """gitops.require_signed: what git verifies signatures with, made from the config under
    `directory` (made anew each time: a key removed from the config is gone): the allowed
    signers file for SSH keys (each user's, argusd's API key) and a keyring of the users'
    OpenPGP keys. None when signatures are not required."""
    from daemon.core.forge import allowed_signers, is_openpgp_key
    from daemon.gitrepo import SignatureCheck

    if not config.gitops.require_signed:
        return None
    ssh_keys = {u: [k for k in keys if not is_openpgp_key(k)] for u, keys in config.signing_keys().items()}
    pgp_keys = [(u, k) for u, keys in config.signing_keys().items() for k in keys if is_openpgp_key(k)]
    api_key = None
    if config.gitops.api_signing_key:
        api_key = Path(config.gitops.api_signing_key + ".pub").read_text().strip()
    directory.mkdir(parents=True, exist_ok=True)
    signers = directory / "allowed_signers"
    fd, tmp = tempfile.mkstemp(prefix=".signers-", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(allowed_signers(ssh_keys, api_key))
    os.replace(tmp, signers)
    home = directory / "gnupg"
    shutil.rmtree(home, ignore_errors=True)
    _drop_short_home(directory)
    if not pgp_keys:
        return SignatureCheck(str(signers))
    if len(str(home / "S.gpg-agent.browser")) > GPG_SOCKET_PATH_MAX:
        # gpg reaches its agent through sockets in its home even to import public keys, and a
        # socket path must fit 108 bytes: a long state directory gets a short home of its own
        # (public keys only; argusd's alone, 0700), named in the state directory so that the
        # next start removes it.
        home = Path(tempfile.mkdtemp(prefix=SHORT_HOME_PREFIX, dir="/tmp"))
        (directory / SHORT_HOME_NOTE).write_text(str(home))
    else:
        home.mkdir(mode=0o700)
    # Being listed in the config is the trust; importing and verifying need no agent (none is left running).
    (home / "gpg.conf").write_text("trust-model always\nno-autostart\n")
    users: list[tuple[str, str]] = []
    for user, key in pgp_keys:
        env = {**os.environ, "GNUPGHOME": str(home)}
        try:
            shown = subprocess.run(["gpg", "--batch", "--with-colons", "--import-options", "show-only", "--import"],
                                   input=key, capture_output=True, text=True, env=env)
        except FileNotFoundError:
            raise GitError(f"users.{user}.signing_keys holds an OpenPGP key but gpg is not installed; "
                           "install gnupg (apt-get install gnupg) or give an SSH key instead") from None
        fingerprints = [line.split(":")[9] for line in shown.stdout.splitlines() if line.startswith("fpr:")]
        primaries = sum(1 for line in shown.stdout.splitlines() if line.startswith("pub:"))
        if primaries > 1:
            # Only the first primary key is tied to the user; another (with any user ID) would sign as no one
            # at best, so a block holding several is refused rather than half-trusted.
            raise GitError(f"users.{user}.signing_keys: an OpenPGP key block holds {primaries} primary keys "
                           f"(first {fingerprints[0].upper()}); give each key as its own entry "
                           "(gpg --armor --export <one key id>)")
        done = subprocess.run(["gpg", "--batch", "--quiet", "--import"], input=key, capture_output=True, text=True,
                              env=env)
        if done.returncode != 0 or not fingerprints:
            raise GitError(f"cannot import an OpenPGP key of users.{user}.signing_keys: {done.stderr.strip()}; "
                           "paste the output of gpg --armor --export <key id>")
        users.append((fingerprints[0].upper(), user))  # the primary key's: what %GP names
    return SignatureCheck(str(signers), str(home), tuple(users))


def signing_settings(key: str) -> list[tuple[str, str]]:
    """The git config that makes a clone sign every commit with the SSH key at `key`."""
    return [("gpg.format", "ssh"), ("user.signingkey", key), ("commit.gpgsign", "true")]
