"""argusctl diff: what argusd would change if the clone's head were synced."""
import json

from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, write_config, spec_policy


def test_diff_shows_each_kind_of_change_then_nothing(tmp_path):
    gitops = GitOps(tmp_path / "g")
    gitops.write("models.d/alice/keep.yaml", spec("keep"))
    gitops.write("models.d/alice/grow.yaml", spec("grow"))
    gitops.write("models.d/alice/gone.yaml", spec("gone"))
    gitops.commit("start")
    gitops.push()
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=gitops.bare)
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(gitops.bare), "main",
                    spec_policy(root=str(tmp_path / "private"), max_replicas=4, max_gpus_per_replica=2))
    syncer.sync_once()
    ctl = lambda *a: run_argusctl("--config", str(config), "diff", "--workdir", str(gitops.work), *a)  # noqa: E731
    same = ctl()
    assert same.returncode == 0 and same.stdout.startswith("no differences")

    gitops.write("models.d/alice/new.yaml", spec("new"))
    gitops.write("models.d/alice/grow.yaml", spec("grow", replicas=3))
    gitops.rm("models.d/alice/gone.yaml")
    gitops.write("models.d/alice/keep.yaml", "model_id: keep\nmodel_source: /etc\n")
    gitops.commit("local, not pushed")
    result = ctl()
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["+", "alice/new", "new"] for line in lines)
    assert any(line.split()[:3] == ["~", "alice/grow", "scaled"] and "num_replicas 1 -> 3" in line for line in lines)
    assert any(line.split()[:3] == ["-", "alice/gone", "deleted"] for line in lines)
    rejected = [line for line in lines if line.startswith("! models.d/alice/keep.yaml")]
    assert rejected and "outside the allowed roots" in rejected[0] and "keeps its last good spec" in rejected[0]
    as_json = json.loads(ctl("-o", "json").stdout)
    assert sorted(c["what"] for c in as_json["changes"]) == ["deleted", "new", "rejected", "scaled"]

    gitops.push()
    syncer.sync_once()
    assert ctl().returncode == 0
    assert "is not a commit" in ctl("--ref", "nope").stderr
