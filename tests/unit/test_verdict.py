"""The one judge (core/verdict.py) as a table: (a user's files, who may change them, what is on
record, the folders' facts) -> the verdict on each file. lint, the pre-receive hook, argusd's
sync and the API's writes all show this verdict (tests/integration/test_one_verdict.py holds
the three shells to it on a real repo)."""
import json

import pytest

from daemon.core.folders import FolderFacts, context_problem, model_limit
from daemon.core.records import RejectionKind
from daemon.core.replica_contract import lexical_roots
from daemon.core.verdict import (TreeEntry, UserFacts, contested, folders_to_read, judge, read_user,
                                 recorded_before)
from daemon.errors import Problem, ProblemKind
from helpers import spec_policy

ROOT = "/private"
POLICY = spec_policy(root=ROOT)
A, B, C = "models.d/alice/a.yaml", "models.d/alice/b.yaml", "models.d/alice/c.yaml"
MODEL = f"{ROOT}/hf/m"


def spec(model_id="m", extra=""):
    return f"model_id: {model_id}\nmodel_source: $HOME/common/hf/m\n{extra}"


def entry(path, text, mode="100644"):
    return TreeEntry(path, f"blob-{path}", mode, text.encode() if text is not None else None)


def folder(config=None, real=MODEL, is_dir=True):
    return FolderFacts(MODEL, real, lexical_roots(ROOT, "alice"), is_dir=is_dir,
                       config_json=json.dumps(config).encode() if config is not None else None)


def verdicts(entries, *, user="alice", known=True, refused=None, recorded=None, folders=None):
    facts = UserFacts(user, tuple(entries), known, refused or {}, recorded or {})
    readings = read_user(facts, POLICY)
    return {v.path: v for v in judge(facts, readings, folders or {}, POLICY)}


def only(found):
    """path -> [(line, col, message start, kind)] of each refused file; applied files map to []."""
    return {p: [(q.line, q.col, q.message, q.kind) for q in v.problems] for p, v in found.items()}


NEW_DUP = "model_id 'm' is also defined in {}; each model needs its own model_id"
KEPT_DUP = ("model_id 'm' is already served from {0}; this file cannot take it over: give it its own model_id, "
            "or change {0} instead")
LIMIT = ("engine_kwargs.max_model_len 9000 is above the model's own limit of 8192 tokens (max_position_embeddings "
         "8192 in its config.json); vLLM refuses to start with it: use at most 8192, or remove max_model_len")

