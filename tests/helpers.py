"""Shared test helpers (importable: pytest puts tests/ on sys.path)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_argusctl(*args: str, cwd: Path | str | None = None, env: dict | None = None,
                 input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "120")
    return subprocess.run([sys.executable, "-m", "argusctl", *args], cwd=cwd, env=full_env, input=input,
                          capture_output=True, text=True, timeout=timeout)


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
                 extra: str = "") -> Path:
    """A local-profile config pointing at test directories."""
    Path(path).write_text(
        "profile: test\n"
        "serving:\n  llm:\n    accelerator_type: cpu\n  serve:\n    http_host: 127.0.0.1\n"
        f"storage:\n  root: {root}\n"
        "limits:\n  max_replicas: 4\n  max_gpus_per_replica: 2\n"
        f"state:\n  db: {db}\n"
        f"gitops:\n  repo: {repo}\n  branch: main\n  poll_seconds: {poll_seconds}\n" + extra)
    return Path(path)
