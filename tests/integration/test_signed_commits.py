"""Signed commits as the proof of identity (gitops.require_signed), verified by git itself
(gpg.ssh.allowedSignersFile) with real SSH signatures made by `git commit -S`: argusd applies
a change under models.d/<user>/ only if a commit signed by one of that user's keys made it, in
the pre-receive hook too; argusd's own key signs the API's writes."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from daemon import gitwrite
from daemon.argusd import Daemon
from daemon.config import load_config
from daemon.errors import GitError
from daemon.store import Store
from helpers import GitOps, run_argusctl, spec, write_config


def keypair(tmp: Path, name: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(tmp / name)], check=True)
    return tmp / name


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    d.mkdir()
    return {name: keypair(d, name) for name in ("alice", "bob", "stranger", "argusd")}


def users_yaml(keys, alice_keys=("alice",)) -> str:
    alice = ", ".join(f'"{(keys[k].with_suffix(".pub")).read_text().strip()}"' for k in alice_keys)
    bob = (keys["bob"].with_suffix(".pub")).read_text().strip()
    return (f"  require_signed: true\n  api_signing_key: {keys['argusd']}\n"
            f"users:\n  alice:\n    git_identities: [alice@example.com]\n    signing_keys: [{alice}]\n"
            f"  bob:\n    git_identities: [bob@example.com]\n    signing_keys: [\"{bob}\"]\n")


def make_config(tmp_path, gitops, keys, name="argus.yaml", **kw):
    return write_config(tmp_path / name, root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                        repo=gitops.bare, extra=users_yaml(keys, **kw))


def commit(gitops: GitOps, message: str, key: Path | None, author: str = "Alice", email: str = "alice@example.com") -> str:
    env = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": author,
           "GIT_COMMITTER_EMAIL": email}
    gitops.git("add", "-A")
    signing = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-S"] if key else ["commit"]
    gitops.git(*signing, "-q", "--allow-empty", "-m", message, env=env)
    return gitops.git("rev-parse", "HEAD").strip()


def state(config_path) -> tuple[dict, dict]:
    """(model suffix -> replicas, spec path -> refusal message) as argusd recorded them."""
    store = Store.open_readonly(load_config(config_path).state.db)
    try:
        models = {m.model_id_suffix: m.resolved["num_replicas"] for m in store.list_models()}
        refused = {r.spec_path: r.problems[0].message for r in store.rejections()}
        return models, refused
    finally:
        store.close()


def tick(config_path) -> None:
    cfg = load_config(config_path)
    os.makedirs(os.path.dirname(cfg.state.db), exist_ok=True)
    daemon = Daemon(cfg, Store.open(cfg.state.db), None, watch=False)
    try:
        assert daemon.tick()
    finally:
        daemon._drop_repo()
        daemon.store.close()


A = "models.d/alice/a.yaml"


def test_only_the_owners_signature_applies_a_change(tmp_path, keys):
    gitops = GitOps(tmp_path / "g")
    config = make_config(tmp_path, gitops, keys)

    gitops.write(A, spec("a"))
    commit(gitops, "alice signs", keys["alice"])
    gitops.push()
    tick(config)
    assert state(config) == ({"a": 1}, {})

    for replicas, key, author, email, why in [
        (2, None, "Alice", "alice@example.com", "is not signed"),
        (3, keys["stranger"], "Alice", "alice@example.com", "is signed by a key no user in the config has"),
        (4, keys["bob"], "Alice", "alice@example.com", "is signed by bob's key"),       # a forged author
    ]:
        gitops.write(A, spec("a", replicas=replicas))
        sha = commit(gitops, f"scale to {replicas}", key, author, email)
        gitops.push()
        tick(config)
        models, refused = state(config)
        assert models == {"a": 1}, why                                              # the model keeps its spec
        assert refused[A] == (f"Alice <alice@example.com> (commit {sha[:12]}) {why}; models.d/alice/ takes only "
                              "commits signed by alice's keys (users.alice.signing_keys; gitops.require_signed): "
                              "sign it (git commit -S) with one of them")

    # Refused until the owner commits the file: alice signs the change herself.
    gitops.write(A, spec("a", replicas=2))
    commit(gitops, "alice signs the scale", keys["alice"])
    gitops.push()
    tick(config)
    assert state(config) == ({"a": 2}, {})

    # A key removed from the config after it signed: what it signed stays applied (ownership is
    # judged when a commit is recorded); its next signature proves nothing. (Her new key replaces
    # it: a user without signing keys is refused under require_signed.)
    config2 = make_config(tmp_path, gitops, keys, name="argus2.yaml", alice_keys=("stranger",))
    tick(config2)
    assert state(config2) == ({"a": 2}, {})
    gitops.write(A, spec("a", replicas=3))
    commit(gitops, "signed with the removed key", keys["alice"])
    gitops.push()
    tick(config2)
    models, refused = state(config2)
    assert models == {"a": 2} and "is signed by a key no user in the config has" in refused[A]


def test_argusds_key_signs_api_writes_as_the_authenticated_user(tmp_path, keys):
    gitops = GitOps(tmp_path / "g")
    config = make_config(tmp_path, gitops, keys)
    cfg = load_config(config)
    clone = gitwrite.server_clone(gitops.bare, tmp_path / "api-clones" / "alice", "alice", "main", "Alice",
                                  "alice@example.com", signing_key=cfg.gitops.api_signing_key)
    gitwrite.apply(clone, spec("b").encode(), "spec.yaml", gitwrite.SpecPolicy.from_config(cfg))
    tick(config)
    assert state(config) == ({"b": 1}, {})
    signed = subprocess.run(["git", "-C", str(gitops.bare), "-c", f"gpg.ssh.allowedSignersFile={tmp_path / 'state' / 'signers' / 'allowed_signers'}",
                             "log", "-1", "--format=%G? %GS %ae"], capture_output=True, text=True).stdout.strip()
    assert signed == "G @argusd alice@example.com"

    # The same key cannot make argusd's write pass as another user's: bob's identity in alice's folder.
    clone = gitwrite.server_clone(gitops.bare, tmp_path / "api-clones" / "bob", "alice", "main", "Bob",
                                  "bob@example.com", signing_key=cfg.gitops.api_signing_key)
    gitwrite.apply(clone, spec("c").encode(), "spec.yaml", gitwrite.SpecPolicy.from_config(cfg))
    tick(config)
    models, refused = state(config)
    assert models == {"b": 1} and "models.d/alice/c.yaml" in refused


def test_the_hook_refuses_an_unsigned_or_foreign_signed_push(tmp_path, keys):
    gitops = GitOps(tmp_path / "g")
    config = make_config(tmp_path, gitops, keys)
    assert run_argusctl("--config", str(config), "hook", "install").returncode == 0
    gitops.write(A, spec("a"))
    commit(gitops, "unsigned", None)
    pushed = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=gitops.work, capture_output=True, text=True)
    assert pushed.returncode != 0 and "is not signed; models.d/alice/ takes only commits signed by alice's keys" \
        in pushed.stderr
    gitops.git("update-ref", "-d", "HEAD")
    commit(gitops, "signed by bob as alice", keys["bob"])
    pushed = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=gitops.work, capture_output=True, text=True)
    assert pushed.returncode != 0 and "is signed by bob's key" in pushed.stderr
    gitops.git("update-ref", "-d", "HEAD")
    commit(gitops, "alice signs", keys["alice"])
    pushed = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=gitops.work, capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stderr


def test_argusctl_signs_when_the_users_git_signs(tmp_path, keys):
    gitops = GitOps(tmp_path / "g")
    config = make_config(tmp_path, gitops, keys)
    work = tmp_path / "work"

    def cli(*args):
        done = run_argusctl("--config", str(config), *args)
        assert done.returncode == 0, done.stderr

    cli("init", "--user", "alice", "--workdir", str(work), "--name", "Alice", "--email", "alice@example.com")
    for key, value in (("gpg.format", "ssh"), ("user.signingkey", str(keys["alice"])), ("commit.gpgsign", "true")):
        subprocess.run(["git", "-C", str(work), "config", key, value], check=True)
    (tmp_path / "a.yaml").write_text(spec("a"))
    cli("apply", "-f", str(tmp_path / "a.yaml"), "--workdir", str(work))
    tick(config)
    models, refused = state(config)
    assert models == {"a": 1} and refused == {}


def gpg_key(home: Path, uid: str) -> tuple[str, str]:
    """A throwaway OpenPGP signing key in its own GNUPGHOME: (fingerprint, armored public key)."""
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-gen-key", uid, "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    listed = subprocess.run(["gpg", "--with-colons", "--list-keys", uid], env=env, capture_output=True, text=True).stdout
    fpr = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))
    armored = subprocess.run(["gpg", "--armor", "--export", fpr], env=env, capture_output=True, text=True).stdout
    return fpr, armored


@pytest.fixture
def gpg_homes():
    """GNUPGHOMEs for throwaway keys, in a short directory of their own: gpg-agent's sockets live
    there and must fit a socket path (108 bytes), which CI's long TMPDIR does not leave room for.
    Their gpg-agents (started by key generation and signing) are stopped after."""
    top = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    yield top
    for home in top.glob("gpg-*"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)
    shutil.rmtree(top, ignore_errors=True)


def alice_openpgp_config(tmp_path, gitops, alice_pub: str):
    """A config that requires signatures, with alice's OpenPGP public key block as her one key."""
    block = "".join(f"          {line}\n" for line in alice_pub.strip().splitlines())
    return write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                        repo=gitops.bare, extra=("  require_signed: true\nusers:\n  alice:\n"
                                                 "    git_identities: [alice@example.com]\n"
                                                 f"    signing_keys:\n      - |\n{block}"))