CASES = [
    # name, entries, options, expected {path: [(line, col, message, kind)]}
    ("a valid spec is applied", [entry(A, spec())], {}, {A: []}),
    ("a user id argus does not take", [entry("models.d/Al/a.yaml", spec())], {"user": "Al"},
     {"models.d/Al/a.yaml": [(1, 1, "user id 'Al' is not valid: use 1-32 lowercase letters, digits, '_' or '-', "
                              "starting with a letter (the directory name under models.d/)", ProblemKind.INVALID)]}),
    ("a user the config does not name", [entry(A, spec())], {"known": False},
     {A: [(1, 1, "user 'alice' is not known to this platform; an operator adds users to the config's users: "
           "section", ProblemKind.INVALID)]}),
    ("a change refused for its author: that alone is said", [entry(A, "model_id: [\n")],
     {"refused": {A: (Problem(A, 1, 1, "bob may not"),)}}, {A: [(1, 1, "bob may not", ProblemKind.INVALID)]}),
    ("a symlink", [entry(A, spec(), mode="120000")], {},
     {A: [(1, 1, "symlinks are not allowed in models.d; commit the file itself", ProblemKind.INVALID)]}),
    ("git has no content", [entry(A, None)], {},
     {A: [(1, 1, "git has no content for this file (object blob-models. is missing); commit the file again",
           ProblemKind.INVALID)]}),
    ("two new files with one model_id: both refused, each naming the other",
     [entry(A, spec()), entry(B, "# b\n" + spec())], {},
     {A: [(1, 11, NEW_DUP.format(B), ProblemKind.INVALID)], B: [(2, 11, NEW_DUP.format(A), ProblemKind.INVALID)]}),
    ("a newcomer claiming a recorded model_id is refused; the model keeps serving",
     [entry(A, spec()), entry(B, spec())], {"recorded": {"m": A}},
     {A: [], B: [(1, 11, KEPT_DUP.format(A), ProblemKind.INVALID)]}),
    ("... whichever path sorts first", [entry(A, spec()), entry(B, spec()), entry(C, spec())], {"recorded": {"m": B}},
     {A: [(1, 11, KEPT_DUP.format(B), ProblemKind.INVALID)], B: [], C: [(1, 11, KEPT_DUP.format(B), ProblemKind.INVALID)]}),
    ("a broken recorded file still holds its model_id",
     [entry(A, spec(extra="num_replicas: 0\n")), entry(B, spec())], {"recorded": {"m": A}},
     {A: [(3, 15, "num_replicas input should be greater than or equal to 1, got 0", ProblemKind.INVALID)],
      B: [(1, 11, KEPT_DUP.format(A), ProblemKind.INVALID)]}),
    ("a refused change the tree no longer shows (a deletion) is refused all the same", [entry(A, spec())],
     {"refused": {B: (Problem(B, 1, 1, "bob may not delete"),)}},
     {A: [], B: [(1, 1, "bob may not delete", ProblemKind.INVALID)]}),
    ("a file refused for its author claims nothing", [entry(A, spec()), entry(B, spec())],
     {"refused": {B: (Problem(B, 1, 1, "bob may not"),)}}, {A: [], B: [(1, 1, "bob may not", ProblemKind.INVALID)]}),
    ("a folder that leads out of the roots through a symlink", [entry(A, spec())],
     {"folders": {MODEL: folder(real="/etc")}},
     {A: [(2, 15, f"model_source {MODEL} leads through a symlink to /etc, outside {ROOT}/hf/ or {ROOT}/users/alice/",
           ProblemKind.FORBIDDEN)]}),
    ("a folder that leads into another user's tree", [entry(A, spec())],
     {"folders": {MODEL: folder(real=f"{ROOT}/users/bob/m")}},
     {A: [(2, 15, f"model_source {MODEL} leads through a symlink to {ROOT}/users/bob/m, outside {ROOT}/hf/ or "
           f"{ROOT}/users/alice/", ProblemKind.FORBIDDEN)]}),
    ("max_model_len above the model's own limit", [entry(A, spec(extra="engine_kwargs:\n  max_model_len: 9000\n"))],
     {"folders": {MODEL: folder({"max_position_embeddings": 8192})}}, {A: [(4, 18, LIMIT, ProblemKind.INVALID)]}),
    ("max_model_len within it", [entry(A, spec(extra="engine_kwargs:\n  max_model_len: 8192\n"))],
     {"folders": {MODEL: folder({"max_position_embeddings": 8192})}}, {A: []}),
    ("GPUs the model's attention heads cannot be split across", [entry(A, spec(extra="gpus_per_replica: 2\n"))],
     {"folders": {MODEL: folder({"num_attention_heads": 9})}},
     {A: [(3, 19, "gpus_per_replica 2 does not divide the model's 9 attention heads (its config.json), so vLLM "
           "cannot split it; use one of 1, 3, 9", ProblemKind.INVALID)]}),
    ("no folder here: nothing to judge it by (argusd says so at deploy)",
     [entry(A, spec(extra="engine_kwargs:\n  max_model_len: 9000\n"))], {"folders": {MODEL: folder(is_dir=False)}},
     {A: []}),
    ("an adapter's folder holds no model config", [entry(A, spec(extra="base_model: x\n"))],
     {"folders": {MODEL: folder({"max_position_embeddings": 8})}}, {A: []}),
]


@pytest.mark.parametrize("name, entries, options, expected", CASES, ids=[c[0] for c in CASES])
def test_the_verdict(name, entries, options, expected):
    found = verdicts(entries, **options)
    assert only(found) == expected
    for path, problems in expected.items():
        v = found[path]
        assert v.applied == (not problems)
        assert v.kind == (None if not problems else
                          RejectionKind.OWNERSHIP if path in options.get("refused", {}) else RejectionKind.SPEC)


def test_an_adapter_spec_does_not_take_model_fields_and_the_base_model_wins_no_duplicate():
    found = verdicts([entry(A, "model_id: t\nbase_model: m\nmodel_source: $HOME/a\n"), entry(B, spec())])
    assert found[A].applied and found[B].applied


