"""argusctl init/apply/scale/suspend/resume/delete on real repos: what lands in git, and what does not."""
import json
import os
import subprocess

import pytest

from daemon import gitwrite
from daemon.gitrepo import GitRepo
from daemon.store import Store
from daemon.sync.syncer import Syncer
from helpers import run_argusctl, spec, write_config, spec_policy


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "private" / "hf").mkdir(parents=True)
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "state.db",
                          repo=tmp_path / "gitops.git")
    env = {"ARGUS_CONFIG": str(config)}

    def ctl(*args, workdir=tmp_path / "alice-work", user_flag=()):
        return run_argusctl(*args, "--workdir", str(workdir), *user_flag, env=env, cwd=tmp_path)

    result = ctl("init", "--user", "alice", "--name", "Alice", "--email", "alice@example.com")
    assert result.returncode == 0, result.stderr
    return tmp_path, config, env, ctl


def test_init_without_a_git_identity_says_how_to_give_one(setup, tmp_path):
    # A fresh machine has no ~/.gitconfig: init must say so, not leave a clone that cannot commit.
    tmp, config, env, ctl = setup
    bare_home = tmp_path / "fresh-home"
    bare_home.mkdir()
    fresh = {**env, "HOME": str(bare_home), "XDG_CONFIG_HOME": str(bare_home), "GIT_CONFIG_NOSYSTEM": "1"}
    if subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], env={**os.environ, **fresh}, cwd=tmp,
                      capture_output=True).returncode == 0:
        pytest.skip("this machine's git makes up an identity from its host name")
    result = run_argusctl("init", "--user", "bob", "--workdir", str(tmp / "bob-work"), env=fresh, cwd=tmp)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "git has no identity to commit as" in result.stderr and "--name and --email" in result.stderr
    again = run_argusctl("init", "--user", "bob", "--name", "Bob", "--email", "bob@example.com",
                         "--workdir", str(tmp / "bob-work"), env=fresh, cwd=tmp)
    assert again.returncode == 0, again.stderr
    assert log(tmp / "gitops.git", "-1")[0] == "Bob <bob@example.com>|init: models.d/bob/"


def log(path, *args):
    return subprocess.run(["git", "-C", str(path), "log", "--format=%an <%ae>|%s", *args], capture_output=True,
                          text=True, check=True).stdout.splitlines()


def test_init_makes_the_repo_and_the_clone(setup):
    tmp, config, env, ctl = setup
    assert (tmp / "gitops.git" / "HEAD").exists()
    assert (tmp / "alice-work" / "models.d" / "alice" / ".gitkeep").exists()
    assert log(tmp / "gitops.git") == ["Alice <alice@example.com>|init: models.d/alice/"]
    again = ctl("init", "--user", "alice")
    assert again.returncode == 0 and len(log(tmp / "gitops.git")) == 1  # idempotent


def test_apply_commits_as_the_user_and_the_daemon_sees_it(setup):
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(spec("m"))
    result = ctl("apply", "-f", "m.yaml")
    assert result.returncode == 0, result.stderr
    assert "alice/m: created" in result.stdout and "+model_id: m" in result.stdout
    assert log(tmp / "gitops.git")[0] == "Alice <alice@example.com>|apply alice/m: new model"
    assert ctl("apply", "-f", "m.yaml").stdout.strip().endswith("alice/m: unchanged")
    assert len(log(tmp / "gitops.git")) == 2
    (tmp / "m.yaml").write_text(spec("m", replicas=2))
    assert ctl("apply", "-f", "m.yaml").returncode == 0
    assert log(tmp / "gitops.git")[0].endswith("apply alice/m: num_replicas 1 -> 2")
    syncer = Syncer(Store.open(tmp / "s.db"), GitRepo(tmp / "gitops.git"), "main", spec_policy(root=str(tmp / "private")))
    syncer.sync_once()
    (model,) = syncer.store.list_models()
    assert (model.model_id_suffix, model.resolved["num_replicas"], model.commit_author) == (
        "m", 2, "Alice <alice@example.com>")


