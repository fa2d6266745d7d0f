"""Run Python code in the serving venv (.venv-serve) as a fresh process, fast.

`python -c CODE` in the serving venv spends most of a short check importing Ray Serve LLM and
vLLM (~20 s of CPU each on 2 cores). ServingForks starts one serving-venv process that imports
those once and forks a child per CODE: each child starts from the same state a new process has
after those imports (its own imports of argus, environment, monkeypatches, logging set-up, Ray
connection), runs CODE as `__main__`, and exits; its file descriptors 1 and 2 are what
`run` returns as stdout and stderr, and its exit status (1 with the traceback on stderr for an
exception, as `python -c` does) as returncode. Only what is imported before the fork is shared,
so argus itself is never imported there (a check may import it under changed conditions)."""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

SERVER = r"""
import importlib, json, os, signal, sys, tempfile, threading, time, traceback
preload, sys.argv = sys.argv[1:], ["-c"]  # each child's argv is that of `python -c CODE`
for name in preload:
    importlib.import_module(name)  # the slow imports, once
assert threading.active_count() == 1, threading.enumerate()  # forking a threaded process could deadlock
answers = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    request = json.loads(line)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        code = 0
        try:
            exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__"})
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    deadline = time.monotonic() + request["timeout"]
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    timed_out = done[0] == 0
    if timed_out:
        os.kill(pid, signal.SIGKILL)
        done = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(done[1]), "timed_out": timed_out,
                              "stdout": out.read().decode(errors="replace"),
                              "stderr": err.read().decode(errors="replace")}) + "\n")
    answers.flush()
"""


class ServingForks:
    """One serving-venv process that has imported `preload` (module names); `run` forks it."""

    def __init__(self, python: Path, cwd: Path, env: dict[str, str], preload: tuple[str, ...]):
        self.python, self.cwd, self.env, self.preload = python, cwd, env, preload
        self.server: subprocess.Popen | None = None

    def run(self, code: str, timeout: float = 420) -> subprocess.CompletedProcess:
        if self.server is None or self.server.poll() is not None:
            self.server = subprocess.Popen([str(self.python), "-c", SERVER, *self.preload], cwd=self.cwd,
                                           env=self.env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        code = textwrap.dedent(code)
        self.server.stdin.write(json.dumps({"code": code, "timeout": timeout}) + "\n")
        self.server.stdin.flush()
        line = self.server.stdout.readline()
        assert line, f"the serving venv's python exited ({self.server.poll()}) before answering; its stderr is above"
        answer = json.loads(line)
        args = [str(self.python), "-c", code]
        if answer["timed_out"]:
            raise subprocess.TimeoutExpired(args, timeout, answer["stdout"], answer["stderr"])
        return subprocess.CompletedProcess(args, answer["returncode"], answer["stdout"], answer["stderr"])

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.stdin.close()
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None