def test_the_folders_to_read_are_those_of_specs_that_passed_the_rules_as_written():
    facts = UserFacts("alice", (entry(A, spec()), entry(B, "model_id: b\nmodel_source: /etc\n"),
                                entry(C, "model_id: [\n")))
    assert folders_to_read(read_user(facts, POLICY)) == [MODEL]   # /etc is never looked at


def test_a_dispute_is_settled_by_what_the_files_named_before():
    facts = UserFacts("alice", (entry(A, spec()), entry(B, spec()), entry(C, spec("n"))))
    readings = read_user(facts, POLICY)
    disputes = contested(readings, {})
    assert disputes == {"m": [A, B]}
    assert contested(readings, {"m": B}) == {}
    assert recorded_before({A: None, B: "m"}, disputes) == {"m": B}     # b held it before a was added
    assert recorded_before({A: "m", B: "m"}, disputes) == {}            # both did: nobody is on record
    assert recorded_before({}, disputes) == {}                          # both are new


QWEN_YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}   # the Qwen2.5 recipe
LINEAR_2 = {"rope_type": "linear", "factor": 2}


@pytest.mark.parametrize("config, under_029, under_032", [
    ({"max_position_embeddings": 8192}, 8192, 8192),
    ({"max_position_embeddings": 8192, "n_positions": 4096}, 4096, 4096),            # the smallest key
    ({"max_position_embeddings": 8192, "model_max_length": 16384}, 16384, 16384),      # model_max_length wins
    ({"text_config": {"max_position_embeddings": 4096}}, 4096, 4096),                 # a multimodal model's text part
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 4.0}}, 16384, 16384),
    ({"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "dynamic", "factor": 2}}, 8192, 8192),
    ({"max_position_embeddings": 131072, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, 131072, 131072),
    # yarn: 0.29 takes original_max_position_embeddings x factor, 0.32 the length as it is
    ({"max_position_embeddings": 32768, "rope_scaling": QWEN_YARN}, 131072, 32768),
    ({"max_position_embeddings": 131072, "rope_scaling": QWEN_YARN}, 131072, 131072),
    ({"max_position_embeddings": 32768, "rope_scaling": {"type": "yarn", "factor": 4.0}}, 131072, 32768),
    # the DeepSeek variants: multiplied by 0.29, already scaled for 0.32
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "deepseek_yarn", "factor": 40}}, 163840, 4096),
    ({"max_position_embeddings": 4096, "rope_scaling": {"rope_type": "deepseek_llama_scaling", "factor": 2}},
     8192, 4096),
    ({"max_position_embeddings": 4096, "rope_scaling": {"rope_type": "longrope", "factor": 32}}, 4096, 4096),
    ({"model_type": "gemma3", "max_position_embeddings": 131072, "rope_scaling": {"factor": 8.0}}, 131072, 131072),
    ({"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", "max_position_embeddings": 131072,
                                              "rope_scaling": {"rope_type": "linear", "factor": 8.0}}},
     131072, 131072),
    ({"max_position_embeddings": 4096, "rope_parameters": {"full_attention": LINEAR_2,
                                                           "sliding_attention": {"rope_type": "default"}}}, 8192, 8192),
    # vLLM reads the text config's RoPE parameters, not the top level's
    ({"text_config": {"max_position_embeddings": 4096, "rope_scaling": LINEAR_2}}, 8192, 8192),
    ({"rope_scaling": LINEAR_2, "text_config": {"max_position_embeddings": 4096}}, 4096, 4096),
    ({"hidden_size": 64}, None, None),       # no key vLLM reads: vLLM takes what is asked
    ({"max_position_embeddings": True}, None, None),
    (None, None, None),
])
def test_the_models_own_limit_as_each_vllm_derives_it_and_argus_takes_the_larger(config, under_029, under_032):
    from daemon.core.folders import ROPE_RULES, _limit_under, _rope_parameters, text_config

    found = model_limit(config)
    assert (found.tokens if found else None) == (max(under_029, under_032) if under_029 else None)
    text = text_config(config or {})
    if found is None or "gemma3" in str(text.get("model_type", config.get("model_type", ""))):
        return
    lengths = [v for k, v in text.items() if k in ("max_position_embeddings", "n_positions")]
    base = text.get("model_max_length", min(lengths))
    by_version = {rule.vllm: _limit_under(rule, base, "k", _rope_parameters(text)).tokens for rule in ROPE_RULES}
    assert by_version == {"0.29": under_029, "0.32": under_032}


