"""plan_user as a table: (files at a commit, models on record) -> changes, with the judge's
verdict (core/verdict.py, tested as a table of its own in test_verdict.py) in between."""
from datetime import datetime, timezone

import pytest

from daemon.core.records import ModelRow, iso
from daemon.core.spec import parse_spec, resolve_spec
from daemon.core.states import ModelState
from daemon.core.verdict import TreeEntry, UserFacts, judge, read_user
from daemon.errors import Problem
from daemon.sync.plan import RejectSpec, UpdateModel, plan_user
from helpers import spec_policy

POLICY = spec_policy(root="/private")
T0 = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
T1 = datetime(2026, 2, 1, 12, 30, tzinfo=timezone.utc)


def f(path: str, text: str, blob: str | None = None) -> TreeEntry:
    return TreeEntry(path, blob or f"blob-{abs(hash(text))}", "100644", text.encode())


def plan(files, models, rejections, refused=None):
    """The judge on the files (models on record as the store has them), then the plan."""
    user = UserFacts("alice", tuple(files), refused=refused or {},
                     recorded={m.model_id_suffix: m.spec_path for m in models})
    verdicts = judge(user, read_user(user, POLICY), {}, POLICY)
    return plan_user("alice", verdicts, models, rejections, T1, POLICY)


def spec(model_id: str, replicas: int = 1, src: str = "m") -> str:
    return f"model_id: {model_id}\nmodel_source: $HOME/common/hf/{src}\nnum_replicas: {replicas}\n"


def model(suffix: str, path: str, replicas: int = 1, state: ModelState = ModelState.RUNNING, src: str = "m") -> ModelRow:
    resolved = resolve_spec(parse_spec(path, spec(suffix, replicas, src).encode(), "alice", POLICY).spec,
                            "alice", T0, POLICY)
    return ModelRow(model_key=f"k-{suffix}", user_id="alice", model_id_suffix=suffix, model_id=resolved.model_id,
                    spec_path=path, spec_yaml=spec(suffix, replicas, src), resolved=resolved.to_dict(), state=state,
                    error_summary=None, generation=1, attempted_generation=None, applied_generation=None,
                    commit_sha="c0", commit_author="a", created_at=iso(T0), updated_at=iso(T0))


A, B = "models.d/alice/a.yaml", "models.d/alice/b.yaml"


def kinds(changes):
    out = []
    for c in changes:
        name = type(c).__name__
        if isinstance(c, UpdateModel):
            name += f":{c.kind}"
        out.append((name, getattr(c, "model_key", None) or getattr(c, "spec_path", None)))
    return out


CASES = [
    ("new file creates a model", [f(A, spec("x"))], [], {}, [("CreateModel", A)]),
    ("unchanged spec is a no-op", [f(A, spec("x"))], [model("x", A)], {}, []),
    ("comment-only edit is a no-op", [f(A, "# hi\n" + spec("x"))], [model("x", A)], {}, []),
    ("replicas change is a scale", [f(A, spec("x", 2))], [model("x", A)], {}, [("UpdateModel:scaled", "k-x")]),
    ("fixed to autoscaled is an update (Serve rebuilds the app: a new generation)",
     [f(A, "model_id: x\nmodel_source: $HOME/common/hf/m\nautoscaling: {min_replicas: 0, max_replicas: 2}\n")],
     [model("x", A)], {}, [("UpdateModel:updated", "k-x")]),
    ("suspending is an update (re-queued)", [f(A, spec("x") + "suspended: true\n")], [model("x", A)], {},
     [("UpdateModel:updated", "k-x")]),
    ("source change is an update", [f(A, spec("x", src="n"))], [model("x", A)], {}, [("UpdateModel:updated", "k-x")]),
    ("removed file deletes", [], [model("x", A)], {}, [("DeleteModel", "k-x")]),
    ("deleting model stays deleting", [], [model("x", A, state="DELETING")], {}, []),
    ("re-added while deleting revives", [f(A, spec("x"))], [model("x", A, state="DELETING")], {},
     [("UpdateModel:revived", "k-x")]),
    ("renamed file with same spec moves", [f(B, spec("x"))], [model("x", A)], {}, [("MoveModel", "k-x")]),
    ("changed model_id deletes old, creates new", [f(A, spec("y"))], [model("x", A)], {},
     [("CreateModel", A), ("DeleteModel", "k-x")]),
    ("broken file keeps the last good spec", [f(A, "model_id: [\n", "b1")], [model("x", A)], {},
     [("RejectSpec", "k-x")]),
    ("broken file already on record is not re-recorded", [f(A, "model_id: [\n", "b1")], [model("x", A)],
     {A: ("b1", (Problem(A, 2, 1, "YAML syntax error: did not find expected node content"),))}, []),
    ("fixed file clears the rejection", [f(A, spec("x"))], [model("x", A)], {A: ("b1", ("p",))},
     [("ClearRejection", "k-x")]),
    ("deleted broken file clears the rejection", [], [], {A: ("b1", ("p",))}, [("ClearRejection", A)]),
    ("two new files with one id: both rejected", [f(A, spec("x")), f(B, spec("x", 2))], [], {},
     [("RejectSpec", A), ("RejectSpec", B)]),
    ("second file claiming an owned id is rejected", [f(A, spec("x")), f(B, spec("x", 2))], [model("x", A)], {},
     [("RejectSpec", B)]),
    ("failed model with unchanged spec is left alone", [f(A, spec("x"))], [model("x", A, state="FAILED")], {}, []),
    ("failed model with changed spec is re-queued", [f(A, spec("x", 2))], [model("x", A, state="FAILED")], {},
     [("UpdateModel:scaled", "k-x")]),
]


