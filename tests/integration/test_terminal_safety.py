"""What users write (author names, file names, specs) reaches an operator's terminal escaped."""
import json

from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, write_config, spec_policy

TITLE = "\x1b]0;owned\x07"   # sets the terminal's title
CLEAR = "\x1b[2J"            # clears the screen


def test_status_and_logs_escape_control_characters(tmp_path):
    g = GitOps(tmp_path / "g")
    g.write("models.d/alice/a.yaml", spec("a"))
    g.commit("a", author=f"Eve{TITLE}")
    g.write(f"models.d/alice/x{CLEAR}.yaml", "model_id: [\n")
    g.commit("broken", author=f"Eve{CLEAR}")
    g.push()
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=g.bare)
    Syncer(Store.open(tmp_path / "s.db"), GitRepo(g.bare), "main", spec_policy(root=str(tmp_path / "private"))).sync_once()
    env = {"ARGUS_CONFIG": str(config)}
    for args in (["status"], ["status", "a"], ["logs", "a"]):
        result = run_argusctl(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, args
    detail = run_argusctl("status", "a", env=env).stdout
    assert "Eve\\x1b]0;owned" in detail
    listing = run_argusctl("status", env=env).stdout
    assert "models.d/alice/x\\x1b[2J.yaml" in listing
    # JSON keeps the exact text (escaped the JSON way).
    data = json.loads(run_argusctl("status", "a", "-o", "json", env=env).stdout)
    assert data["model"]["commit_author"].startswith("Eve\x1b]0;owned")
