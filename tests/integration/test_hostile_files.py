"""Files that once stopped lint, the hook or argusd: each gets the same refusal through all
three doors (no traceback), and argusd goes on to record the next commit."""
import json
import os
import subprocess

import pytest

from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, write_config, spec_policy

GOOD = spec("a")
CASES = [
    ("deep lists", b"model_id: a\nmodel_source: $HOME/common/hf/m\nengine_kwargs: {x: " + b"[" * 490 + b"]" * 490
     + b"}\n", "nested more than 16 levels deep"),
    ("deep mappings", b"model_id: a\nmodel_source: $HOME/common/hf/m\nx: " + b"{a: " * 990 + b"1" + b"}" * 990
     + b"\n", "nested more than 16 levels deep"),
    ("not a number", (GOOD + "engine_kwargs: {seed: .nan}\n").encode(), ".nan is not a finite number"),
    ("an explicit tag", b"model_id: !!str a\nmodel_source: $HOME/common/hf/m\n", "tag '!!str' is not allowed"),
    ("a C1 control", "model_id: a\nmodel_source: $HOME/common/hf/m\u009b2J\n".encode(), "control character U+009B"),
    # Written as escapes in a quoted string, the characters appear only after parsing.
    ("an escaped C1 control", b'model_id: a\nmodel_source: "$HOME/common/hf/m\\x85"\n',
     "control character U+0085 (written as an escape)"),
    ("an escaped CSI", b'model_id: a\nmodel_source: "$HOME/common/hf/m\\u009b2J"\n',
     "control character U+009B (written as an escape)"),
]


@pytest.mark.parametrize("name, data, message", CASES, ids=[c[0] for c in CASES])
def test_lint_the_hook_and_argusd_refuse_it_alike(tmp_path, name, data, message):
    # lint
    tree = tmp_path / "tree" / "models.d" / "alice"
    tree.mkdir(parents=True)
    (tree / "a.yaml").write_bytes(data)
    linted = run_argusctl("lint", str(tmp_path / "tree" / "models.d"), env={"ARGUS_CONFIG": _config(tmp_path)})
    assert linted.returncode == 1 and message in linted.stdout, linted.stdout + linted.stderr
    assert "Traceback" not in linted.stdout + linted.stderr
    # the hook
    hooked = GitOps(tmp_path / "hooked")
    assert run_argusctl("--config", _config(tmp_path, hooked.bare), "hook", "install").returncode == 0
    hooked.write("models.d/alice/a.yaml", data)
    hooked.commit("hostile")
    pushed = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=hooked.work, capture_output=True, text=True)
    assert pushed.returncode != 0 and message in pushed.stderr, pushed.stderr
    assert "Traceback" not in pushed.stderr
    # argusd, with no hook in the way
    open_repo = GitOps(tmp_path / "open")
    open_repo.write("models.d/alice/a.yaml", data)
    open_repo.commit("hostile")
    open_repo.push()
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(open_repo.bare), "main", spec_policy())
    syncer.sync_once()
    (rejection,) = syncer.store.rejections()
    assert message in rejection.problems[0].message
    _next_commit_is_recorded(open_repo, syncer)


SUBMODULE = "submodules and other non-file entries are not allowed in models.d; commit the file itself"
USERS = "users:\n  alice:\n    git_identities: [alice@example.com]\n"


