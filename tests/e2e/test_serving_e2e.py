"""Seed M6.3 on this machine: push a spec -> a chat answer on :8000 -> delete -> gone, twice
in a row. The second run is the README's GPU-cluster command as written, on CPU with the local
profile so it cannot rot: started from another directory with a relative ARGUS_CONFIG
(resolved before the script's own cd) and E2E_GPUS passed through to the pushed spec."""
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_run_all_script_passes_twice_in_a_row(e2e_home, repo_root):
    home, env = e2e_home
    runs = [(repo_root, env), (repo_root / "docs", {**env, "ARGUS_CONFIG": "../configs/local.yaml", "E2E_GPUS": "1",
                                                   "E2E_MODEL": "run-all"})]
    for run, (cwd, run_env) in enumerate(runs, start=1):
        result = subprocess.run([str(repo_root / "scripts" / "run_all_v38_serving.sh")], cwd=cwd, env=run_env,
                                capture_output=True, text=True, timeout=1800)
        print(result.stdout[-4000:], result.stderr[-4000:])
        assert result.returncode == 0, f"run {run} failed"
        lines = result.stdout.splitlines()
        assert lines[-1].endswith("PASSED"), lines[-5:]
        assert any("chat answer in" in line for line in lines)
        assert any("is gone from /v1/models" in line for line in lines)
    log = subprocess.run(["git", "-C", str(home / "gitops.git"), "log", "-p", "-2", "--format=%s"],
                         capture_output=True, text=True).stdout
    assert "+gpus_per_replica: 1" in log and "run-all" in log  # the second run's E2E_GPUS went into its spec
