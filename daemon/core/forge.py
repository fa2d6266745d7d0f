"""A GitOps repo on a forge (GitLab, GitHub, Gitea/Forgejo, any git server): the rules, pure.

Where the repo is (a path on this machine, or a URL argusd mirrors), how long a failed fetch
waits before the next try, and whether a webhook delivery carries its forge's proof that it
knows the shared secret. The shell (daemon/remote.py, daemon/api/routes_webhooks.py) does the I/O.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Mapping

from daemon.core.states import StrEnum


class RepoKind(StrEnum):
    LOCAL = "local"    # a bare repo on argusd's own disk (the pre-receive hook can guard it)
    SSH = "ssh"        # ssh://[user@]host[:port]/path or scp-like [user@]host:path
    HTTPS = "https"    # https:// (http:// is accepted for 127.0.0.1 tests and trusted networks)


@dataclass(frozen=True)
class RepoLocation:
    kind: RepoKind
    value: str         # the normalised path (LOCAL) or the URL as written (never holds a secret)

    @property
    def remote(self) -> bool:
        return self.kind is not RepoKind.LOCAL


_SSH_URL = re.compile(r"ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])"
                      r"(?::(?P<port>\d{1,5}))?/(?P<path>\S+)")
_SCP_LIKE = re.compile(r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?!//)(?P<path>[^\s]+)")
_HTTP_URL = re.compile(r"(?P<scheme>https?)://(?P<userinfo>[^@/\s]*@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])"
                       r"(?::(?P<port>\d{1,5}))?/(?P<path>\S+)")


def parse_repo(value: str) -> RepoLocation:
    """Where `gitops.repo` points; ValueError saying how to write it when it is none of the forms."""
    text = value.strip()
    if not text:
        raise ValueError("is empty; give the absolute path of a bare repo on this machine, or its URL "
                         "(ssh://git@host/group/repo.git, git@host:group/repo.git, https://host/group/repo.git)")
    if os.path.isabs(text):
        return RepoLocation(RepoKind.LOCAL, os.path.normpath(text))
    if text.startswith(("http://", "https://")):
        match = _HTTP_URL.fullmatch(text)
        if match is None:
            raise ValueError("is not an HTTPS URL git can fetch; write it as https://host[:port]/group/repo.git")
        if match["userinfo"]:
            # The one form that would put a secret into the config, logs and process lists.
            raise ValueError("has a user or token in the URL; remove it and name a file holding the token in "
                             "gitops.credentials.token_file (and the user in gitops.credentials.username)")
        _check_port(match["port"])
        return RepoLocation(RepoKind.HTTPS, text)
    if text.startswith("ssh://"):
        match = _SSH_URL.fullmatch(text)
        if match is None:
            raise ValueError("is not an SSH URL git can fetch; write it as ssh://git@host[:port]/group/repo.git")
        _check_port(match["port"])
        return RepoLocation(RepoKind.SSH, text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(f"uses {scheme}://, which argus does not fetch; use ssh://, https:// or an absolute path")
    match = _SCP_LIKE.fullmatch(text)
    if match is None or "/" in match["host"]:
        raise ValueError(f"{text!r} is neither an absolute path nor a git URL; write /srv/argus/gitops.git, "
                         "ssh://git@host/group/repo.git, git@host:group/repo.git or https://host/group/repo.git")
    return RepoLocation(RepoKind.SSH, text)


def cleartext_token_problem(url: str) -> str | None:
    """Why a token must not go to `url`, or None: over http:// it would cross the network in
    cleartext, so only a loopback host (127.0.0.0/8, ::1, localhost) may take one."""
    match = _HTTP_URL.fullmatch(url.strip())
    if match is None or match["scheme"] != "http":
        return None
    host = match["host"].strip("[]").lower()
    if host == "localhost" or host == "::1" or re.fullmatch(r"127(\.\d{1,3}){3}", host):
        return None
    return (f"gitops.repo is http:// on {host}, so gitops.credentials.token_file would be sent in cleartext; "
            "use https:// (or an ssh:// repo with ssh_key)")


def _check_port(port: str | None) -> None:
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"has port {port}, which is not a TCP port (1-65535)")


# -- fetching: how long a failing remote waits ---------------------------------------------------

MAX_BACKOFF_S = 300.0


def backoff_seconds(failures: int, poll_seconds: float, cap: float = MAX_BACKOFF_S) -> float:
    """The wait before the next fetch after `failures` failed ones in a row: the poll interval
    while all is well, then doubling (a forge that is down is not hammered, nor are webhooks
    able to make argusd hammer it), never more than `cap` (or the poll interval, if longer)."""
    if failures <= 0:
        return poll_seconds
    return max(poll_seconds, min(cap, poll_seconds * 2 ** min(failures, 30)))


# Fetches woken by webhooks (or API writes) start at most this often: deliveries replayed with
# fresh ids (not signed for GitHub, Gitea, generic) cannot make argusd fetch back to back; one
# arriving meanwhile is coalesced into the one next fetch.
MIN_FETCH_INTERVAL_S = 2.0


def fetch_wait_seconds(now: float, last_started: float | None, min_interval: float = MIN_FETCH_INTERVAL_S) -> float:
    """How long to wait before a fetch may start (0: now), given when the last one started."""
    if last_started is None:
        return 0.0
    return max(0.0, last_started + min_interval - now)


# -- webhooks ------------------------------------------------------------------------------------

class Forge(StrEnum):
    GITHUB = "github"      # X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
    GITLAB = "gitlab"      # X-Gitlab-Token: the secret itself (GitLab signs nothing)
    GITEA = "gitea"        # X-Gitea-Signature (Forgejo: X-Forgejo-Signature too): <hex HMAC-SHA256>
    GENERIC = "generic"    # X-Argus-Signature: sha256=<hex HMAC-SHA256 of the body>


# The header each forge puts its delivery's unique id in (replays carry the same id).
DELIVERY_HEADERS = {
    Forge.GITHUB: ("x-github-delivery",),
    Forge.GITLAB: ("x-gitlab-event-uuid", "idempotency-key"),
    Forge.GITEA: ("x-gitea-delivery", "x-forgejo-delivery"),
    Forge.GENERIC: ("x-argus-delivery",),
}
SIGNATURE_HEADERS = {
    Forge.GITHUB: ("x-hub-signature-256",),
    Forge.GITLAB: ("x-gitlab-token",),
    Forge.GITEA: ("x-gitea-signature", "x-forgejo-signature"),
    Forge.GENERIC: ("x-argus-signature",),
}


def hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(forge: Forge, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    """Whether the delivery proves knowledge of `secret` the way its forge does. `headers` has
    lower-case names. Every comparison is constant-time (hmac.compare_digest); a missing
    header, an empty secret or a malformed value is simply not valid."""
    if not secret:
        return False
    given = next((headers[h] for h in SIGNATURE_HEADERS[forge] if headers.get(h)), None)
    if given is None:
        return False
    given_bytes = given.strip().encode("utf-8", "replace")
    if forge is Forge.GITLAB:
        return hmac.compare_digest(given_bytes, secret)
    expected = hmac_hex(secret, body).encode()
    if forge in (Forge.GITHUB, Forge.GENERIC):
        prefix = b"sha256="
        if not given_bytes.startswith(prefix):
            return False
        given_bytes = given_bytes[len(prefix):]
    return hmac.compare_digest(given_bytes.lower(), expected)


def delivery_id(forge: Forge, headers: Mapping[str, str]) -> str | None:
    """The delivery's id as its forge sends it (lower-case header names), or None."""
    value = next((headers[h] for h in DELIVERY_HEADERS[forge] if headers.get(h)), None)
    return value.strip()[:200] if value else None