def test_invalid_spec_is_refused_and_nothing_is_written(setup):
    tmp, config, env, ctl = setup
    (tmp / "bad.yaml").write_text("model_id: m\nmodel_source: /etc\n")
    result = ctl("apply", "-f", "bad.yaml")
    assert result.returncode == 1
    assert "bad.yaml:2:15: model_source /etc is outside the allowed roots" in result.stderr
    assert len(log(tmp / "gitops.git")) == 1
    assert not (tmp / "alice-work" / "models.d" / "alice" / "m.yaml").exists()


def test_dry_run_shows_the_diff_and_touches_nothing(setup):
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(spec("m"))
    result = ctl("apply", "-f", "m.yaml", "--dry-run")
    assert result.returncode == 0
    assert "+++ b/models.d/alice/m.yaml" in result.stdout and "would be" in result.stdout
    assert not (tmp / "alice-work" / "models.d" / "alice" / "m.yaml").exists()
    assert len(log(tmp / "gitops.git")) == 1


def test_scale_keeps_comments_and_respects_limits(setup):
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text("# my model\nmodel_id: m  # the id\nmodel_source: $HOME/common/hf/x\n"
                                "num_replicas: 1   # start small\n")
    assert ctl("apply", "-f", "m.yaml").returncode == 0
    result = ctl("scale", "m", "--replicas", "3", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["action"] == "scaled"
    text = (tmp / "alice-work" / "models.d" / "alice" / "m.yaml").read_text()
    assert text == ("# my model\nmodel_id: m  # the id\nmodel_source: $HOME/common/hf/x\n"
                    "num_replicas: 3   # start small\n")
    assert log(tmp / "gitops.git")[0].endswith("scale alice/m: num_replicas 1 -> 3")
    over = ctl("scale", "alice-202601010000-m", "--replicas", "9")  # full public id works too
    assert over.returncode == 1 and "over this platform's limit of 4" in over.stderr
    assert ctl("scale", "nope", "--replicas", "2").returncode == 4


def test_scale_of_an_autoscaled_model_is_refused_with_what_to_do_and_commits_nothing(setup):
    tmp, config, env, ctl = setup
    (tmp / "a.yaml").write_text("model_id: a\nmodel_source: $HOME/common/hf/x\n"
                                "autoscaling: {min_replicas: 0, max_replicas: 2}\n")
    assert ctl("apply", "-f", "a.yaml").returncode == 0
    commits = len(log(tmp / "gitops.git"))
    result = ctl("scale", "a", "--replicas", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "models.d/alice/a.yaml:1:1: the model is autoscaled (min_replicas 0, max_replicas 2)" in result.stderr
    assert "change autoscaling.min_replicas/max_replicas" in result.stderr and "Traceback" not in result.stderr
    assert len(log(tmp / "gitops.git")) == commits


def test_suspend_and_resume_commit_the_one_line_and_say_so_when_there_is_nothing_to_do(setup):
    tmp, config, env, ctl = setup
    written = "# my model\nmodel_id: m  # the id\nmodel_source: $HOME/common/hf/x\nnum_replicas: 1   # start small\n"
    (tmp / "m.yaml").write_text(written)
    assert ctl("apply", "-f", "m.yaml").returncode == 0
    spec_file = tmp / "alice-work" / "models.d" / "alice" / "m.yaml"
    commits = len(log(tmp / "gitops.git"))

    result = ctl("suspend", "m", "-o", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["action"], out["message"]) == ("suspended", "suspend alice/m: suspended false -> true")
    assert spec_file.read_text() == written + "suspended: true\n"
    assert log(tmp / "gitops.git")[0] == "Alice <alice@example.com>|suspend alice/m: suspended false -> true"
    # What argusd records from that commit (the real syncer, through the hook-guarded repo).
    syncer = Syncer(Store.open(tmp / "s.db"), GitRepo(tmp / "gitops.git"), "main", spec_policy(root=str(tmp / "private")))
    syncer.sync_once()
    (model,) = syncer.store.list_models()
    assert (model.resolved["suspended"], model.commit_sha) == (True, out["commit"])

    again = ctl("suspend", "alice-202601010000-m")   # the full public id too
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "alice/m: unchanged (already suspended; nothing to commit)"
    assert len(log(tmp / "gitops.git")) == commits + 1

    dry = ctl("resume", "m", "--dry-run")
    assert dry.returncode == 0 and "-suspended: true" in dry.stdout and "alice/m: resumed would be" in dry.stdout
    assert len(log(tmp / "gitops.git")) == commits + 1 and spec_file.read_text() == written + "suspended: true\n"

    result = ctl("resume", "m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("alice/m: resumed (")
    assert spec_file.read_text() == written   # the line is removed, not set to false
    assert log(tmp / "gitops.git")[0] == "Alice <alice@example.com>|resume alice/m: suspended true -> false"
    syncer.sync_once()
    (model,) = syncer.store.list_models()
    assert "suspended" not in model.resolved and model.commit_sha == log_sha(tmp / "gitops.git")

    again = ctl("resume", "m", "-o", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["action"] == "unchanged"
    assert json.loads(again.stdout)["commit"] is None
    assert ctl("resume", "m").stdout.strip() == "alice/m: unchanged (not suspended; nothing to commit)"
    assert len(log(tmp / "gitops.git")) == commits + 2
    missing = ctl("suspend", "nope")
    assert missing.returncode == 4 and "no spec for model 'nope'" in missing.stderr


def log_sha(path):
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_suspend_of_a_spec_written_false_sets_true_and_a_flow_spec_keeps_its_style(setup):
    tmp, config, env, ctl = setup
    (tmp / "a.yaml").write_text("model_id: a\nmodel_source: $HOME/common/hf/x\nsuspended: false  # on\n")
    (tmp / "b.yaml").write_text("{model_id: b, suspended: true, model_source: $HOME/common/hf/x}\n")
    assert ctl("apply", "-f", "a.yaml").returncode == 0 and ctl("apply", "-f", "b.yaml").returncode == 0
    user_dir = tmp / "alice-work" / "models.d" / "alice"
    assert ctl("resume", "a").stdout.strip() == "alice/a: unchanged (not suspended; nothing to commit)"
    assert ctl("suspend", "a").returncode == 0
    assert (user_dir / "a.yaml").read_text() == "model_id: a\nmodel_source: $HOME/common/hf/x\nsuspended: true  # on\n"
    assert ctl("resume", "b").returncode == 0
    assert (user_dir / "b.yaml").read_text() == "{model_id: b, model_source: $HOME/common/hf/x}\n"


def test_suspend_wait_times_out_with_exit_5_when_nothing_applies_it(setup):
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(spec("m"))
    assert ctl("apply", "-f", "m.yaml").returncode == 0
    result = ctl("suspend", "m", "--wait", "--timeout", "1")
    assert result.returncode == 5, result.stderr
    assert "alice/m: absent: timed out" in result.stdout


def test_delete(setup):
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(spec("m"))
    ctl("apply", "-f", "m.yaml")
    result = ctl("delete", "m")
    assert result.returncode == 0 and "alice/m: deleted" in result.stdout
    assert not (tmp / "alice-work" / "models.d" / "alice" / "m.yaml").exists()
    assert log(tmp / "gitops.git")[0].endswith("delete alice/m")
    missing = ctl("delete", "m")
    assert missing.returncode == 4 and "no spec for model 'm'" in missing.stderr


def test_a_push_that_loses_a_race_is_rebased_not_forced(setup):
    tmp, config, env, ctl = setup
    bob = lambda *a: ctl(*a, workdir=tmp / "bob-work")  # noqa: E731
    assert bob("init", "--user", "bob", "--name", "Bob", "--email", "bob@example.com").returncode == 0
    # alice's clone is now behind (bob's init commit); she commits on her stale clone
    (tmp / "a.yaml").write_text(spec("a"))
    (tmp / "b.yaml").write_text(spec("b"))
    assert bob("apply", "-f", "b.yaml").returncode == 0
    result = ctl("apply", "-f", "a.yaml")
    assert result.returncode == 0, result.stderr
    subjects = [line.split("|")[1] for line in log(tmp / "gitops.git")]
    assert subjects == ["apply alice/a: new model", "apply bob/b: new model", "init: models.d/bob/",
                        "init: models.d/alice/"]
    merges = subprocess.run(["git", "-C", str(tmp / "gitops.git"), "rev-list", "--merges", "HEAD"],
                            capture_output=True, text=True).stdout
    assert merges == ""


def test_wait_times_out_with_exit_5_when_nothing_applies_it(setup):
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(spec("m"))
    result = ctl("apply", "-f", "m.yaml", "--wait", "--timeout", "1")
    assert result.returncode == 5
    assert "alice/m: absent: timed out" in result.stdout


@pytest.mark.parametrize("command", [["apply", "-f", "m.yaml"], ["scale", "m", "--replicas", "2"], ["delete", "m"],
                                     ["suspend", "m"], ["resume", "m"], ["diff"]])
@pytest.mark.parametrize("workdir", ["none", "plain"])
def test_every_command_says_the_same_when_the_workdir_is_not_a_clone(tmp_path, command, workdir):
    # One code for one condition: 3, "environment not usable" (docs/cli.md), the git repo here.
    (tmp_path / "plain").mkdir()
    (tmp_path / "m.yaml").write_text(spec("m"))
    config = write_config(tmp_path / "c.yaml", root=tmp_path, db=tmp_path / "s.db", repo=tmp_path / "g.git")
    result = run_argusctl(*command, "--workdir", str(tmp_path / workdir), env={"ARGUS_CONFIG": str(config)},
                          cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr == (f"argusctl: error: {tmp_path / workdir} is not a GitOps clone; create one with "
                             "`argusctl init` or pass --workdir\n")


def writing(path, text, message):
    """An edit for commit_and_push: write `text` to `path` (again on every retry)."""
    def edit():
        path.write_text(text)
        return [path], message
    return edit


def test_push_race_mechanism_redoes_the_edit_and_conflicts_are_refused(setup):
    """Losing the race between sync and push: the edit is made again on the winner's head when
    the winner did not touch the edited file, and refused when it did."""
    from argusctl.ops import write as writepath
    from daemon.errors import ConflictError

    tmp, config, env, ctl = setup
    ctl("init", "--user", "alice", "--name", "Alice", "--email", "alice@example.com", workdir=tmp / "alice-2")
    first = writepath.open_clone(tmp / "alice-work", None, "main")
    second = writepath.open_clone(tmp / "alice-2", None, "main")
    gitwrite.commit_and_push(second, writing(second.user_dir / "x.yaml", spec("x"), "x from the second clone"))
    # the first clone is stale now
    sha = gitwrite.commit_and_push(first, writing(first.user_dir / "y.yaml", spec("y"), "y from the first clone"))
    assert [line.split("|")[1] for line in log(tmp / "gitops.git")][:2] == ["y from the first clone",
                                                                             "x from the second clone"]
    assert log(tmp / "gitops.git", "-1", "--format=%H")[0].split("|")[0] == sha
    # Both clones now change the same file differently: the second to push is refused.
    gitwrite.sync_clone(second)
    gitwrite.commit_and_push(first, writing(first.user_dir / "x.yaml", spec("x", replicas=2), "x to 2"))
    with pytest.raises(ConflictError, match="changed the same spec meanwhile"):
        with gitwrite.write_transaction(second, sync=False):
            gitwrite.commit_and_push(second, writing(second.user_dir / "x.yaml", spec("x", replicas=3), "x to 3"))
    assert log(tmp / "gitops.git")[0].endswith("|x to 2")
    assert "num_replicas: 2" in (second.user_dir / "x.yaml").read_text()  # the clone is back on theirs
    assert git(second.path, "status", "--porcelain") == ""


def test_a_local_commit_that_conflicts_with_what_is_pushed_is_the_users_to_resolve_exit_2(setup):
    """The clone's own unpushed commit and a pushed one change the same lines: the rebase stops.
    That is not a race lost (exit 6, "run it again" would fail the same way every time): the
    user resolves it in the clone, so it is a usage error, exit 2, saying how."""
    tmp, config, env, ctl = setup
    ctl("init", "--user", "alice", "--name", "Alice", "--email", "alice@example.com", workdir=tmp / "alice-2")
    (tmp / "x.yaml").write_text(spec("x"))
    assert ctl("apply", "-f", str(tmp / "x.yaml")).returncode == 0
    second = tmp / "alice-2"
    git(second, "pull", "-q", "origin", "main")
    (second / "models.d" / "alice" / "x.yaml").write_text(spec("x", replicas=3))
    git(second, "commit", "-qam", "x to 3, not pushed")
    assert ctl("scale", "x", "--replicas", "2").returncode == 0
    (tmp / "y.yaml").write_text(spec("y"))
    for _ in range(2):   # the same answer the second time: nothing to wait for
        found = ctl("apply", "-f", str(tmp / "y.yaml"), workdir=second)
        assert found.returncode == 2, found.stdout + found.stderr
        assert "conflict with what is pushed" in found.stderr and "pull --rebase" in found.stderr
    assert git(second, "status", "--porcelain") == ""
    assert git(second, "log", "-1", "--format=%s").strip() == "x to 3, not pushed"   # theirs, kept


def git(path, *args):
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout


def test_a_push_the_hook_refuses_says_why_and_leaves_the_clone_clean(tmp_path):
    users = ("users:\n  alice:\n    git_identities: [alice@example.com]\n")
    config = write_config(tmp_path / "c.yaml", root=tmp_path / "private", db=tmp_path / "s.db",
                          repo=tmp_path / "gitops.git", extra=users)
    env = {"ARGUS_CONFIG": str(config)}
    work = tmp_path / "alice-work"
    assert run_argusctl("init", "--user", "alice", "--name", "Alice", "--email", "alice@example.com",
                        "--workdir", str(work), env=env, cwd=tmp_path).returncode == 0
    assert run_argusctl("hook", "install", env=env, cwd=tmp_path).returncode == 0
    subprocess.run(["git", "-C", str(work), "config", "user.email", "mallory@example.com"], check=True)
    (tmp_path / "m.yaml").write_text(spec("m"))
    refused = run_argusctl("apply", "-f", str(tmp_path / "m.yaml"), "--workdir", str(work), env=env, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr   # the user's fault, not the environment's
    assert "the GitOps repo refused the push; nothing changed" in refused.stderr
    assert "models.d/alice/m.yaml:1:1: Alice <mallory@example.com> (commit" in refused.stderr
    assert "could not push after" not in refused.stderr
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD", "origin/main"], capture_output=True,
                          text=True).stdout.split()
    assert head[0] == head[1]  # the refused commit is gone from the clone
    subprocess.run(["git", "-C", str(work), "config", "user.email", "alice@example.com"], check=True)
    accepted = run_argusctl("apply", "-f", str(tmp_path / "m.yaml"), "--workdir", str(work), env=env, cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr


def test_init_never_destroys_work_nor_touches_another_project(setup, tmp_path):
    tmp, config, env, ctl = setup
    work = tmp / "alice-work"
    edit = work / "models.d" / "alice" / "draft.yaml"
    edit.write_text(spec("draft"))  # not committed yet
    again = ctl("init", "--user", "alice")
    assert again.returncode == 2 and "has uncommitted changes" in again.stderr
    assert edit.read_text() == spec("draft")
    (tmp / "other.yaml").write_text(spec("other"))
    blocked = ctl("apply", "-f", str(tmp / "other.yaml"))   # a write starts from what is pushed
    assert blocked.returncode == 2 and "has uncommitted changes (models.d/alice/draft.yaml)" in blocked.stderr, blocked.stderr
    assert "Traceback" not in blocked.stderr and edit.read_text() == spec("draft")
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "draft"], check=True)
    local = ctl("init", "--user", "alice")
    assert local.returncode == 2 and "1 commit(s) that are not in the GitOps repo" in local.stderr
    assert edit.exists()
    # Another project's clone: refused, and nothing in it changes.
    other_bare, other = tmp / "other.git", tmp / "other-work"
    subprocess.run(["git", "init", "-q", "--bare", str(other_bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(other_bare), str(other)], capture_output=True, check=True)
    (other / "precious.txt").write_text("mine\n")
    foreign = ctl("init", "--user", "alice", workdir=other)
    assert foreign.returncode == 2 and f"is a clone of {other_bare}, not of the GitOps repo" in foreign.stderr
    assert (other / "precious.txt").read_text() == "mine\n"
    assert subprocess.run(["git", "-C", str(other_bare), "rev-parse", "--verify", "-q", "HEAD"],
                          capture_output=True).returncode != 0  # nothing was pushed there


@pytest.mark.parametrize("command", [["delete", "victim"], ["scale", "victim", "--replicas", "2"], ["suspend", "victim"]])
def test_a_user_id_that_is_a_path_is_refused_everywhere(setup, command):
    tmp, config, env, ctl = setup
    victim = tmp / "victim.yaml"
    victim.write_text(spec("victim"))
    result = ctl(*command, user_flag=("--user", "../.."))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "user id" in result.stderr and victim.exists()


def test_a_hostile_file_in_the_clone_does_not_crash_apply_or_scale(setup):
    tmp, config, env, ctl = setup
    clone_dir = tmp / "alice-work" / "models.d" / "alice"
    (clone_dir / "deep.yaml").write_bytes(b"model_id: " + b"[" * 600 + b"]" * 600 + b"\n")
    subprocess.run(["git", "-C", str(tmp / "alice-work"), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(tmp / "alice-work"), "commit", "-qm", "deep"], check=True)
    subprocess.run(["git", "-C", str(tmp / "alice-work"), "push", "-q", "origin", "HEAD:main"], check=True)
    (tmp / "m.yaml").write_text(spec("m"))
    applied = ctl("apply", "-f", str(tmp / "m.yaml"))
    assert applied.returncode == 0, applied.stderr
    scaled = ctl("scale", "m", "--replicas", "2")
    assert scaled.returncode == 0 and "Traceback" not in scaled.stderr, scaled.stderr


QUOTED = '"model_id": m\n"model_source": "$HOME/common/hf/x"\n"num_replicas": 1  # one to start\n'
FLOW = "# flow style\n{model_id: m, model_source: $HOME/common/hf/x,\n engine_kwargs: {max_model_len: 2048}}\n"


@pytest.mark.parametrize("written,scaled", [
    (QUOTED, QUOTED.replace('"num_replicas": 1', '"num_replicas": 3')),
    (FLOW, FLOW.replace("2048}}", "2048}, num_replicas: 3}")),
])
def test_scale_edits_the_one_value_of_any_valid_spec(setup, written, scaled):
    # Was: quoted keys got a second num_replicas (a duplicate key), flow style became invalid YAML.
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(written)
    assert ctl("apply", "-f", "m.yaml").returncode == 0
    result = ctl("scale", "m", "--replicas", "3")
    assert result.returncode == 0, result.stderr
    spec_file = tmp / "alice-work" / "models.d" / "alice" / "m.yaml"
    assert spec_file.read_text() == scaled
    assert log(tmp / "gitops.git")[0].endswith("|scale alice/m: num_replicas 1 -> 3")
    assert run_argusctl("lint", str(spec_file), env=env, cwd=tmp).returncode == 0


def test_the_commit_message_names_a_new_adapters_section(setup):
    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(spec("m"))
    assert ctl("apply", "-f", "m.yaml").returncode == 0
    (tmp / "m.yaml").write_text(spec("m") + "adapters:\n  max_rank: 8\n  users: [bob]\n")
    result = ctl("apply", "-f", "m.yaml", "-o", "json")
    assert result.returncode == 0, result.stderr
    said = 'apply alice/m: adapters added: {"max_rank": 8, "users": ["bob"]}'
    assert log(tmp / "gitops.git")[0].endswith("|" + said) and json.loads(result.stdout)["message"] == said
    (tmp / "m.yaml").write_text("# now with a comment\n" + (tmp / "m.yaml").read_text())
    assert ctl("apply", "-f", "m.yaml").returncode == 0
    assert log(tmp / "gitops.git")[0].endswith("|apply alice/m: comments or layout")
    unchanged = ctl("apply", "-f", "m.yaml", "-o", "json")
    assert json.loads(unchanged.stdout)["message"] == "alice/m is already as in models.d/alice/m.yaml"


def test_the_api_patch_and_post_share_the_write_path(tmp_path):
    """The API's PATCH edits a flow-style spec with quoted keys in place, and an unchanged POST
    names the model and its file in the repo (not a file name the user never used)."""
    from helpers import ApiDaemon

    daemon = ApiDaemon(tmp_path)
    try:
        token = daemon.token("alice")
        body = '{"model_id": "flow", "model_source": "$HOME/common/hf/m"}  # all on one line\n'
        headers = {"token": token, "ctype": "application/yaml"}
        status, out, _ = daemon.http("POST", "/api/v2/serve/models", body=body, **headers)
        assert status in (201, 202), out
        status, out, _ = daemon.http("PATCH", f"/api/v2/serve/models/{out['model_key']}", token=token,
                                     body={"num_replicas": 2})
        assert status == 202 and out["action"] == "scaled", out
        shown = subprocess.run(["git", "-C", str(tmp_path / "gitops.git"), "show", "main:models.d/alice/flow.yaml"],
                               capture_output=True, text=True, check=True).stdout
        assert shown == '{"model_id": "flow", "model_source": "$HOME/common/hf/m", num_replicas: 2}  # all on one line\n'
        status, out, _ = daemon.http("POST", "/api/v2/serve/models", body=shown, **headers)
        assert out["action"] == "unchanged" and out["message"].startswith(
            "alice/flow is already as in models.d/alice/flow.yaml"), out
    finally:
        daemon.stop()


@pytest.mark.parametrize("output", ["table", "json"])
def test_apply_wait_says_what_a_client_sends_once_the_model_runs(setup, output):
    import sys
    import time
    from datetime import datetime, timezone

    tmp, config, env, ctl = setup
    (tmp / "m.yaml").write_text(spec("m"))
    waiting = subprocess.Popen([sys.executable, "-m", "argusctl", "apply", "-f", "m.yaml", "--wait", "--timeout", "120",
                                "-o", output, "--workdir", str(tmp / "alice-work")],
                               cwd=tmp, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        # argusd's part, by hand: record the pushed commit, then Serve reports the model healthy.
        bare = tmp / "gitops.git"
        deadline = time.monotonic() + 60
        while "apply alice/m" not in subprocess.run(["git", "-C", str(bare), "log", "-1", "--format=%s"],
                                                    capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline and waiting.poll() is None
            time.sleep(0.1)
        syncer = Syncer(Store.open(tmp / "state.db"), GitRepo(bare), "main", spec_policy(root=str(tmp / "private")))
        syncer.sync_once()
        (model,) = syncer.store.list_models()
        syncer.store.set_state(model.model_key, "RUNNING", now=datetime.now(timezone.utc).isoformat())
        syncer.store.close()
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, out + err
    url = "http://127.0.0.1:8000/v1"
    if output == "json":
        result = json.loads(out)
        assert (result["final_state"], result["model"], result["openai_base_url"]) == ("RUNNING", model.model_id, url)
        return
    assert f'model: {model.model_id}  (send this as "model" to {url})' in out
    assert (f"curl {url}/chat/completions -H 'Content-Type: application/json' -d "
            f"'{{\"model\": \"{model.model_id}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}'") in out
    assert model.model_id.startswith("alice-") and model.model_id.endswith("-m")
