"""Writes go to the forge: `argusctl init/apply/scale/delete` and the API's writes push to a
remote gitops.repo over real transports on 127.0.0.1 (smart HTTP behind lighttpd, sshd), and
argusd records them from its mirror; a push that loses a race to the forge is redone on the
winner's head, as with a local repo."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon import gitwrite
from daemon.config import load_config
from forge_servers import bare_repo, both_servers
from helpers import Http, free_port, run_argusctl, spec, write_config

USERS = ("users:\n  alice:\n    git_identities: [alice@argus.local]\n"
         "  bob:\n    git_identities: [bob@argus.local]\n")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with both_servers(tmp_path_factory.mktemp("forge")) as pair:
        yield pair


def forge_config(tmp_path: Path, servers, transport: str, extra: str = "") -> tuple[Path, Path, str]:
    """(config, the forge's bare repo on disk, its URL)."""
    http, ssh = servers
    if transport == "https":
        repo = bare_repo(http.root / f"{tmp_path.name}.git")
        url = http.url(repo.name)
        (tmp_path / "token").write_text(http.token + "\n")
        creds = f"  credentials:\n    token_file: {tmp_path / 'token'}\n    username: {http.user}\n"
    else:
        repo = bare_repo(tmp_path / "forge.git")
        url = ssh.url(repo)
        creds = f"  credentials:\n    ssh_key: {ssh.client_key}\n    known_hosts: {ssh.known_hosts}\n"
    (tmp_path / "private" / "hf" / "m").mkdir(parents=True)
    (tmp_path / "private" / "hf" / "m" / "config.json").write_text("{}")
    config = write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                          repo=url, poll_seconds=60, extra=creds + USERS + extra)
    return config, repo, url


def users_git(tmp_path: Path, servers, transport: str) -> dict[str, str]:
    """The environment of a user whose own git reaches the forge (their credential helper or
    SSH key, in their global git config): what `argusctl init`'s clone pushes with."""
    http, ssh = servers
    gitconfig = tmp_path / "users-gitconfig"
    if transport == "https":
        gitconfig.write_text(f"[credential]\n\thelper = \"!f() {{ echo username={http.user}; "
                             f"echo password={http.token}; }}; f\"\n")
    else:
        gitconfig.write_text(f"[core]\n\tsshCommand = ssh -F /dev/null -i {ssh.client_key} -o IdentitiesOnly=yes "
                             f"-o UserKnownHostsFile={ssh.known_hosts} -o StrictHostKeyChecking=yes -o BatchMode=yes\n")
    return {"GIT_CONFIG_GLOBAL": str(gitconfig)}


