"""Webhook receivers on argusd's API listener, against a real argusd (--sync-only) following a
repo on a real smart-HTTP forge (git-http-backend behind lighttpd) with a 60 s poll: only a
delivery can make a push recorded within seconds. Deliveries in each forge's documented
format (headers and push payloads as GitHub, GitLab, Gitea document them)."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.remote import read_fetch_state
from daemon.store import Store
from forge_servers import HttpGitServer, bare_repo, missing_servers
from helpers import GitOps, Http, free_port, spec, write_config

SECRETS = {"github": "gh-secret-1", "gitlab": "gl-secret-2", "gitea": "gt-secret-3", "generic": "ge-secret-4"}


class Forge:
    def __init__(self, tmp: Path):
        missing = missing_servers()
        assert missing is None, missing
        self.http = HttpGitServer(tmp / "http").start()
        self.repo = bare_repo(self.http.root / "gitops.git")
        self.url = self.http.url("gitops.git")
        (tmp / "token").write_text(self.http.token + "\n")
        hooks = ""
        for name, secret in SECRETS.items():
            (tmp / f"{name}-secret").write_text(secret + "\n")
            hooks += f"    {name}:\n      secret_file: {tmp / f'{name}-secret'}\n"
        self.port = free_port()
        self.config = write_config(
            tmp / "argus.yaml", root=tmp / "private", db=tmp / "state" / "argus.db", repo=self.url, poll_seconds=60,
            extra=(f"  credentials:\n    token_file: {tmp / 'token'}\n    username: {self.http.user}\n"
                   f"  webhooks:\n{hooks}api:\n  listen: 127.0.0.1:{self.port}\n"))
        self.cfg = load_config(self.config)
        self.gitops = GitOps(tmp / "g")
        self.gitops.git("remote", "set-url", "--push", "origin", str(self.gitops.bare))
        self.log_path = tmp / "argusd.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--sync-only", "--config",
                                      str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        self.api = Http(f"http://127.0.0.1:{self.port}")
        try:
            self.wait(lambda: read_fetch_state(self.cfg) is not None, "the first fetch")
            self.wait(lambda: self._answers(), "the API")
        except BaseException:  # no server left running after a failed start
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            return self.api("POST", "/api/v2/webhooks/nope")[0] == 404
        except OSError:
            return False

    def wait(self, check, what: str, timeout: float = 60) -> float:
        started = time.monotonic()
        while not check():
            assert self.proc.poll() is None, self.log_path.read_text()
            assert time.monotonic() - started < timeout, f"timed out waiting for {what}: {self.log_path.read_text()}"
            time.sleep(0.02)
        return time.monotonic() - started

    def push(self, name: str) -> str:
        """A commit pushed to the forge (through the local bare repo, which forwards it)."""
        self.gitops.write(f"models.d/alice/{name}.yaml", spec(name))
        sha = self.gitops.commit(name)
        self.gitops.push()
        done = subprocess.run(["git", "push", "-q", self.url.replace("http://", f"http://{self.http.user}:"
                                                                      f"{self.http.token}@"), "main:main"],
                              cwd=self.gitops.bare, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return sha

    def recorded(self) -> str | None:
        store = Store.open_readonly(self.cfg.state.db)
        try:
            cursor = store.cursor()
            return cursor[1] if cursor else None
        finally:
            store.close()

    def attempts(self) -> str | None:
        return read_fetch_state(self.cfg).last_attempt

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()
        self.http.stop()


@pytest.fixture(scope="module")
def forge(tmp_path_factory):
    f = Forge(tmp_path_factory.mktemp("hooks"))
    yield f
    f.stop()


def mac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery(kind: str, sha: str, secret: str | None = None, delivery_id: str | None = None) -> tuple[bytes, dict]:
    """A push delivery as each forge documents it (body and headers)."""
    secret = SECRETS[kind] if secret is None else secret
    did = delivery_id or str(uuid.uuid4())
    if kind == "github":
        body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
                           "repository": {"full_name": "platform/gitops"}}).encode()
        return body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": did,
                      "X-Hub-Signature-256": "sha256=" + mac(secret, body), "User-Agent": "GitHub-Hookshot/1"}
    if kind == "gitlab":
        body = json.dumps({"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": sha}).encode()
        return body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret, "X-Gitlab-Event-UUID": did}
    if kind == "gitea":
        body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
        return body, {"X-Gitea-Event": "push", "X-Gitea-Delivery": did, "X-Gitea-Signature": mac(secret, body)}
    body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    return body, {"X-Argus-Delivery": did, "X-Argus-Signature": "sha256=" + mac(secret, body)}


def send(forge: Forge, kind: str, body: bytes, headers: dict):
    return forge.api("POST", f"/api/v2/webhooks/{kind}", body=body,
                     headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea", "generic"])
def test_a_signed_delivery_makes_argusd_fetch_and_record_the_push_now(forge, kind):
    sha = forge.push(f"m-{kind}")
    time.sleep(0.3)
    assert forge.recorded() != sha                  # a 60 s poll: not recorded on its own
    body, headers = delivery(kind, sha)
    status, out, _ = send(forge, kind, body, headers)
    assert status == 202, out
    took = forge.wait(lambda: forge.recorded() == sha, f"{sha} recorded after the {kind} delivery", timeout=30)
    assert took < 30                                # far below the 60 s poll (~0.3 s on an idle machine)


@pytest.mark.parametrize("kind, mangle", [
    ("github", "wrong"), ("github", "missing"), ("gitlab", "wrong"), ("gitlab", "missing"),
    ("gitea", "wrong"), ("gitea", "missing"), ("generic", "wrong"), ("generic", "body"),
])
def test_a_wrong_or_missing_signature_is_401_and_triggers_nothing(forge, kind, mangle):
    sha = forge.push(f"x-{kind}-{mangle}")
    before = forge.attempts()
    body, headers = delivery(kind, sha, secret="not-the-secret" if mangle == "wrong" else None)
    if mangle == "missing":
        headers = {k: v for k, v in headers.items() if "Signature" not in k and "Token" not in k}
    if mangle == "body":
        body = body.replace(b"main", b"evil")       # signed, then changed on the way
    status, out, _ = send(forge, kind, body, headers)
    assert status == 401 and out["error"] == "unauthorized", out
    assert SECRETS[kind] not in json.dumps(out)
    time.sleep(1.0)
    assert forge.attempts() == before               # no fetch was made
    assert forge.recorded() != sha
    status, _, _ = send(forge, kind, *delivery(kind, sha))   # the real one still works
    assert status == 202
    forge.wait(lambda: forge.recorded() == sha, "the signed delivery's push", timeout=30)


def test_a_replayed_delivery_does_nothing(forge):
    sha = forge.push("replayed")
    body, headers = delivery("github", sha, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert send(forge, "github", body, headers)[0] == 202
    forge.wait(lambda: forge.recorded() == sha, "the push")
    before = forge.attempts()
    for _ in range(5):
        status, out, _ = send(forge, "github", body, headers)
        assert status == 200 and "received before" in out["message"]
    time.sleep(1.0)
    assert forge.attempts() == before


def test_unconfigured_or_unknown_receivers_and_huge_bodies_are_refused(forge, tmp_path):
    assert send(forge, "bitbucket", b"{}", {})[0] == 404
    status, out, _ = send(forge, "github", b"x" * (5 * 1024 * 1024 + 1), {"X-Hub-Signature-256": "sha256=00"})
    assert status == 413, out
    # Without Content-Length (chunked): read only up to the limit, then refused.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", forge.port, timeout=30)
    try:
        conn.request("POST", "/api/v2/webhooks/github", body=(b"x" * 1024 * 1024 for _ in range(64)),
                     headers={"X-Hub-Signature-256": "sha256=00"}, encode_chunked=True)
        answer = conn.getresponse()
        assert answer.status == 413, answer.read()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered 413 and closed before 64 MiB were sent: refused all the same
    finally:
        conn.close()