def read_secret(data: bytes) -> bytes:
    """A secret file's content: one line; the trailing newline an editor adds is not part of it."""
    return data.rstrip(b"\r\n")


# -- signed commits: the proof of identity (gitops.require_signed) -------------------------------

# The principal argusd's own key signs API writes as (a user id never starts with "@").
API_SIGNER = "@argusd"
_SSH_PUBLIC_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
                             r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( \S.*)?")


_PGP_BLOCK = re.compile(r"-----BEGIN PGP PUBLIC KEY BLOCK-----\n.+\n-----END PGP PUBLIC KEY BLOCK-----", re.S)


def is_openpgp_key(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def ssh_public_key_problem(value: str) -> str | None:
    """Why `value` is neither one SSH public key line (as in id_ed25519.pub) nor one armored
    OpenPGP public key (gpg --armor --export), or None."""
    if is_openpgp_key(value):
        if not _PGP_BLOCK.fullmatch(value.strip()):
            return ("is not a whole armored OpenPGP public key; paste all of `gpg --armor --export <key id>`, "
                    "from -----BEGIN PGP PUBLIC KEY BLOCK----- to -----END PGP PUBLIC KEY BLOCK-----")
        return None
    if "\n" in value.strip() or not _SSH_PUBLIC_KEY.fullmatch(value.strip()):
        return ("is not an SSH public key; paste one line of the user's .pub file, e.g. "
                "'ssh-ed25519 AAAAC3Nza... alice@laptop', or an armored OpenPGP public key")
    return None


def allowed_signers(keys: Mapping[str, list[str]], api_key: str | None = None) -> str:
    """git's gpg.ssh.allowedSignersFile: each user's keys under the user's id as principal (so
    a good signature names the user it proves), argusd's own key as API_SIGNER."""
    lines = []
    for user, user_keys in sorted(keys.items()):
        for key in user_keys:
            if is_openpgp_key(key):
                continue  # verified by gpg with its own keyring (daemon/remote.py)
            kind, blob = key.split()[:2]
            lines.append(f'{user} namespaces="git" {kind} {blob}')
    if api_key:
        kind, blob = api_key.split()[:2]
        lines.append(f'{API_SIGNER} namespaces="git" {kind} {blob}')
    return "".join(line + "\n" for line in lines)


# git's %G? letters, as a reason a commit is no proof of its author.
class SignatureStatus(StrEnum):
    """git's verdict on a commit's signature (%G?)."""
    GOOD = "G"
    UNSIGNED = "N"
    UNKNOWN_KEY = "U"
    BAD = "B"
    CANNOT_CHECK = "E"
    EXPIRED_SIGNATURE = "X"
    EXPIRED_KEY = "Y"
    REVOKED_KEY = "R"
    OTHER = "?"   # a letter a newer git may add: never proof

    @classmethod
    def of(cls, letter: str) -> "SignatureStatus":
        try:
            return cls(letter)
        except ValueError:
            return cls.OTHER


_SIGNATURE_TROUBLE = {
    "N": "is not signed",
    "U": "is signed by a key no user in the config has",
    "B": "has a bad signature (the commit was changed after it was signed)",
    "E": "is signed by a key no user in the config has (or one git cannot check)",
    "X": "has an expired signature", "Y": "is signed by an expired key", "R": "is signed by a revoked key",
}


def signature_problem(user: str, status: "SignatureStatus | str", signer: str, sha: str, author: str, author_email: str,
                      allowed_emails: tuple[str, ...] | list[str]) -> str | None:
    """Why a commit that changed models.d/<user>/ is not proven to be <user>'s (None: it is).
    `status`/`signer`: git's %G? and %GS with the config's allowed signers. A good signature by
    the user's own key proves it; one by argusd's key proves an API write argusd authenticated,
    made as one of the user's git identities."""
    status = SignatureStatus.of(status)
    if status is SignatureStatus.GOOD and signer == user:
        return None
    if status is SignatureStatus.GOOD and signer == API_SIGNER and author_email in allowed_emails:
        return None
    if status is SignatureStatus.GOOD:
        why = ("is signed by argusd's API key but not as one of this user's git identities" if signer == API_SIGNER
               else f"is signed by {signer}'s key")
    else:
        why = _SIGNATURE_TROUBLE.get(status, "has a signature git cannot verify")
    return (f"{author} (commit {sha[:12]}) {why}; models.d/{user}/ takes only commits signed by {user}'s keys "
            f"(users.{user}.signing_keys; gitops.require_signed): sign it (git commit -S) with one of them")
