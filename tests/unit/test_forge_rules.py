"""The forge rules as tables: where gitops.repo points, the fetch backoff, webhook signatures."""
import hashlib
import hmac

import pytest

from daemon.core.forge import (Forge, RepoKind, backoff_seconds, delivery_id, parse_repo, read_secret,
                               signature_valid)


@pytest.mark.parametrize("value, kind", [
    ("/srv/argus/gitops.git", RepoKind.LOCAL),
    ("/srv/argus//gitops.git/", RepoKind.LOCAL),
    ("ssh://git@gitlab.example.com/team/gitops.git", RepoKind.SSH),
    ("ssh://git@127.0.0.1:2222/srv/gitops.git", RepoKind.SSH),
    ("git@github.com:team/gitops.git", RepoKind.SSH),
    ("gitea.local:team/gitops.git", RepoKind.SSH),
    ("https://gitlab.example.com/team/gitops.git", RepoKind.HTTPS),
    ("http://127.0.0.1:8080/git/gitops.git", RepoKind.HTTPS),
])
def test_repo_forms(value, kind):
    assert parse_repo(value).kind is kind
    assert parse_repo(value).remote == (kind is not RepoKind.LOCAL)


@pytest.mark.parametrize("value, says", [
    ("", "is empty"),
    ("gitops.git", "neither an absolute path nor a git URL"),
    ("relative/path", "neither an absolute path nor a git URL"),
    ("https://oauth2:glpat-secret@gitlab.example.com/t/g.git", "token_file"),
    ("https://user@github.com/t/g.git", "has a user or token in the URL"),
    ("ftp://host/repo.git", "ftp://"),
    ("git://host/repo.git", "git://"),
    ("ssh://git@host:99999/r.git", "not a TCP port"),
    ("https://host", "not an HTTPS URL"),
])
def test_repo_mistakes(value, says):
    with pytest.raises(ValueError) as exc:
        parse_repo(value)
    assert says in str(exc.value)
    assert "glpat-secret" not in str(exc.value)


@pytest.mark.parametrize("failures, poll, wait", [
    (0, 5, 5), (1, 5, 10), (2, 5, 20), (5, 5, 160), (6, 5, 300), (100, 5, 300), (3, 600, 600), (1, 0.5, 1.0),
])
def test_backoff(failures, poll, wait):
    assert backoff_seconds(failures, poll) == wait


SECRET = b"It's a Secret to Everybody"
BODY = b"Hello, World!"
# GitHub's documented example (docs: "Validating webhook deliveries", test values).
GITHUB_EXAMPLE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def mac(body: bytes = BODY, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("forge, headers, ok", [
    (Forge.GITHUB, {"x-hub-signature-256": GITHUB_EXAMPLE}, True),
    (Forge.GITHUB, {"x-hub-signature-256": GITHUB_EXAMPLE.upper().replace("SHA256=", "sha256=")}, True),
    (Forge.GITHUB, {"x-hub-signature-256": mac()}, False),                  # no sha256= prefix
    (Forge.GITHUB, {"x-hub-signature": "sha1=" + mac()}, False),            # the old SHA-1 header only
    (Forge.GITHUB, {}, False),
    (Forge.GITHUB, {"x-hub-signature-256": "sha256=" + mac(b"Hello, World?")}, False),
    (Forge.GITLAB, {"x-gitlab-token": SECRET.decode()}, True),
    (Forge.GITLAB, {"x-gitlab-token": SECRET.decode() + "x"}, False),
    (Forge.GITLAB, {"x-gitlab-token": ""}, False),
    (Forge.GITEA, {"x-gitea-signature": mac()}, True),
    (Forge.GITEA, {"x-forgejo-signature": mac()}, True),
    (Forge.GITEA, {"x-gitea-signature": "sha256=" + mac()}, False),
    (Forge.GITEA, {"x-gitea-signature": mac(secret=b"other")}, False),
    (Forge.GENERIC, {"x-argus-signature": "sha256=" + mac()}, True),
    (Forge.GENERIC, {"x-argus-signature": "sha256=" + mac()[:-1]}, False),
    (Forge.GENERIC, {"x-hub-signature-256": "sha256=" + mac()}, False),     # another forge's header
])
def test_signatures(forge, headers, ok):
    assert signature_valid(forge, headers, BODY, SECRET) is ok


def test_an_empty_secret_accepts_nothing():
    assert not signature_valid(Forge.GITLAB, {"x-gitlab-token": ""}, BODY, b"")
    assert not signature_valid(Forge.GENERIC, {"x-argus-signature": "sha256=" + mac(secret=b"")}, BODY, b"")


def test_delivery_ids_and_secret_files():
    assert delivery_id(Forge.GITHUB, {"x-github-delivery": " 72d3162e "}) == "72d3162e"
    assert delivery_id(Forge.GITLAB, {"idempotency-key": "k1"}) == "k1"
    assert delivery_id(Forge.GITEA, {}) is None
    assert read_secret(b"s3cret\n") == b"s3cret" and read_secret(b"s3cret\r\n") == b"s3cret"


from daemon.core.forge import API_SIGNER, allowed_signers, signature_problem, ssh_public_key_problem  # noqa: E402

ALLOWED = ("alice@example.com",)


@pytest.mark.parametrize("status, signer, email, why", [
    ("G", "alice", "alice@example.com", None),
    ("G", "alice", "someone@else", None),          # the author-email rule is core.ownership's own
    ("G", API_SIGNER, "alice@example.com", None),  # an API write argusd authenticated as alice
    ("G", API_SIGNER, "bob@example.com", "is signed by argusd's API key but not as one of this user's git identities"),
    ("G", "bob", "alice@example.com", "is signed by bob's key"),
    ("N", "", "alice@example.com", "is not signed"),
    ("U", "", "alice@example.com", "is signed by a key no user in the config has"),
    ("B", "alice", "alice@example.com", "has a bad signature (the commit was changed after it was signed)"),
    ("E", "", "alice@example.com", "is signed by a key no user in the config has (or one git cannot check)"),
    ("R", "alice", "alice@example.com", "is signed by a revoked key"),
    ("?", "", "alice@example.com", "has a signature git cannot verify"),
])
def test_signature_verdicts(status, signer, email, why):
    got = signature_problem("alice", status, signer, "0123456789abcdef", "A <a@x>", email, ALLOWED)
    if why is None:
        assert got is None
    else:
        assert got.startswith(f"A <a@x> (commit 0123456789ab) {why}; models.d/alice/ takes only commits signed by "
                              "alice's keys")


def test_allowed_signers_names_each_key_by_its_user():
    text = allowed_signers({"alice": ["ssh-ed25519 AAAAalice alice@laptop", "ssh-rsa AAAAold"], "bob": []},
                           api_key="ssh-ed25519 AAAAargusd argusd@host")
    assert text == ('alice namespaces="git" ssh-ed25519 AAAAalice\nalice namespaces="git" ssh-rsa AAAAold\n'
                    '@argusd namespaces="git" ssh-ed25519 AAAAargusd\n')


@pytest.mark.parametrize("key, ok", [
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop", True),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", True),
    ("ecdsa-sha2-nistp256 AAAAE2VjZHNh", True),
    ("-----BEGIN PGP PUBLIC KEY BLOCK-----", False),
    ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n", True),
    ("ssh-ed25519", False),
    ("ssh-ed25519 AAAA\nssh-rsa BBBB", False),
    ('cert-authority ssh-ed25519 AAAA', False),
])
def test_ssh_public_keys(key, ok):
    assert (ssh_public_key_problem(key) is None) is ok


