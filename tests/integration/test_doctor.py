"""argusctl doctor on this machine: every problem is named with its fix."""
import json
import socket
import sys

from helpers import run_argusctl, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_names_each_problem_and_its_fix(tmp_path):
    port = free_port()
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db",
                          repo=tmp_path / "none.git", dashboard_url=f"http://127.0.0.1:{port}")
    result = run_argusctl("--config", str(config), "doctor", "--python", sys.executable, "-o", "json")
    assert result.returncode == 1, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["config"]["status"] == "ok"
    assert checks["ray dashboard"]["status"] == "fail"
    assert "cannot reach the Ray dashboard" in checks["ray dashboard"]["detail"]
    assert "scripts/ray_up.sh" in checks["ray dashboard"]["fix"]
    assert checks["gitops repo"]["status"] == "fail" and "git init --bare" in checks["gitops repo"]["fix"]
    assert checks["storage root"]["status"] == "warn"
    # This venv has no Ray: the import check says so and how to get it.
    assert checks["ray.serve.llm"]["status"] == "fail"
    assert "setup_serving.sh" in checks["ray.serve.llm"]["fix"]
    table = run_argusctl("--config", str(config), "doctor", "--python", sys.executable)
    assert table.returncode == 1
    assert "-> start Ray: scripts/ray_up.sh" in table.stdout
