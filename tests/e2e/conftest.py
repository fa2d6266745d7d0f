"""End-to-end tests: a real Ray head, Serve on 127.0.0.1:8000 and a real vLLM model on CPU.

They run only with ARGUS_E2E=1 (scripts/test.sh --e2e, which CI runs): the first run
installs ~4 GB and each model takes about a minute and a half to start on 2 cores.
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ARGUS_E2E") == "1":
        return
    skip = pytest.mark.skip(reason="end-to-end: run with scripts/test.sh --e2e (ARGUS_E2E=1)")
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def e2e_home(tmp_path_factory):
    """A fresh ARGUS_HOME with the small model prepared, Ray up; argusd and Ray stopped after."""
    home = Path(os.environ.get("ARGUS_E2E_HOME") or tmp_path_factory.mktemp("argus-e2e-home"))
    env = dict(os.environ, ARGUS_HOME=str(home), ARGUS_CONFIG=str(REPO / "configs" / "local.yaml"))
    for step in (["scripts/setup_serving.sh"], [str(REPO / ".venv-serve" / "bin" / "python"),
                                                "scripts/prepare_model.py"], ["scripts/ray_up.sh"]):
        subprocess.run(step, cwd=REPO, env=env, check=True)
    yield home, env
    pidfile = home / "state" / "argusd.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    if os.environ.get("ARGUS_E2E_KEEP_RAY") != "1":
        subprocess.run(["scripts/ray_up.sh", "stop"], cwd=REPO, env=env, check=False)


@pytest.fixture
def argusd(e2e_home):
    """argusd running on the e2e home (started if the script did not leave one running)."""
    home, env = e2e_home
    pidfile = home / "state" / "argusd.pid"
    alive = False
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 0)
            alive = True
        except (ProcessLookupError, ValueError):
            pass
    gitops = home / "gitops.git"
    if not gitops.exists():
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(gitops)], check=True)
    if not alive:
        (home / "state").mkdir(parents=True, exist_ok=True)
        log = open(home / "state" / "argusd.log", "a")
        proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "argusd")], env=env, stdout=log, stderr=log)
        pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while not (home / "state" / "argus.db").exists():
        assert time.monotonic() < deadline, "argusd did not create its store"
        time.sleep(0.2)
    return home, env