def forge_log(repo: Path) -> list[str]:
    return subprocess.run(["git", "log", "--format=%ae|%s", "main"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.splitlines()


def argusctl(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = run_argusctl("--config", str(config), *args, env=env)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("transport", ["https", "ssh"])
def test_cli_and_api_writes_push_to_the_forge_and_are_recorded(tmp_path, servers, transport):
    config, forge, url = forge_config(tmp_path, servers, transport, extra=f"api:\n  listen: 127.0.0.1:{free_port()}\n")
    work = tmp_path / "work"
    init = ("init", "--user", "alice", "--workdir", str(work), "--name", "Alice", "--email", "alice@argus.local")
    # argusd's credentials are never the user's: without their own, the user's clone cannot fetch.
    refused = run_argusctl("--config", str(config), *init, env={"GIT_CONFIG_GLOBAL": "/dev/null"})
    assert refused.returncode != 0 and "cannot fetch the GitOps repo" in refused.stderr, refused.stderr
    subprocess.run(["rm", "-rf", str(work)], check=True)
    mine = users_git(tmp_path, servers, transport)
    argusctl(config, *init, env=mine)
    assert subprocess.run(["git", "remote", "get-url", "origin"], cwd=work, capture_output=True,
                          text=True).stdout.strip() == url
    clone_config = (work / ".git" / "config").read_text()
    assert str(tmp_path / "token") not in clone_config and "client_key" not in clone_config, clone_config
    assert forge_log(forge) == ["alice@argus.local|init: models.d/alice/"]
    (tmp_path / "a.yaml").write_text(spec("a"))
    argusctl(config, "apply", "-f", str(tmp_path / "a.yaml"), "--workdir", str(work), env=mine)
    argusctl(config, "scale", "a", "--replicas", "2", "--workdir", str(work), env=mine)
    assert [line.split("|")[0] for line in forge_log(forge)] == ["alice@argus.local"] * 3

    cfg = load_config(config)
    port = int(cfg.api.listen.rsplit(":", 1)[1])
    log = open(tmp_path / "argusd.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--sync-only", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "alice-" not in run_argusctl("--config", str(config), "status").stdout:
            assert time.monotonic() < deadline, (tmp_path / "argusd.log").read_text()
            time.sleep(0.2)
        token = argusctl(config, "token", "create", "--user", "bob").stdout.strip().splitlines()[-1]
        http = Http(f"http://127.0.0.1:{port}")
        started = time.monotonic()
        status, out, _ = http("POST", "/api/v2/serve/models", token=token, body="model_id: b\nmodel_source: "
                              "$HOME/common/hf/m\n", ctype="application/yaml")
        took = time.monotonic() - started
        assert status == 202 and out["state"] == "QUEUED", out  # recorded by argusd (queued: --sync-only)
        # Recorded long before the 60 s poll: the API's write woke argusd, which fetched at once.
        assert took < 40, took
        assert out["model_id"].startswith("bob-")
        assert forge_log(forge)[0].startswith("bob@argus.local|")
        key = out["model_key"]
        status, out, _ = http("DELETE", f"/api/v2/serve/models/{key}", token=token)
        assert status in (200, 202), out
        assert forge_log(forge)[0].startswith("bob@argus.local|")
        assert len(forge_log(forge)) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
    argusctl(config, "delete", "a", "--workdir", str(work), env=mine)
    assert len(forge_log(forge)) == 6 and forge_log(forge)[0].startswith("alice@argus.local|")


def test_a_push_that_loses_a_race_at_the_forge_is_redone_on_the_winners_head(tmp_path, servers, monkeypatch):
    config, forge, url = forge_config(tmp_path, servers, "https")
    env = users_git(tmp_path, servers, "https")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", env["GIT_CONFIG_GLOBAL"])  # the in-process push below too
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    argusctl(config, "init", "--user", "alice", "--workdir", str(mine), "--name", "Alice", "--email", "alice@argus.local")
    argusctl(config, "init", "--user", "bob", "--workdir", str(theirs), "--name", "Bob", "--email", "bob@argus.local")
    cfg = load_config(config)
    clone = gitwrite.Clone(mine, "alice", "main")
    attempts = []

    def edit():
        attempts.append(1)
        if len(attempts) == 1:  # bob's push lands at the forge between alice's fetch and her push
            (tmp_path / "b.yaml").write_text(spec("b"))
            argusctl(config, "apply", "-f", str(tmp_path / "b.yaml"), "--workdir", str(theirs))
        path = mine / "models.d" / "alice" / "a.yaml"
        path.write_text(spec("a"))
        return [path], "create a"

    with gitwrite.write_transaction(clone):
        commit = gitwrite.commit_and_push(clone, edit)
    assert len(attempts) == 2                                  # lost once, redone on bob's head
    log = forge_log(forge)
    assert log[0] == "alice@argus.local|create a" and log[1].startswith("bob@argus.local|")
    assert subprocess.run(["git", "rev-parse", "main"], cwd=forge, capture_output=True, text=True).stdout.strip() == commit
    assert cfg.gitops.location.remote


def test_no_hook_is_installed_on_a_forge(tmp_path):
    config = write_config(tmp_path / "argus.yaml", root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                          repo="https://gitlab.example.com/platform/gitops.git")
    done = run_argusctl("--config", str(config), "hook", "install")
    assert done.returncode != 0 and "where no argus hook runs: argusd alone enforces" in done.stderr
    assert "Traceback" not in done.stderr


def _clone_with_hook(tmp_path: Path, hook: str) -> gitwrite.Clone:
    bare = bare_repo(tmp_path / "repo.git")
    (bare / "hooks" / "pre-receive").write_text("#!/bin/sh\n" + hook)
    (bare / "hooks" / "pre-receive").chmod(0o755)
    work = tmp_path / "work"
    gitwrite.clone_repo(bare, work, "main")
    for key, value in (("user.name", "Alice"), ("user.email", "alice@argus.local")):
        subprocess.run(["git", "config", key, value], cwd=work, check=True)
    return gitwrite.Clone(work, "alice", "main")


def _edit(clone: gitwrite.Clone):
    def edit():
        path = clone.user_dir / "a.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec("a"))
        return [path], "create a"
    return edit


def test_a_push_never_prompts_and_its_error_shows_no_password(tmp_path):
    """The server's answer names a URL with a password: the error shows it redacted; git runs
    with GIT_TERMINAL_PROMPT=0 (the hook sees git's environment)."""
    clone = _clone_with_hook(tmp_path, 'echo "prompt=$GIT_TERMINAL_PROMPT https://bob:hunter22@forge.example/x.git" >&2\n'
                                       "exit 1\n")
    with pytest.raises(gitwrite.RefusedError) as refused:
        with gitwrite.write_transaction(clone, sync=False):
            gitwrite.commit_and_push(clone, _edit(clone))
    assert "prompt=0 https://***@forge.example/x.git" in str(refused.value)
    assert "hunter22" not in str(refused.value)


def test_a_push_that_hangs_is_stopped_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(gitwrite, "REMOTE_TIMEOUT_S", 2.0)
    clone = _clone_with_hook(tmp_path, f"echo $$ > {tmp_path}/hook.pid\nsleep 60\n")
    started = time.monotonic()
    with pytest.raises(gitwrite.GitError) as stopped:
        with gitwrite.write_transaction(clone, sync=False):
            gitwrite.commit_and_push(clone, _edit(clone))
    assert time.monotonic() - started < 20
    assert "git push did not finish in 2 s" in str(stopped.value)
    hook_pid = int((tmp_path / "hook.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{hook_pid}").exists() or "Z" in Path(f"/proc/{hook_pid}/stat").read_text().split()[2]


def test_the_token_is_offered_to_the_repos_url_only(tmp_path):
    """argusd's credential helper answers for gitops.repo's URL, not for any other host git is
    sent to (a redirect, a submodule), and redirects are not followed."""
    from daemon.config import GitCredentials
    from daemon.remote import configure_remote

    (tmp_path / "token").write_text("tok-abcdef\n")
    repo = bare_repo(tmp_path / "m.git")
    url = "https://forge.example/g/gitops.git"
    configure_remote(repo, url, GitCredentials(token_file=str(tmp_path / "token"), username="x-access-token"))

    def fill(host: str, path: str) -> str:
        return subprocess.run(["git", "credential", "fill"], cwd=repo, input=f"protocol=https\nhost={host}\npath={path}\n\n",
                              capture_output=True, text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}).stdout

    assert "password=tok-abcdef" in fill("forge.example", "g/gitops.git")
    assert "tok-abcdef" not in fill("evil.example", "g/gitops.git")
    assert subprocess.run(["git", "config", "http.followRedirects"], cwd=repo, capture_output=True,
                          text=True).stdout.strip() == "false"
