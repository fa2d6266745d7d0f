"""Shared test helpers (importable: pytest puts tests/ on sys.path)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def run_argusctl(*args: str, cwd: Path | str | None = None, env: dict | None = None,
                 input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "120")
    return subprocess.run([sys.executable, "-m", "argusctl", *args], cwd=cwd, env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout)



def start_argusd(home: Path, env: dict) -> None:
    """The e2e suite's argusd on ARGUS_HOME=home (and its GitOps repo and Ray head, when a test
    before stopped them); scripts/argusd_up.sh and ray_up.sh reuse what runs."""
    repo = Path(__file__).resolve().parent.parent
    gitops = home / "gitops.git"
    if not gitops.exists():
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(gitops)], check=True)
    for step in (["scripts/ray_up.sh"], ["scripts/argusd_up.sh"]):
        subprocess.run(step, cwd=repo, env=env, check=True)

class GitOps:
    """A bare GitOps repo (what argusd watches) and a user's working clone, for real pushes."""

    def __init__(self, root: Path, branch: str = "main"):
        self.root = Path(root)
        self.bare = self.root / "gitops.git"
        self.work = self.root / "work"
        self.branch = branch
        self._tick = 0
        subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(self.bare)], check=True)
        subprocess.run(["git", "init", "-q", "-b", branch, str(self.work)], check=True)
        self.git("remote", "add", "origin", str(self.bare))

    def git(self, *args: str, env: dict | None = None) -> str:
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run(["git", *args], cwd=self.work, env=full_env, check=True,
                              capture_output=True, text=True).stdout

    def write(self, rel: str, text: str | bytes) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    def rm(self, rel: str) -> None:
        (self.work / rel).unlink()

    def commit(self, message: str, author: str = "Alice", email: str = "alice@example.com",
               when: str | None = None) -> str:
        """Commit everything; `when` (e.g. '2026-01-02T03:04:00Z') fixes the commit time."""
        self._tick += 1
        date = when or f"2026-01-01T00:{self._tick // 60:02d}:{self._tick % 60:02d}Z"
        env = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": author,
               "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, env=env)
        return self.git("rev-parse", "HEAD").strip()

    def push(self, force: bool = False) -> None:
        self.git("push", "-q", *(["--force"] if force else []), "origin", f"HEAD:{self.branch}")


SPEC = "model_id: {id}\nmodel_source: $HOME/common/hf/{src}\nnum_replicas: {replicas}\n"


def spec(model_id: str, replicas: int = 1, src: str = "m") -> str:
    return SPEC.format(id=model_id, replicas=replicas, src=src)


def write_config(path: Path, *, root: Path, db: Path, repo: Path, poll_seconds: float = 60,
                 extra: str = "", dashboard_url: str = "http://127.0.0.1:8265", lease_seconds: float = 0) -> Path:
    """A local-profile config pointing at test directories."""
    Path(path).write_text(
        "profile: test\n"
        "serving:\n  llm:\n    accelerator_type: cpu\n  serve:\n    http_host: 127.0.0.1\n"
        f"    dashboard_url: {dashboard_url}\n    lease_seconds: {lease_seconds}\n"
        f"storage:\n  root: {root}\n"
        "limits:\n  max_replicas: 4\n  max_gpus_per_replica: 2\n"
        f"state:\n  db: {db}\n"
        f"gitops:\n  repo: {repo}\n  branch: main\n  poll_seconds: {poll_seconds}\n" + extra)
    return Path(path)


BASE = "http://127.0.0.1:8000/v1"


