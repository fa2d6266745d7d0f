"""Seed M6.3 on this machine: push a spec -> a chat answer on :8000 -> delete -> gone."""
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def test_run_all_script_passes_twice_in_a_row(e2e_home, repo_root):
    home, env = e2e_home
    for run in (1, 2):
        result = subprocess.run(["scripts/run_all_v38_serving.sh"], cwd=repo_root, env=env,
                                capture_output=True, text=True, timeout=1800)
        print(result.stdout[-4000:], result.stderr[-4000:])
        assert result.returncode == 0, f"run {run} failed"
        lines = result.stdout.splitlines()
        assert lines[-1].endswith("PASSED"), lines[-5:]
        assert any("chat answer in" in line for line in lines)
        assert any("is gone from /v1/models" in line for line in lines)
