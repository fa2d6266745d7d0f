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