@pytest.mark.parametrize("name, files, models, rejections, expected", CASES, ids=[c[0] for c in CASES])
def test_plan_user(name, files, models, rejections, expected):
    assert kinds(plan(files, models, rejections)) == expected


def test_new_model_id_uses_the_commit_time_and_updates_keep_the_first():
    (create,) = plan([f(A, spec("x"))], [], {})
    assert create.resolved.model_id == "alice-202602011230-x"
    (update,) = plan([f(A, spec("x", 2))], [model("x", A)], {})
    assert update.resolved.model_id == "alice-202601010000-x"
    assert update.changes == {"num_replicas": [1, 2]}


def test_conflict_message_names_the_other_file():
    changes = plan([f(A, spec("x")), f(B, spec("x", 2))], [model("x", A)], {})
    (reject,) = changes
    assert isinstance(reject, RejectSpec)
    assert reject.problems == (Problem(B, 1, 11, f"model_id 'x' is already served from {A}; this file cannot take "
                                              f"it over: give it its own model_id, or change {A} instead"),)


def test_a_change_refused_for_its_author_rejects_a_valid_file_and_keeps_the_model():
    changes = plan([f(A, spec("x", 2))], [model("x", A)], {}, refused={A: (Problem(A, 1, 1, "not yours"),)})
    assert kinds(changes) == [("RejectSpec", "k-x")]
    assert changes[0].kind == "ownership" and changes[0].problems == (Problem(A, 1, 1, "not yours"),)


def test_ownership_holds_as_a_table():
    from daemon.core.records import Rejection, RejectionKind
    from daemon.core.verdict import DELETED_BLOB, TreeEntry, UserFacts, judge, read_user
    from daemon.sync.plan import ownership_holds

    refused_edit = Rejection(A, "alice", "bob-blob", "c", "Bob", [Problem(A, 1, 1, "Bob may not")], "t",
                             RejectionKind.OWNERSHIP)
    spec_error = Rejection(A, "alice", "bad-blob", "c", "Alice", [Problem(A, 2, 1, "syntax")], "t", RejectionKind.SPEC)
    gone = Rejection(B, "alice", DELETED_BLOB, "c", "Bob", [Problem(B, 1, 1, "Bob may not delete")], "t",
                     RejectionKind.OWNERSHIP)
    cases = [
        # (files, refusals now, models, on record) -> (refused paths, kept deletions: the judge's
        # refused verdicts on paths the tree does not show)
        ([(A, "x")], {A: "no"}, [], {}, {A}, []),                              # refused now
        ([(A, "bob-blob")], {}, [], {A: refused_edit}, {A}, []),               # still exactly bob's change
        ([(A, "alice-blob")], {}, [], {A: refused_edit}, set(), []),           # the owner changed it
        ([(A, "bad-blob")], {}, [], {A: spec_error}, set(), []),               # a spec error is not held here
        ([], {B: "no"}, [model("y", B)], {}, {B}, [B]),                        # deletion refused now
        ([], {}, [model("y", B)], {B: gone}, {B}, [B]),                        # ... and it stays refused
        ([], {}, [model("y", B)], {}, set(), []),                              # deleted by the owner
        ([], {B: "no"}, [model("y", B, state="DELETING")], {}, set(), []),     # already being deleted
        ([], {"models.d/alice/c.yaml": "no"}, [], {}, set(), []),                # no model of that file: nothing held
    ]
    for files, now, models, on_record, want_refused, want_kept in cases:
        refused = ownership_holds(files, now, models, on_record)
        facts = UserFacts("alice", tuple(TreeEntry(p, b, "100644", b"model_id: m\n") for p, b in files),
                          refused=refused)
        kept = [v for v in judge(facts, read_user(facts, POLICY), {}, POLICY) if v.blob == DELETED_BLOB]
        assert (set(refused), [k.path for k in kept]) == (want_refused, want_kept), (files, now, on_record)
        assert all(k.kind == RejectionKind.OWNERSHIP and k.spec is None and k.problems == refused[k.path]
                   for k in kept)


@pytest.mark.parametrize("delta, scaled", [
    ({"num_replicas": [1, 2]}, True),
    ({"autoscaling": [{"min_replicas": 0, "max_replicas": 1}, {"min_replicas": 1, "max_replicas": 2}]}, True),
    ({"num_replicas": [1, 0], "autoscaling": [None, {"min_replicas": 0, "max_replicas": 2}]}, False),  # fixed -> auto
    ({"num_replicas": [0, 1], "autoscaling": [{"min_replicas": 0, "max_replicas": 2}, None]}, False),  # auto -> fixed
    ({"num_replicas": [1, 2], "engine_kwargs": [{}, {"max_num_seqs": 8}]}, False),
])
def test_only_a_count_or_a_range_change_is_a_scale(delta, scaled):
    from daemon.sync.plan import _scaled_only
    assert _scaled_only(delta) is scaled
