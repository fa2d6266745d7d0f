"""End-to-end tests: a real Ray head, Serve on 127.0.0.1:8000 and a real vLLM model on CPU.

They run only with ARGUS_E2E=1 (scripts/test.sh --e2e, which CI runs): the first run
installs ~4 GB and each model takes about a minute and a half to start on 2 cores.
"""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ARGUS_E2E") == "1":
        # The quickstart ends with `quickstart.sh down` (argusd and the Ray head stopped): it runs
        # last, so that no test after it has to start a Ray head again (~30 s in CI).
        last = [item for item in items if item.path.name == "test_quickstart_e2e.py"]
        items[:] = [item for item in items if item not in last] + last
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
    # scripts/test.sh --e2e has done these already (each is then a quick no-op); they are
    # here for a plain `ARGUS_E2E=1 pytest tests/e2e`.
    for step in (["scripts/setup_serving.sh"], [str(REPO / ".venv-serve" / "bin" / "python"),
                                                "scripts/prepare_model.py"], ["scripts/ray_up.sh"]):
        done = subprocess.run(step, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"e2e set-up step {' '.join(step)} failed (exit {done.returncode}):\n"
                        f"{(done.stdout + done.stderr)[-4000:]}", pytrace=False)
    yield home, env
    subprocess.run(["scripts/argusd_up.sh", "stop"], cwd=REPO, env=env, check=False)
    if os.environ.get("ARGUS_E2E_KEEP_RAY") != "1":
        subprocess.run(["scripts/ray_up.sh", "stop"], cwd=REPO, env=env, check=False)