@pytest.mark.parametrize("where, users, message", [
    ("models.d/alice/sub.yaml", "", SUBMODULE),
    ("models.d/alice/sub", "", SUBMODULE),                 # any name: not only *.yaml
    ("models.d/sub", "", SUBMODULE),                       # beside the user directories
    ("models.d/alice/deeper/sub", "", SUBMODULE),          # below one
    ("models.d/carol/sub", USERS, "user 'carol' is not known to this platform"),
], ids=["named-like-a-spec", "any-name", "stray", "deeper", "unknown-user"])
def test_a_submodule_the_hook_refuses_is_a_rejection_argusd_records_and_status_shows(tmp_path, where, users, message):
    """A gitlink pushed past the hook (no hook, or a push made some other way) is recorded like any
    other rejected file: `status` shows it, removing it clears it, the next commit is recorded."""
    def add_submodule(g: GitOps) -> None:
        g.write("models.d/alice/keep.txt", "x")
        g.commit("first")
        g.git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},{where}")
        g.git("commit", "-q", "-m", "a submodule", env={"GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "alice@example.com",
                                                         "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@x"})

    hooked = GitOps(tmp_path / "hooked")
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db", repo=hooked.bare,
                          extra=users)
    assert run_argusctl("--config", str(config), "hook", "install").returncode == 0
    add_submodule(hooked)
    pushed = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=hooked.work, capture_output=True, text=True)
    assert pushed.returncode != 0 and f"{where}:1:1: {message}" in pushed.stderr, pushed.stderr
    # argusd, with no hook in the way
    g = GitOps(tmp_path / "open")
    add_submodule(g)
    g.push()
    owners = {"alice": ("alice@example.com",)} if users else {}
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(g.bare), "main", spec_policy(), owners=owners)
    syncer.sync_once()
    (rejection,) = syncer.store.rejections()
    assert (rejection.spec_path, rejection.problems[0].message.startswith(message)) == (where, True)
    status = run_argusctl("--config", str(config), "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    assert [(r["spec_path"], r["problems"][0]["message"][:len(message)])
            for r in json.loads(status.stdout)["rejected_specs"]] == [(where, message)]
    shown = run_argusctl("--config", str(config), "status")
    assert f"Rejected specs (not applied):\n  {where}:1:1: {message}" in shown.stdout, shown.stdout
    g.git("rm", "-q", "--cached", where)
    g.commit("drop the submodule")
    g.push()
    syncer.sync_once()
    assert syncer.store.rejections() == []
    assert "REJECTION_CLEARED" in [e.event_type for e in syncer.store.events(spec_path=where)]
    if not users:
        _next_commit_is_recorded(g, syncer)


def test_a_symlinked_spec_is_refused_by_lint_as_by_the_hook_and_argusd(tmp_path):
    tree = tmp_path / "models.d" / "alice"
    tree.mkdir(parents=True)
    (tree / "a.yaml").write_text(GOOD)
    os.symlink("a.yaml", tree / "b.yaml")
    linted = run_argusctl("lint", str(tmp_path / "models.d"), env={"ARGUS_CONFIG": _config(tmp_path)})
    assert linted.returncode == 1
    assert "models.d/alice/b.yaml:1:1: symlinks are not allowed in models.d; commit the file itself" in linted.stdout


def _config(tmp_path, repo=None) -> str:
    return str(write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "unused.db",
                            repo=repo or tmp_path / "none.git"))


def _next_commit_is_recorded(g: GitOps, syncer: Syncer) -> None:
    g.write("models.d/bob/b.yaml", spec("b"))
    g.commit("the next commit")
    g.push()
    syncer.sync_once()
    assert [m.model_id_suffix for m in syncer.store.list_models()] == ["b"]
    assert syncer.store.cursor()[1] == g.git("rev-parse", "HEAD").strip()


def test_a_file_name_that_is_not_utf8_never_stops_the_record(tmp_path):
    g = GitOps(tmp_path / "g")
    (g.work / "models.d" / "alice").mkdir(parents=True)
    with open(os.fsencode(g.work / "models.d" / "alice") + b"/x\xff.yaml", "wb") as handle:
        handle.write(spec("x").encode())
    g.commit("odd name")
    g.push()
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(g.bare), "main", spec_policy())
    syncer.sync_once()
    assert [m.model_id_suffix for m in syncer.store.list_models()] == ["x"]
    _next_commit_is_recorded_after(g, syncer, ["b", "x"])


def _next_commit_is_recorded_after(g: GitOps, syncer: Syncer, suffixes: list[str]) -> None:
    g.write("models.d/bob/b.yaml", spec("b"))
    g.commit("the next commit")
    g.push()
    syncer.sync_once()
    assert sorted(m.model_id_suffix for m in syncer.store.list_models()) == suffixes
