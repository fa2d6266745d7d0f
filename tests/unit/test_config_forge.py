"""gitops.repo as a URL, its credential files and webhook secrets: one error at path:line:col
with the fix, and never the secret itself in it."""
import pytest

import os

from daemon.config import Reader, gitops_mirror, load_config
from daemon.errors import ConfigError


@pytest.fixture
def files(tmp_path):
    for name in ("key", "known_hosts", "token", "hook-secret"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "empty").write_text(" \n")
    return tmp_path


def load(tmp_path, text, reader=Reader.ARGUSD):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"state:\n  db: {tmp_path}/state/argus.db\n" + text)
    return load_config(path, env={}, reader=reader)


def test_an_ssh_repo_with_its_key_and_known_hosts(files):
    config = load(files, f"gitops:\n  repo: git@gitlab.example.com:team/gitops.git\n  credentials:\n"
                         f"    ssh_key: {files}/key\n    known_hosts: {files}/known_hosts\n"
                         f"  webhooks:\n    gitlab:\n      secret_file: {files}/hook-secret\n")
    assert config.gitops.location.remote
    assert gitops_mirror(config) == f"{files}/state/gitops-mirror.git"
    assert config.gitops.webhooks.gitlab.secret_file == f"{files}/hook-secret"


def test_a_local_repo_is_its_own_mirror(files):
    config = load(files, "gitops:\n  repo: /srv/argus/gitops.git\n")
    assert gitops_mirror(config) == "/srv/argus/gitops.git"


@pytest.mark.parametrize("gitops, fragment", [
    ("  repo: https://oauth2:glpat-XYZ@gitlab.example.com/t/g.git\n",
     "cfg.yaml:4:9: gitops.repo: has a user or token in the URL; remove it and name a file holding the token"),
    ("  repo: gitops.git\n", "cfg.yaml:4:9: gitops.repo: 'gitops.git' is neither an absolute path nor a git URL"),
    ("  repo: ssh://git@h/r.git\n  credentials:\n    ssh_key: {d}/missing-key\n    known_hosts: {d}/known_hosts\n",
     "cfg.yaml:6:14: gitops.credentials.ssh_key: {d}/missing-key does not exist or is not a file; create the SSH "
     "private key there or fix the path"),
    ("  repo: ssh://git@h/r.git\n  credentials:\n    ssh_key: {d}/key\n",
     "gitops.credentials.ssh_key is set but not gitops.credentials.known_hosts"),
    ("  repo: https://h/r.git\n  credentials:\n    ssh_key: {d}/key\n    known_hosts: {d}/known_hosts\n",
     "ssh_key and known_hosts are for an ssh:// repo"),
    ("  repo: ssh://git@h/r.git\n  credentials:\n    token_file: {d}/token\n",
     "token_file is for an https:// repo"),
    ("  repo: https://h/r.git\n  credentials:\n    token_file: token\n",
     "cfg.yaml:6:17: gitops.credentials.token_file: must be an absolute path"),
    ("  repo: https://h/r.git\n  webhooks:\n    github:\n      secret_file: {d}/nope\n",
     "cfg.yaml:7:20: gitops.webhooks.github.secret_file: {d}/nope does not exist"),
    ("  repo: https://h/r.git\n  webhooks:\n    gitea:\n      secret_file: {d}/empty\n",
     "cfg.yaml:7:20: gitops.webhooks.gitea.secret_file: {d}/empty is empty; put the secret in it"),
    ("  repo: https://h/r.git\n  credentials:\n    token_file: {d}/empty\n",
     "cfg.yaml:6:17: gitops.credentials.token_file: {d}/empty is empty"),
    ("  repo: http://gitlab.example.com/t/g.git\n  credentials:\n    token_file: {d}/token\n",
     "gitops.repo is http:// on gitlab.example.com, so gitops.credentials.token_file would be sent in cleartext"),
    ("  repo: https://h/r.git\n  webhooks:\n    bitbucket:\n      secret_file: {d}/hook-secret\n",
     "unknown field 'gitops.webhooks.bitbucket'"),
])
def test_mistakes_are_one_error_at_their_place(files, gitops, fragment):
    """(gitops only; the users section's signing keys below)"""
    with pytest.raises(ConfigError) as exc:
        load(files, "gitops:\n" + gitops.format(d=files))
    assert fragment.format(d=files) in str(exc.value)
    assert "glpat-XYZ" not in str(exc.value)