def test_openpgp_keys_prove_identity_too(tmp_path, keys, gpg_homes):
    alice_fpr, alice_pub = gpg_key(gpg_homes / "gpg-alice", "Alice <alice@example.com>")
    other_fpr, _ = gpg_key(gpg_homes / "gpg-other", "Mallory <alice@example.com>")
    gitops = GitOps(tmp_path / "g")
    config = alice_openpgp_config(tmp_path, gitops, alice_pub)

    def pgp_commit(message: str, home: str, fpr: str) -> str:
        env = {"GNUPGHOME": home, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@example.com",
               "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@example.com"}
        gitops.git("add", "-A")
        gitops.git("-c", "gpg.format=openpgp", "-c", f"user.signingkey={fpr}", "commit", "-S", "-q", "-m", message,
                   env=env)
        return gitops.git("rev-parse", "HEAD").strip()

    gitops.write(A, spec("a"))
    pgp_commit("alice signs with gpg", str(gpg_homes / "gpg-alice"), alice_fpr)
    gitops.push()
    tick(config)
    assert state(config) == ({"a": 1}, {})
    gitops.write(A, spec("a", replicas=2))
    sha = pgp_commit("a key that is not alice's", str(gpg_homes / "gpg-other"), other_fpr)
    gitops.push()
    tick(config)
    models, refused = state(config)
    assert models == {"a": 1}
    assert refused[A].startswith(f"Alice <alice@example.com> (commit {sha[:12]}) is signed by a key no user in the "
                                 "config has")