class Prober(threading.Thread):
    """Sends one short chat request to a model every `period_s` (or right after the last one,
    when it took longer) and records the failures (`stream`: streamed, ok only when the stream
    ends with [DONE]). Paced, not back to back: on 2 cores a back-to-back stream kept a core busy
    and doubled the cold start of the model being changed beside it (CI's logs: a wake and a
    rollout candidate took ~220 s where a quiet start takes ~100 s)."""

    def __init__(self, model_id: str, stream: bool = False, period_s: float = 2.0):
        super().__init__(daemon=True)
        self.model_id = model_id
        self.stream_requests = stream
        self.period_s = period_s
        self.stop = threading.Event()
        self.results: list[tuple[float, float, bool]] = []  # (start, end, ok)
        self.errors: list[str] = []   # why requests failed, newest last

    def run(self) -> None:
        body = json.dumps({"model": self.model_id, "max_tokens": 4, "stream": self.stream_requests,
                           "messages": [{"role": "user", "content": "Hi"}]}).encode()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                request = urllib.request.Request(f"{BASE}/chat/completions", data=body,
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as response:
                    text = response.read()
                    ok = response.status == 200 and (text.rstrip().endswith(b"data: [DONE]") if self.stream_requests
                                                      else bool(json.loads(text)["choices"]))
                    if not ok:
                        self.errors.append(f"{response.status}: {text[-300:]!r}")
            except urllib.error.HTTPError as exc:
                ok = False
                self.errors.append(f"{exc.code}: {exc.read()[:300]!r}")
            except Exception as exc:
                ok = False
                self.errors.append(repr(exc)[:300])
            self.results.append((started, time.monotonic(), ok))
            self.stop.wait(max(0.2 if not ok else 0.0, started + self.period_s - time.monotonic()))

    def window(self, start: float, end: float) -> tuple[int, int, float]:
        """(requests, failed, longest stretch of failures in seconds) between two times."""
        inside = [r for r in self.results if r[0] >= start and r[1] <= end]
        failed, longest, stretch_start = 0, 0.0, None
        for begin, finish, ok in inside:
            if ok:
                if stretch_start is not None:
                    longest = max(longest, begin - stretch_start)
                stretch_start = None
            else:
                failed += 1
                stretch_start = begin if stretch_start is None else stretch_start
        if stretch_start is not None:
            longest = max(longest, end - stretch_start)
        return len(inside), failed, longest


def replicas_of(client, model_key: str) -> set[tuple[str, int]]:
    for app in (client.get_applications().get("applications") or {}).values():
        dep = (app.get("deployments") or {}).get(f"LLMServer:{model_key}")
        if dep:
            return {(r["replica_id"], r.get("pid")) for r in dep.get("replicas") or [] if r.get("state") == "RUNNING"}
    return set()


def deployment_names(client) -> set[str]:
    """Every deployment Serve runs, across applications."""
    return {name for app in (client.get_applications().get("applications") or {}).values()
            for name in app.get("deployments") or {}}


def llm_settings(**overrides):
    """LlmSettings projected from the config's own defaults (the dev profile's values), with
    `overrides`: tests name what they change, nothing is defaulted twice."""
    import dataclasses

    from daemon.config import Config
    from daemon.serving.llm_config import LlmSettings

    return dataclasses.replace(LlmSettings.from_config(Config()), **overrides)


def serve_settings(**overrides):
    """ServeSettings from the config's defaults, with `overrides`."""
    import dataclasses

    from daemon.config import Config
    from daemon.serving.plan import ServeSettings

    return dataclasses.replace(ServeSettings.from_config(Config()), **overrides)


def spec_policy(**overrides):
    """SpecPolicy projected from the config's own defaults (the dev profile), with `overrides`."""
    import dataclasses

    from daemon.config import Config
    from daemon.core.spec import SpecPolicy

    return dataclasses.replace(SpecPolicy.from_config(Config()), **overrides)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Http:
    """A tiny HTTP client for the API tests: no redirects followed, JSON decoded when it is JSON."""

    def __init__(self, base: str):
        self.base = base

    def __call__(self, method: str, path: str, *, token: str | None = None, body: bytes | str | dict | None = None,
                 ctype: str | None = None, headers: dict | None = None) -> tuple[int, object, dict]:
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        data = None
        if isinstance(body, dict):
            data, ctype = json.dumps(body).encode(), ctype or "application/json"
        elif body is not None:
            data = body.encode() if isinstance(body, str) else body
        if ctype:
            all_headers["Content-Type"] = ctype
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        out: object = raw.decode(errors="replace")
        if response.getheader("content-type", "").startswith("application/json"):
            out = json.loads(raw)
        return response.status, out, {k.lower(): v for k, v in response.getheaders()} | {
            "set-cookie-all": response.msg.get_all("set-cookie") or []}


class ApiDaemon:
    """argusd --sync-only with its API and UI on a free port, over a GitOps repo that
    `argusctl init` made (so the pre-receive hook guards it), and tokens made by the CLI.
    With `dashboard_url`: argusd talks to the Ray dashboard there (not --sync-only), every
    `poll_seconds`, and reads Ray's metrics for the traffic chart every `traffic_seconds`."""

    def __init__(self, tmp: Path, users: dict[str, str] | None = None, dashboard_url: str | None = None,
                 poll_seconds: float = 60, traffic_seconds: float = 30):
        self.tmp = Path(tmp)
        (self.tmp / "private" / "hf" / "m").mkdir(parents=True)
        (self.tmp / "private" / "hf" / "m" / "config.json").write_text("{}")
        users = users or {}
        extra = "".join(f"  {u}:\n    git_identities: [{e}]\n" for u, e in users.items())
        self.port = free_port()
        self.config = write_config(self.tmp / "argus.yaml", root=self.tmp / "private", db=self.tmp / "state" / "argus.db",
                                   repo=self.tmp / "gitops.git", poll_seconds=poll_seconds,
                                   extra=("users:\n" + extra if extra else "") + f"api:\n  listen: 127.0.0.1:{self.port}\n  traffic_seconds: {traffic_seconds}\n",
                                   **({"dashboard_url": dashboard_url} if dashboard_url else {}))
        self.env = {"ARGUS_CONFIG": str(self.config)}
        first = next(iter(users), "alice")
        result = run_argusctl("init", "--user", first, "--workdir", str(self.tmp / "work"), "--name", first,
                              "--email", users.get(first, f"{first}@argus.local"), env=self.env)
        assert result.returncode == 0, result.stderr
        self.log_path = self.tmp / "argusd.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon.argusd", *([] if dashboard_url else ["--sync-only"])],
                                     env={**os.environ, **self.env}, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_for_log("argusd started")
        self.http = Http(f"http://127.0.0.1:{self.port}")

    def wait_for_log(self, fragment: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while fragment not in self.log_path.read_text():
            assert self.proc.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.05)

    def token(self, user: str, *args: str) -> str:
        result = run_argusctl("token", "create", "--user", user, *args, env=self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def git_log(self, *args: str) -> list[str]:
        return subprocess.run(["git", "log", "--format=%an <%ae>|%s", *args], cwd=self.tmp / "gitops.git",
                              capture_output=True, text=True, check=True).stdout.splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.log.close()


def alive(pid: int | str) -> bool:
    """The process exists and is not a zombie waiting for a parent to reap it (nothing reaps
    orphans on this VM, and `kill -0` finds zombies)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def no_failed_requests(*model_ids: str):
    """While the block runs, each model answers plain and streaming requests (one Prober of
    each kind): none fails, none is a 404. Yields the time the block started."""
    probers = [Prober(model_id, stream) for model_id in model_ids for stream in (False, True)]
    for prober in probers:
        prober.start()
    time.sleep(3)
    started = time.monotonic()
    try:
        yield started
    finally:
        time.sleep(5)
        for prober in probers:
            prober.stop.set()
            prober.join(timeout=70)
    for prober in probers:
        requests, failed, longest = prober.window(started, time.monotonic())
        assert requests > 10, (prober.model_id, requests)
        assert failed == 0, (f"{failed} of {requests} {'streaming ' if prober.stream_requests else ''}requests to "
                             f"{prober.model_id} failed (longest outage {longest} s): {prober.errors[-3:]}")