def test_max_model_len_over_the_limit_but_within_model_max_length_is_allowed_as_vllm_does():
    assert context_problem({"max_model_len": 9000}, {"max_position_embeddings": 8192, "model_max_length": 9000}) is None
    assert context_problem({"max_model_len": 9001}, {"max_position_embeddings": 8192}) is not None
    assert context_problem({}, {"max_position_embeddings": 8}) is None


def test_the_qwen_recipes_run_on_vllm_029_so_argus_takes_them():
    model = {"max_position_embeddings": 32768}
    assert context_problem({"max_model_len": 131072}, {**model, "rope_scaling": QWEN_YARN}) is None
    assert context_problem({"max_model_len": 131073}, {**model, "rope_scaling": QWEN_YARN}) is not None
    # the same recipe as an engine argument (vLLM applies hf_overrides to config.json first)
    overrides = {"rope_scaling": {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 32768}}
    assert context_problem({"max_model_len": 131072, "hf_overrides": overrides}, model) is None
    assert context_problem({"max_model_len": 131072, "hf_overrides": {"max_position_embeddings": 131072}}, model) is None
    # overrides of keys that leave the length alone change nothing
    assert context_problem({"max_model_len": 131072, "hf_overrides": {"rope_theta": 1e6}}, model) is not None


def test_a_multimodal_models_text_config_says_its_length_and_its_scaling():
    config = {"text_config": {"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2}}}
    assert context_problem({"max_model_len": 8192}, config) is None
    assert context_problem({"max_model_len": 8193}, config) is not None
    assert context_problem({"max_model_len": 9000}, {"text_config": {"max_position_embeddings": 8192,
                                                                      "model_max_length": 9000}}) is None


def test_a_file_that_breaks_the_reader_is_refused_and_argusd_logs_why(monkeypatch, caplog):
    import logging

    import daemon.core.verdict as verdict
    from daemon.verdicts import judge_files

    def broken(*_):
        raise RecursionError("deep")

    monkeypatch.setattr(verdict, "read_spec", broken)
    facts = UserFacts("alice", (entry(A, spec()),))
    (found,) = judge_files(facts, POLICY, log=logging.getLogger("argus.sync"))
    assert not found.applied and found.problems == (
        Problem(A, 1, 1, "argus could not read this file (RecursionError); simplify it, and report it to the operators"),)
    assert f"reading {A} failed" in caplog.text and "RecursionError: deep" in caplog.text


@pytest.mark.parametrize("data", [b"[" * 100000, b'{"a": ' * 100000, b"not json", b"[1]", None])
def test_a_config_json_argus_cannot_take_as_an_object_is_judged_without(data):
    """Deeper than the parser goes raised RecursionError out of the judge (and the deploy check)."""
    from daemon.core.folders import json_object, model_folder_problem

    assert json_object(data) is None
    facts = FolderFacts(MODEL, MODEL, lexical_roots(ROOT, "alice"), is_dir=True, config_json=data)
    assert model_folder_problem(facts, 2) is None


def test_an_earlier_version_that_breaks_the_reader_names_no_model_id(monkeypatch, caplog):
    """A dispute is settled by what the files named before; an earlier version that breaks the
    reader (hook, lint) named nothing, so nobody is on record: both are refused, no traceback."""
    import logging

    import daemon.verdicts as shell

    def broken(path, data, *_):
        if data == b"old":
            raise RecursionError("deep")
        return real(path, data, *_)

    real = shell.read_spec
    monkeypatch.setattr(shell, "read_spec", broken)
    facts = UserFacts("alice", (entry(A, spec()), entry(B, spec())))
    found = shell.judge_files(facts, POLICY, before=lambda paths: {p: b"old" for p in paths},
                              log=logging.getLogger("argus.sync"))
    assert [(v.path, [q.message for q in v.problems]) for v in found] == [
        (A, [NEW_DUP.format(B)]), (B, [NEW_DUP.format(A)])]
    assert f"reading the earlier {A} failed" in caplog.text and "RecursionError: deep" in caplog.text
