"""One rule, one verdict: the same bad trees through `argusctl lint`, the pre-receive hook and
argusd must give the same problems, word for word, at the same `path:line:col`."""
import re
import subprocess

import pytest

from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, write_config, spec_policy

TREES = {
    "wrong depth": {"models.d/stray.yaml": spec("s"), "models.d/alice/deeper/x.yaml": spec("x")},
    "bad user id": {"models.d/Alice/a.yaml": spec("a")},
    "invalid spec": {"models.d/alice/a.yaml": "model_id: a\nmodel_source: $HOME/common/hf/m\nnum_replicas: 0\n"},
    "unknown field": {"models.d/alice/a.yaml": spec("a") + "replicas: 2\n"},
    "duplicate ids": {"models.d/alice/a.yaml": spec("m"), "models.d/alice/b.yaml": "# c\n" + spec("m")},
    "path outside the roots": {"models.d/alice/a.yaml": "model_id: a\nmodel_source: /etc\n"},
    "too deep": {"models.d/alice/a.yaml": "model_id: a\nmodel_source: $HOME/m\nx: " + "[" * 40 + "]" * 40 + "\n"},
    "symlink": {"models.d/alice/a.yaml": spec("a"), "models.d/alice/b.yaml": ("link", "a.yaml")},
}
LINE = re.compile(r"^(models\.d/\S+?:\d+:\d+: .*?)(?: \(commit [0-9a-f]{12}\))?$")


def _write(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple):
            path.symlink_to(content[1])
        else:
            path.write_text(content)


@pytest.mark.parametrize("name", sorted(TREES))
def test_lint_hook_and_argusd_agree(tmp_path, name):
    files = TREES[name]
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "unused.db",
                          repo=tmp_path / "hooked" / "gitops.git")
    # lint, in a checkout of the tree
    _write(tmp_path / "tree", files)
    linted = run_argusctl("lint", "models.d", cwd=tmp_path / "tree", env={"ARGUS_CONFIG": str(config)})
    assert linted.returncode == 1
    by_lint = {line for line in linted.stdout.splitlines() if line.startswith("models.d/")}
    # the hook
    hooked = GitOps(tmp_path / "hooked")
    assert run_argusctl("--config", str(config), "hook", "install").returncode == 0
    _write(hooked.work, files)
    hooked.commit(name)
    pushed = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=hooked.work, capture_output=True, text=True)
    assert pushed.returncode != 0
    by_hook = {LINE.match(line[len("remote: argus: "):].rstrip()).group(1) for line in pushed.stderr.splitlines()
               if line.startswith("remote: argus: models.d/")}
    # argusd, from a repo without the hook
    open_repo = GitOps(tmp_path / "open")
    _write(open_repo.work, files)
    open_repo.commit(name)
    open_repo.push()
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(open_repo.bare), "main",
                    spec_policy(root=str(tmp_path / "private")))
    syncer.sync_once()
    by_argusd = {str(p) for r in syncer.store.rejections() for p in r.problems}
    assert by_lint == by_hook == by_argusd, (by_lint, by_hook, by_argusd)
    assert by_lint  # each tree is bad somewhere
