"""argusd's /metrics, scraped from a real argusd process: what it recorded, how reconcile went,
whether Serve answers, models by state and rejected specs by kind, in Prometheus's format."""
import socket
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from dashboard_stub import DashboardStub
from helpers import GitOps, spec, write_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[tuple, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_for(port: int, predicate, what: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        try:
            samples = scrape(port)
            if predicate(samples):
                return samples
        except OSError:
            samples = None
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {samples}"
        time.sleep(0.2)


def test_metrics_say_what_argusd_did(tmp_path):
    gitops = GitOps(tmp_path / "repo")
    gitops.write("models.d/alice/a.yaml", spec("a"))                  # its folder is missing: FAILED
    gitops.write("models.d/alice/bad.yaml", "model_id: Bad Name\n")   # rejected: spec
    gitops.commit("start")
    gitops.push()
    port = free_port()
    with DashboardStub(0.0) as dashboard:
        config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db",
                              repo=gitops.bare, poll_seconds=1, dashboard_url=dashboard.url)
        env = {"ARGUS_METRICS_LISTEN": f"127.0.0.1:{port}", "PATH": "/usr/bin:/bin"}
        daemon = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--config", str(config)],
                                  env=env, stderr=subprocess.DEVNULL)
        try:
            s = wait_for(port, lambda s: s.get(("argus_models", (("state", "FAILED"),))) == 1, "a FAILED model")
            assert s[("argus_commits_recorded_total", ())] == 1
            assert s[("argus_rejected_specs", (("kind", "spec"),))] == 1
            assert s[("argus_serve_reachable", ())] == 1
            (wanted,) = [v for (name, labels), v in s.items() if name == "argus_model_wanted_generation"]
            assert wanted == 1   # a's generation 1; it never served, so no serving generation
            assert not [k for k in s if k[0] == "argus_model_serving_generation"]
            assert s[("argus_reconcile_passes_total", (("outcome", "applied"),))] >= 1
            assert s[("argus_sync_passes_total", (("outcome", "synced"),))] == 1
            assert s[("argus_sync_duration_seconds_count", ())] >= 1
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    # Serve gone: reachability drops to 0 (nothing listens on the stub's port any more).
    daemon = subprocess.Popen([sys.executable, "-m", "daemon.argusd", "--config", str(config)], env=env,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(port, lambda s: s.get(("argus_serve_reachable", ())) == 0
                 and s.get(("argus_reconcile_passes_total", (("outcome", "error"),)), 0) >= 1, "Serve unreachable")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def test_the_shipped_dashboard_graphs_only_metrics_argusd_exports(tmp_path):
    """deploy/grafana-argus.json: every argus_* series it queries is one argusd serves."""
    import json
    import re
    from pathlib import Path

    from prometheus_client import generate_latest

    from daemon.metrics import Metrics

    metrics = Metrics(str(tmp_path / "none.db"))
    metrics.synced("synced", 1, 0.01)
    metrics.reconciled("applied", 0.1, True)
    exported = set(re.findall(r"^(argus_\w+)", generate_latest(metrics.registry).decode(), re.M))
    exported |= {"argus_models", "argus_rejected_specs", "argus_model_serving_generation",
                 "argus_model_wanted_generation"}  # read from the store at scrape time
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana-argus.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel.get("targets", [])
               for name in re.findall(r"argus_\w+", target["expr"])}
    assert queried and queried <= exported, queried - exported
