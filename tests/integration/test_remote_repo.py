"""A remote gitops.repo over real transports on 127.0.0.1: git's smart HTTP (git-http-backend
behind lighttpd, a token as the basic-auth password) and SSH (Debian's sshd on a spare port, a
throwaway key, a pinned host key). argusd's mirror must record exactly what a local bare repo
records; a failing or hanging forge must change nothing recorded and show in the fetch state;
no secret may reach an error, the fetch state or a process list."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from daemon.argusd import Daemon
from daemon.config import GitCredentials, load_config
from daemon.remote import configure_remote, read_fetch_state
from daemon.store import Store
from forge_servers import HttpGitServer, SshGitServer, bare_repo, both_servers
from helpers import GitOps, spec, write_config

USERS = ("users:\n  alice:\n    git_identities: [alice@example.com]\n"
         "  bob:\n    git_identities: [bob@example.com]\n")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with both_servers(tmp_path_factory.mktemp("forge")) as pair:
        yield pair


def http_remote(tmp_path, http: HttpGitServer, name: str = "g.git") -> tuple[str, str]:
    bare_repo(http.root / name)
    token = tmp_path / "token"
    token.write_text(http.token + "\n")
    return http.url(name), f"  credentials:\n    token_file: {token}\n    username: {http.user}\n"


def ssh_remote(tmp_path, ssh: SshGitServer, name: str = "g.git") -> tuple[str, str]:
    repo = bare_repo(tmp_path / name)
    return ssh.url(repo), (f"  credentials:\n    ssh_key: {ssh.client_key}\n"
                           f"    known_hosts: {ssh.known_hosts}\n")


def config_for(tmp_path, name: str, repo: str, gitops_extra: str = "", poll: float = 60, extra: str = USERS):
    # gitops_extra goes inside the gitops: section write_config ends with.
    return load_config(write_config(tmp_path / f"{name}.yaml", root=tmp_path / "private",
                                    db=tmp_path / name / "argus.db", repo=repo, poll_seconds=poll,
                                    extra=gitops_extra + extra))


def daemon_for(config) -> Daemon:
    os.makedirs(os.path.dirname(config.state.db), exist_ok=True)
    return Daemon(config, Store.open(config.state.db), None, watch=False)


def recorded(config) -> tuple[list, list]:
    """Every event and rejection argusd recorded, without the times it recorded them at."""
    store = Store.open_readonly(config.state.db)
    try:
        events = [(e.event_type, e.model_key, e.user_id, e.spec_path, e.payload) for e in store.events()]
        rejections = [(r.spec_path, r.kind, r.commit_sha, [p.message for p in r.problems]) for r in store.rejections()]
        return events, rejections
    finally:
        store.close()


def publish(gitops: GitOps, url: str, creds: GitCredentials, force: bool = False) -> None:
    """The work clone's branch to the local bare repo and to the forge: the same commits in both."""
    gitops.push(force=force)
    configure_remote(gitops.bare, url, creds)  # the bare repo pushes on to the forge with argus's credentials
    done = subprocess.run(["git", "push", "-q", *(["--force"] if force else []), "origin", "main:main"],
                          cwd=gitops.bare, capture_output=True, text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("transport", ["https", "ssh"])
def test_a_remote_repo_records_exactly_what_a_local_one_does(tmp_path, servers, transport):
    http, ssh = servers
    url, creds_yaml = http_remote(tmp_path, http) if transport == "https" else ssh_remote(tmp_path, ssh)
    remote_cfg = config_for(tmp_path, "remote", url, creds_yaml)
    gitops = GitOps(tmp_path / "g")
    local_cfg = config_for(tmp_path, "local", str(gitops.bare))
    local, remote = daemon_for(local_cfg), daemon_for(remote_cfg)
    creds = remote_cfg.gitops.credentials

    def step(force: bool = False) -> None:
        publish(gitops, url, creds, force)
        assert local.tick() and remote.tick()

    gitops.write("models.d/alice/a.yaml", spec("a"))
    first = gitops.commit("alice adds a")
    step()
    gitops.write("models.d/alice/a.yaml", spec("a", replicas=2))
    gitops.commit("bob scales alice's model", author="Bob", email="bob@example.com")   # an ownership refusal
    gitops.write("models.d/alice/b.yaml", "model_id: b\nmodel_source: $HOME/common/hf/m\nnum_replicas: 0\n")
    gitops.commit("alice adds a broken spec")                                             # a spec refusal
    step()
    assert recorded(remote_cfg) == recorded(local_cfg)
    assert {r[1] for r in recorded(remote_cfg)[1]} == {"ownership", "spec"}
    gitops.git("reset", "-q", "--hard", first)                                           # a force-push upstream
    gitops.write("models.d/bob/c.yaml", spec("c"))
    gitops.commit("bob adds c", author="Bob", email="bob@example.com")
    step(force=True)

    local_events, local_rejections = recorded(local_cfg)
    remote_events, remote_rejections = recorded(remote_cfg)
    assert remote_events == local_events
    assert remote_rejections == local_rejections
    kinds = [e[0] for e in remote_events]
    assert "CREATED" in kinds and len(remote_events) >= 3
    store = Store.open_readonly(remote_cfg.state.db)
    assert store.cursor()[1] == gitops.git("rev-parse", "HEAD").strip()
    assert {m.model_id_suffix for m in store.list_models()} >= {"a", "c"}
    store.close()
    state = read_fetch_state(remote_cfg)
    assert state.failures == 0 and state.error is None and state.last_success is not None


def test_a_failing_forge_keeps_what_is_recorded_backs_off_and_recovers(tmp_path, servers):
    http, _ = servers
    url, creds_yaml = http_remote(tmp_path, http, "down.git")
    cfg = config_for(tmp_path, "remote", url, creds_yaml + "  fetch_timeout_seconds: 10\n", poll=0.5)
    gitops = GitOps(tmp_path / "g")
    daemon = daemon_for(cfg)
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    publish(gitops, url, cfg.gitops.credentials)
    assert daemon.tick()
    before = recorded(cfg)

    # The forge's repo vanishes (a 404 from the server): a failed fetch, nothing recorded changes.
    moved = http.root / "down.git.away"
    os.rename(http.root / "down.git", moved)
    daemon.tick()
    state = read_fetch_state(cfg)
    assert state.failures == 1 and state.error and "down.git" in state.error
    assert state.next_attempt_in == 1.0                       # the poll interval doubled: backoff
    assert daemon.health()["fetch"]["failures"] == 1
    assert recorded(cfg) == before
    store = Store.open_readonly(cfg.state.db)
    assert [m.model_id_suffix for m in store.list_models()] == ["a"]
    store.close()
    assert daemon._next_fetch > time.monotonic()
    daemon.tick()                                             # inside the backoff: no new try
    assert read_fetch_state(cfg).failures == 1
    time.sleep(1.1)
    daemon.tick()
    assert read_fetch_state(cfg).failures == 2 and read_fetch_state(cfg).next_attempt_in == 2.0
    assert daemon.seconds_since_good_fetch() >= 1.0

    os.rename(moved, http.root / "down.git")
    gitops.write("models.d/alice/b.yaml", spec("b"))
    gitops.commit("b")
    publish(gitops, url, cfg.gitops.credentials)
    time.sleep(2.1)
    assert daemon.tick()
    state = read_fetch_state(cfg)
    assert state.failures == 0 and state.error is None
    assert daemon.seconds_since_good_fetch() < 5.0
    store = Store.open_readonly(cfg.state.db)
    assert sorted(m.model_id_suffix for m in store.list_models()) == ["a", "b"]
    store.close()


def test_a_hanging_forge_is_cut_off_and_no_secret_shows_anywhere(tmp_path, servers):
    http, _ = servers
    url, creds_yaml = http_remote(tmp_path, http, "hang.git")
    cfg = config_for(tmp_path, "remote", url, creds_yaml + "  fetch_timeout_seconds: 1.5\n")
    daemon = daemon_for(cfg)
    daemon.tick()  # a good (empty) fetch
    assert read_fetch_state(cfg).failures == 0

    http.pause()
    seen_in_processes = []
    try:
        import threading

        def scan() -> None:  # every process's argv and environment while git talks to the frozen server
            time.sleep(0.5)
            for pid in filter(str.isdigit, os.listdir("/proc")):
                for part in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{part}").read_bytes()
                    except OSError:
                        continue
                    if http.token.encode() in data:
                        seen_in_processes.append((pid, part))

        scanner = threading.Thread(target=scan)
        scanner.start()
        started = time.monotonic()
        daemon.tick()
        took = time.monotonic() - started
        scanner.join()
    finally:
        http.resume()
    assert took < 12, took                         # cut off at 1.5 s, not left hanging
    state = read_fetch_state(cfg)
    assert state.failures == 1 and "did not finish in 1.5 s" in state.error
    assert seen_in_processes == []

    # A wrong token: refused by the server, and the error holds neither token.
    (tmp_path / "token").write_text("wrong-token-value-123\n")
    daemon._next_fetch = 0.0
    daemon.tick()
    state = read_fetch_state(cfg)
    assert state.failures == 2 and state.error
    for text in (state.error, Path(cfg.state.db).parent.joinpath("gitops-fetch.json").read_text(),
                 str(daemon.health()), (Path(daemon.mirror.path) / "config").read_text()):
        assert http.token not in text and "wrong-token-value-123" not in text


def test_an_unpinned_ssh_host_key_is_refused(tmp_path, servers):
    """known_hosts pins the server: a host key it does not list is never accepted on first use."""
    _, ssh = servers
    url, _ = ssh_remote(tmp_path, ssh)
    other = tmp_path / "other_known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    other.write_text(f"[127.0.0.1]:{ssh.port} " + " ".join((tmp_path / "k.pub").read_text().split()[:2]) + "\n")
    cfg = config_for(tmp_path, "remote", url, f"  credentials:\n    ssh_key: {ssh.client_key}\n"
                                              f"    known_hosts: {other}\n")
    daemon = daemon_for(cfg)
    daemon.tick()
    state = read_fetch_state(cfg)
    assert state.failures == 1 and "Host key verification failed" in state.error


def metric(port: int, name: str) -> float | None:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")), None)


def wait_for(check, timeout: float = 60, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_argusd_shows_a_failing_fetch_in_status_doctor_and_metrics(tmp_path, servers):
    import sys

    from argusctl.ops.doctor import FAIL, OK, check_state
    from helpers import free_port, run_argusctl

    http, _ = servers
    url, creds_yaml = http_remote(tmp_path, http, "shown.git")
    path = write_config(tmp_path / "remote.yaml", root=tmp_path / "private", db=tmp_path / "state" / "argus.db",
                        repo=url, poll_seconds=0.3, extra=creds_yaml + "  fetch_timeout_seconds: 3\n")
    cfg = load_config(path)
    gitops = GitOps(tmp_path / "g")
    gitops.write("models.d/alice/a.yaml", spec("a"))
    gitops.commit("a")
    publish(gitops, url, cfg.gitops.credentials)
    port = free_port()
    log = open(tmp_path / "argusd.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--sync-only", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ARGUS_METRICS_LISTEN": f"127.0.0.1:{port}"})
    try:
        def listed() -> str:
            done = run_argusctl("--config", str(path), "status")
            return done.stdout if " a " in f" {done.stdout} " or "alice-" in done.stdout else ""
        wait_for(listed, what="model a recorded")
        out = run_argusctl("--config", str(path), "status").stdout
        assert f"GitOps repo: {url} (last fetched" in out
        assert [c.status for c in check_state(cfg) if c.name == "gitops fetch"] == [OK]
        age = wait_for(lambda: metric(port, "argus_gitops_fetch_age_seconds") is not None
                       and metric(port, "argus_gitops_fetch_age_seconds") + 1, what="the gauge")
        assert age - 1 < 5

        os.rename(http.root / "shown.git", http.root / "shown.git.away")
        wait_for(lambda: "fetch failing" in run_argusctl("--config", str(path), "status").stdout, what="status")
        done = run_argusctl("--config", str(path), "status")
        assert "alice-" in done.stdout                        # the recorded model is still listed, still served
        assert "models keep serving what was recorded" in done.stdout
        assert http.token not in done.stdout + done.stderr
        check = [c for c in check_state(cfg) if c.name == "gitops fetch"][0]
        assert check.status == FAIL and "shown.git" in check.detail
        wait_for(lambda: metric(port, "argus_gitops_fetch_age_seconds") > 1.5, what="the gauge to grow")
        as_json = run_argusctl("--config", str(path), "status", "-o", "json")
        import json
        assert json.loads(as_json.stdout)["gitops_fetch"]["ok"] is False
    finally:
        os.rename(http.root / "shown.git.away", http.root / "shown.git") if (http.root / "shown.git.away").exists() else None
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
    text = (tmp_path / "argusd.log").read_text()
    assert http.token not in text
    assert text.count("fetching") < 10, text   # a failing fetch is logged a few times, not on every try