@pytest.mark.parametrize("text, fragment", [
    ("users:\n  alice:\n    signing_keys: ['ssh-ed25519']\n",
     "cfg.yaml:5:20: users.alice.signing_keys.0: is not an SSH public key; paste one line of the user's .pub file"),
    ("users:\n  alice:\n    signing_keys: ['-----BEGIN PGP PUBLIC KEY BLOCK-----']\n",
     "cfg.yaml:5:20: users.alice.signing_keys.0: is not a whole armored OpenPGP public key"),
    ("gitops:\n  api_signing_key: {d}/key\n",
     "cfg.yaml:4:20: gitops.api_signing_key: {d}/key.pub does not exist; put the key's public half beside it"),
])
def test_signing_mistakes(files, text, fragment):
    with pytest.raises(ConfigError) as exc:
        load(files, text.format(d=files))
    assert fragment.format(d=files) in str(exc.value)


@pytest.mark.parametrize("text, fragment", [
    ("gitops:\n  require_signed: true\n",
     "cfg.yaml:4:19: gitops.require_signed: is true but there is no users section, so no signature would be "
     "checked; add users.<user>.git_identities and signing_keys"),
    ("gitops:\n  require_signed: true\nusers:\n  alice:\n    signing_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq a']\n"
     "  bob:\n    git_identities: [bob@example.com]\n",
     "cfg.yaml:9:5: users.bob: has no signing_keys, and gitops.require_signed is true; add the user's public key"),
])
def test_require_signed_that_would_check_nothing_is_refused(files, text, fragment):
    with pytest.raises(ConfigError) as exc:
        load(files, text.format(d=files))
    assert fragment.format(d=files) in str(exc.value)


def test_signing_keys_load(files):
    (files / "key.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq argusd\n")
    config = load(files, f"gitops:\n  require_signed: true\n  api_signing_key: {files}/key\n"
                         "users:\n  alice:\n    signing_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq alice']\n")
    assert config.gitops.require_signed and config.signing_keys() == {"alice": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq alice"]}


SECRETS = ("gitops:\n  repo: https://h/r.git\n  credentials:\n    token_file: {d}/token\n"
           "  webhooks:\n    github:\n      secret_file: {d}/hook-secret\n  api_signing_key: {d}/key\n")


def test_only_argusd_reads_its_secrets(files):
    """The hook (run as the pushing user) and argusctl (as a user) load a config whose secret
    files they cannot read; argusd, loading the same, is told at the line."""
    (files / "key.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq argusd\n")
    for name in ("token", "hook-secret", "key"):
        (files / name).unlink()
    config = load(files, SECRETS.format(d=files), reader=Reader.USER)
    assert config.gitops.api_signing_key == f"{files}/key"
    with pytest.raises(ConfigError) as exc:
        load(files, SECRETS.format(d=files))
    assert f"cfg.yaml:6:17: gitops.credentials.token_file: {files}/token does not exist" in str(exc.value)
    assert f"gitops.api_signing_key: {files}/key does not exist" in str(exc.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_a_user_cannot_be_made_to_need_argusds_key(files):
    (files / "key.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq argusd\n")
    for name in ("token", "hook-secret", "key"):
        (files / name).chmod(0)
    assert load(files, SECRETS.format(d=files), reader=Reader.USER).gitops.credentials.token_file == f"{files}/token"
