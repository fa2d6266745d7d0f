"""The README's first loop on this machine: push a spec -> a chat answer on :8000 -> delete -> gone. The run
is the README's GPU-cluster command as written, on CPU with the local profile so it cannot rot:
started from another directory with a relative ARGUS_CONFIG (resolved before the script's own
cd) and E2E_GPUS passed through to the pushed spec. It ends where it began (no spec, no model),
so the next run needs no cleanup.

One run, not two in a row: a second run was a second cold start (~2.5 min in CI) that proved
only this end state; a model deleted and pushed again keeping its ids is
tests/integration/test_sync.py::test_a_rebuild_that_replays_a_delete_and_recreate_keeps_the_last_ids."""
import json
import subprocess

import pytest

from helpers import run_argusctl

pytestmark = pytest.mark.e2e


def test_run_all_script_serves_and_leaves_nothing_behind(e2e_home, repo_root):
    home, env = e2e_home
    run_env = {**env, "ARGUS_CONFIG": "../configs/local.yaml", "E2E_GPUS": "1", "E2E_MODEL": "run-all"}
    result = subprocess.run([str(repo_root / "scripts" / "run_all_v38_serving.sh")], cwd=repo_root / "docs",
                            env=run_env, capture_output=True, text=True, timeout=1800)
    print(result.stdout[-4000:], result.stderr[-4000:])
    assert result.returncode == 0, "run_all failed"
    lines = result.stdout.splitlines()
    assert lines[-1].endswith("PASSED"), lines[-5:]
    assert any("chat answer in" in line for line in lines)
    assert any("is gone from /v1/models" in line for line in lines)
    gitops = str(home / "gitops.git")
    log = subprocess.run(["git", "-C", gitops, "log", "-p", "-2", "--format=%s"], capture_output=True, text=True).stdout
    assert "+gpus_per_replica: 1" in log and "run-all" in log  # E2E_GPUS went into its spec
    # Where a second run starts from: no e2e spec in the repo, no live e2e model.
    tree = subprocess.run(["git", "-C", gitops, "ls-tree", "-r", "--name-only", "main"], capture_output=True,
                          text=True).stdout.splitlines()
    assert not [path for path in tree if path.startswith("models.d/e2e/")], tree
    listed = run_argusctl("status", "-o", "json", "--user", "e2e", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout)["models"] == [], listed.stdout + listed.stderr