from daemon.gitrepo import SignatureCheck  # noqa: E402

PGP_ALICE = "A" * 40


@pytest.mark.parametrize("principal, primary, key, user", [
    ("alice", "", "SHA256:abc", "alice"),            # SSH: the allowed signers' principal
    ("bob", PGP_ALICE.lower(), PGP_ALICE, "alice"),  # OpenPGP: the primary fingerprint's user, never the UID
    ("bob", "B" * 40, "B" * 40, ""),                 # OpenPGP key of no user whose UID says "bob": no one
    ("bob", "", "", ""),                             # no key at all
])
def test_an_openpgp_signer_is_never_its_user_id(principal, primary, key, user):
    check = SignatureCheck("signers", "gnupg", ((PGP_ALICE, "alice"),))
    assert check.signer("G", principal, primary, key) == ("G", user)


from daemon.core.forge import MIN_FETCH_INTERVAL_S, fetch_wait_seconds  # noqa: E402


@pytest.mark.parametrize("now, last, wait", [
    (100.0, None, 0.0),                               # never fetched: now
    (100.0, 100.0, MIN_FETCH_INTERVAL_S),             # a replayed delivery right after a fetch waits
    (100.0, 99.5, MIN_FETCH_INTERVAL_S - 0.5),
    (100.0, 100.0 - MIN_FETCH_INTERVAL_S, 0.0),       # long enough ago: now
    (100.0, 50.0, 0.0),
])
def test_woken_fetches_are_spaced(now, last, wait):
    assert fetch_wait_seconds(now, last) == pytest.approx(wait)


from daemon.core.forge import cleartext_token_problem  # noqa: E402


@pytest.mark.parametrize("url, refused", [
    ("https://gitlab.example.com/t/g.git", False),
    ("http://127.0.0.1:8080/g.git", False),
    ("http://localhost/g.git", False),
    ("http://[::1]:80/g.git", False),
    ("http://gitlab.example.com/t/g.git", True),
    ("http://10.0.0.5/g.git", True),
    ("http://127.example.com/g.git", True),
])
def test_a_token_never_crosses_the_network_in_cleartext(url, refused):
    assert (cleartext_token_problem(url) is not None) is refused


def test_doctor_warns_of_secret_files_others_can_read(tmp_path):
    from argusctl.ops.doctor import WARN, check_secret_modes
    from daemon.config import load_config

    for name, mode in (("token", 0o644), ("hook", 0o600)):
        (tmp_path / name).write_text("x\n")
        (tmp_path / name).chmod(mode)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"state:\n  db: {tmp_path}/argus.db\ngitops:\n  repo: https://h/r.git\n  credentials:\n"
                   f"    token_file: {tmp_path}/token\n  webhooks:\n    github:\n      secret_file: {tmp_path}/hook\n")
    checks = check_secret_modes(load_config(cfg, env={}))
    assert [(c.status, c.detail) for c in checks] == [
        (WARN, f"gitops.credentials.token_file: {tmp_path}/token is readable by its group or others (mode 644)")]


from daemon.core.forge import SignatureStatus  # noqa: E402


def test_gits_signature_letters_are_an_enum():
    check = SignatureCheck("signers")
    assert check.signer("G", "alice", "", "SHA256:x") == (SignatureStatus.GOOD, "alice")
    assert check.signer("G", "alice", "", "SHA256:x")[0] is SignatureStatus.GOOD
    assert SignatureStatus.of("Z") is SignatureStatus.OTHER  # a letter a newer git may add: never proof
    assert signature_problem("alice", "Z", "alice", "0123456789abcdef", "A <a@x>", "a@x", ("a@x",)) is not None
