"""The README's GPU-cluster command, run on CPU with the local profile so it cannot rot:
scripts/run_all_v38_serving.sh from another directory with a relative ARGUS_CONFIG (resolved
before the script's own cd), E2E_GPUS passed through to the spec, a chat answer over HTTP."""
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_run_all_from_another_directory_with_a_relative_config(argusd, repo_root):
    home, env = argusd
    run_env = {**env, "ARGUS_CONFIG": "../configs/local.yaml", "E2E_GPUS": "1", "E2E_MODEL": "run-all"}
    result = subprocess.run([str(repo_root / "scripts" / "run_all_v38_serving.sh")], cwd=repo_root / "docs",
                            env=run_env, capture_output=True, text=True, timeout=1500)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "chat answer in" in out and "is gone from /v1/models" in out and out.rstrip().endswith("PASSED")
    log = subprocess.run(["git", "-C", str(home / "gitops.git"), "log", "-p", "-2", "--format=%s"],
                         capture_output=True, text=True).stdout
    assert "+gpus_per_replica: 1" in log  # E2E_GPUS went into the pushed spec