def test_an_openpgp_block_with_a_second_key_cannot_sign_as_another_user(tmp_path, keys, gpg_homes):
    """alice's block carries a second primary key whose user ID is "bob": were it imported, git's %GS
    (the user ID) would name bob. The block is refused at start, naming the user and the key."""
    home = gpg_homes / "gpg-alice"
    alice_fpr, _ = gpg_key(home, "Alice <alice@example.com>")
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-gen-key", "bob", "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    both = subprocess.run(["gpg", "--armor", "--export"], env=env, capture_output=True, text=True, check=True).stdout
    gitops = GitOps(tmp_path / "g")
    block = "".join(f"          {line}\n" for line in both.strip().splitlines())
    bob = (keys["bob"].with_suffix(".pub")).read_text().strip()
    config = write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                          repo=gitops.bare, extra=("  require_signed: true\nusers:\n  alice:\n"
                                                   "    git_identities: [alice@example.com]\n"
                                                   f"    signing_keys:\n      - |\n{block}"
                                                   f"  bob:\n    git_identities: [bob@example.com]\n"
                                                   f"    signing_keys: [\"{bob}\"]\n"))
    gitops.write("models.d/bob/b.yaml", spec("b"))
    commit(gitops, "bob's model", keys["bob"], "Bob", "bob@example.com")
    gitops.push()
    with pytest.raises(GitError) as refused:
        tick(config)
    assert str(refused.value).startswith("users.alice.signing_keys: an OpenPGP key block holds 2 primary keys "
                                         f"(first {alice_fpr.upper()})")


def test_an_openpgp_key_without_gpg_is_one_clear_error(tmp_path, keys, gpg_homes, monkeypatch):
    _, alice_pub = gpg_key(gpg_homes / "gpg-alice", "Alice <alice@example.com>")
    gitops = GitOps(tmp_path / "g")
    config = alice_openpgp_config(tmp_path, gitops, alice_pub)
    only_git = tmp_path / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to(subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip())
    monkeypatch.setenv("PATH", str(only_git))
    with pytest.raises(GitError) as refused:
        tick(config)
    assert str(refused.value) == ("users.alice.signing_keys holds an OpenPGP key but gpg is not installed; install "
                                  "gnupg (apt-get install gnupg) or give an SSH key instead")


def test_a_short_keyring_home_made_for_a_long_state_directory_is_removed_at_the_next_start(tmp_path, keys,
                                                                                          gpg_homes):
    from daemon.remote import SHORT_HOME_NOTE, prepare_signatures

    _, alice_pub = gpg_key(gpg_homes / "gpg-alice", "Alice <alice@example.com>")
    config = load_config(alice_openpgp_config(tmp_path, GitOps(tmp_path / "g"), alice_pub))
    signers = tmp_path / ("long-state-directory-" * 5) / "signers"   # too long for gpg-agent's socket
    first = prepare_signatures(config, signers)
    assert first is not None and first.gnupg_home.startswith("/tmp/argus-gnupg-")
    assert Path(first.gnupg_home, "pubring.kbx").exists()
    second = prepare_signatures(config, signers)
    assert not Path(first.gnupg_home).exists() and Path(second.gnupg_home).is_dir()
    # Only a home argusd made is removed: a note naming any other directory removes nothing.
    (signers / SHORT_HOME_NOTE).write_text(str(tmp_path))
    third = prepare_signatures(config, signers)
    assert tmp_path.is_dir() and Path(second.gnupg_home).is_dir()
    shutil.rmtree(second.gnupg_home)
    shutil.rmtree(third.gnupg_home)
