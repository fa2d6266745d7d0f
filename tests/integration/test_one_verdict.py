"""One judge, three shells: the same commits through `argusctl lint` (in the clone, before the
push), the pre-receive hook and argusd give the same problems, word for word, at the same
`path:line:col`. The rules themselves are a table in tests/unit/test_verdict.py; this proves
only that each shell reads the same facts and shows the judge's verdict unchanged: the file a
model is recorded from keeps it, a newcomer is refused naming it, and an engine argument the
model folder cannot take is refused with its limit."""
import json
import re
import subprocess

from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import GitOps, run_argusctl, spec, spec_policy, write_config

FIRST = {"models.d/alice/a.yaml": spec("m")}
SECOND = {
    "models.d/alice/b.yaml": "# a second file for m\n" + spec("m"),                       # newcomer: refused
    "models.d/alice/c.yaml": "model_id: c\nmodel_source: $HOME/common/hf/m\nengine_kwargs:\n  max_model_len: 9000\n",
    "models.d/alice/d.yaml": spec("d") + "replicas: 2\n",                                   # unknown field
    "models.d/alice/e.yaml": "model_id: e\nmodel_source: $HOME/common/hf/link\n",          # a symlink out
    "models.d/Alice/f.yaml": spec("f"),                                                    # bad user id
    "models.d/carol/g.yaml": spec("g"),                                                    # a user not in users:
    "models.d/stray.yaml": spec("s"),                                                      # wrong depth
}
LINE = re.compile(r"^(models\.d/\S+?:\d+:\d+: .*?)(?: \(commit [0-9a-f]{12}\))?$")


def _commit_both(repos, files, message):
    for repo in repos:
        for rel, text in files.items():
            repo.write(rel, text)
        repo.commit(message)


def test_lint_hook_and_argusd_give_the_judges_verdict(tmp_path):
    root = tmp_path / "private"
    (root / "hf" / "m").mkdir(parents=True)
    (root / "hf" / "m" / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    (tmp_path / "elsewhere").mkdir()
    (root / "hf" / "link").symlink_to(tmp_path / "elsewhere")
    config = write_config(tmp_path / "c.yaml", root=root, db=tmp_path / "unused.db",
                          repo=tmp_path / "hooked" / "gitops.git",
                          extra="users:\n  alice:\n    git_identities: [alice@example.com]\n")
    hooked, open_repo = GitOps(tmp_path / "hooked"), GitOps(tmp_path / "open")
    assert run_argusctl("--config", str(config), "hook", "install").returncode == 0
    _commit_both([hooked, open_repo], FIRST, "a holds m")
    hooked.push()
    open_repo.push()
    for rel, text in SECOND.items():
        hooked.write(rel, text)
    # lint, in the clone, before the commit: HEAD says a.yaml holds m
    linted = run_argusctl("lint", "models.d", cwd=hooked.work, env={"ARGUS_CONFIG": str(config)})
    assert linted.returncode == 1
    by_lint = {line for line in linted.stdout.splitlines() if line.startswith("models.d/")}
    # the hook
    hooked.commit("more")
    pushed = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=hooked.work, capture_output=True, text=True)
    assert pushed.returncode != 0
    by_hook = {LINE.match(line[len("remote: argus: "):].rstrip()).group(1) for line in pushed.stderr.splitlines()
               if line.startswith("remote: argus: models.d/")}
    # argusd, from a repo without the hook, that recorded the first commit before the second came
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(open_repo.bare), "main", spec_policy(root=str(root)),
                    owners={"alice": ("alice@example.com",)})
    syncer.sync_once()
    _commit_both([open_repo], SECOND, "more")
    open_repo.push()
    syncer.sync_once()
    by_argusd = {str(p) for r in syncer.store.rejections() for p in r.problems}

    assert by_lint == by_hook == by_argusd, (by_lint, by_hook, by_argusd)
    refused = {line.split(":", 1)[0] for line in by_lint}
    assert refused == {f"models.d/alice/{n}.yaml" for n in "bcde"} | {"models.d/Alice/f.yaml", "models.d/stray.yaml",
                                                                     "models.d/carol/g.yaml"}
    assert ("models.d/alice/b.yaml:2:11: model_id 'm' is already served from models.d/alice/a.yaml; this file cannot "
            "take it over: give it its own model_id, or change models.d/alice/a.yaml instead") in by_lint
    assert any(line.startswith("models.d/alice/c.yaml:4:18: engine_kwargs.max_model_len 9000 is above the model's own "
                               "limit of 8192 tokens") for line in by_lint)
    (model,) = syncer.store.list_models()
    assert (model.model_id_suffix, model.spec_path) == ("m", "models.d/alice/a.yaml")   # m keeps serving from a


def test_a_config_json_nested_too_deep_to_parse_breaks_neither_lint_nor_anyones_sync(tmp_path):
    """`"[" * 100000` raised RecursionError out of the JSON parser: lint printed a traceback and
    Syncer.sync_once raised, so one user's file stopped everyone's sync. Such a config.json says
    nothing argus can judge by (as one that is not JSON): the spec is judged without it."""
    root = tmp_path / "private"
    (root / "users" / "alice" / "m").mkdir(parents=True)
    (root / "users" / "alice" / "m" / "config.json").write_text("[" * 100000)
    (root / "hf" / "m").mkdir(parents=True)
    config = write_config(tmp_path / "c.yaml", root=root, db=tmp_path / "unused.db", repo=tmp_path / "r" / "gitops.git",
                          extra="users:\n  alice:\n    git_identities: [alice@example.com]\n"
                                "  bob:\n    git_identities: [bob@example.com]\n")
    repo = GitOps(tmp_path / "r")
    files = {"models.d/alice/a.yaml": "model_id: a\nmodel_source: $HOME/m\ngpus_per_replica: 2\n"
                                      "engine_kwargs:\n  max_model_len: 9000\n",
             "models.d/bob/b.yaml": spec("b")}
    repo.write("models.d/bob/b.yaml", spec("b"))
    repo.commit("bob's", author="Bob", email="bob@example.com")
    repo.write("models.d/alice/a.yaml", files["models.d/alice/a.yaml"])
    repo.commit("deep")
    repo.push()
    linted = run_argusctl("lint", "models.d", cwd=repo.work, env={"ARGUS_CONFIG": str(config)})
    assert (linted.returncode, "Traceback" in linted.stdout + linted.stderr) == (0, False), linted
    syncer = Syncer(Store.open(tmp_path / "s.db"), GitRepo(repo.bare), "main", spec_policy(root=str(root)),
                    owners={"alice": ("alice@example.com",), "bob": ("bob@example.com",)})
    syncer.sync_once()
    assert sorted(m.model_id_suffix for m in syncer.store.list_models()) == ["a", "b"]
