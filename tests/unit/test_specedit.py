"""core.specedit: one value changes, every other byte of the user's file stays as written."""
import pytest

from daemon.core.specedit import SpecEditError, remove_top_level, set_top_level
from daemon.core.yamldoc import YamlDocError, load_mapping

SRC = "$HOME/common/hf/x"

# (style, the file as the user wrote it, the file after num_replicas is set to 3)
CASES = [
    ("block", f"model_id: m\nmodel_source: {SRC}\nnum_replicas: 1\n",
     f"model_id: m\nmodel_source: {SRC}\nnum_replicas: 3\n"),
    ("block, absent", f"model_id: m\nmodel_source: {SRC}\n",
     f"model_id: m\nmodel_source: {SRC}\nnum_replicas: 3\n"),
    ("comments everywhere", f"# my model\nmodel_id: m  # the id\nmodel_source: {SRC}\n\n"
     "num_replicas: 1   # start small\n# the end\n",
     f"# my model\nmodel_id: m  # the id\nmodel_source: {SRC}\n\nnum_replicas: 3   # start small\n# the end\n"),
    ("double-quoted keys", f'"model_id": m\n"model_source": "{SRC}"\n"num_replicas": 1\n',
     f'"model_id": m\n"model_source": "{SRC}"\n"num_replicas": 3\n'),
    ("single-quoted keys", f"'model_id': m\n'model_source': '{SRC}'\n'num_replicas': 1\n",
     f"'model_id': m\n'model_source': '{SRC}'\n'num_replicas': 3\n"),
    ("flow", f"{{model_id: m, model_source: {SRC}, num_replicas: 1}}\n",
     f"{{model_id: m, model_source: {SRC}, num_replicas: 3}}\n"),
    ("flow, absent", f"{{model_id: m, model_source: {SRC}}}\n",
     f"{{model_id: m, model_source: {SRC}, num_replicas: 3}}\n"),
    ("flow over lines, trailing comma", f"{{\n  model_id: m,\n  model_source: {SRC},\n}}\n",
     f"{{\n  model_id: m,\n  model_source: {SRC}, num_replicas: 3,\n}}\n"),
    ("JSON", f'{{"model_id": "m", "model_source": "{SRC}", "num_replicas": 1}}',
     f'{{"model_id": "m", "model_source": "{SRC}", "num_replicas": 3}}'),
    ("nested block last, 4-space indent", f"model_id: m\nmodel_source: {SRC}\nengine_kwargs:\n    max_model_len: 2048\n",
     f"model_id: m\nmodel_source: {SRC}\nengine_kwargs:\n    max_model_len: 2048\nnum_replicas: 3\n"),
    ("nested flow and sequence", f"model_id: m\nmodel_source: {SRC}\nadapters: {{max_rank: 8, users: [bob]}}\n"
     "num_replicas: 2\n",
     f"model_id: m\nmodel_source: {SRC}\nadapters: {{max_rank: 8, users: [bob]}}\nnum_replicas: 3\n"),
    ("block sequence last", f"model_id: m\nmodel_source: {SRC}\nadapters:\n  max_rank: 8\n  users:\n    - bob\n",
     f"model_id: m\nmodel_source: {SRC}\nadapters:\n  max_rank: 8\n  users:\n    - bob\nnum_replicas: 3\n"),
    ("document markers", f"---\nmodel_id: m\nmodel_source: {SRC}\n...\n",
     f"---\nmodel_id: m\nmodel_source: {SRC}\nnum_replicas: 3\n...\n"),
    ("CRLF", f"model_id: m\r\nmodel_source: {SRC}\r\n", f"model_id: m\r\nmodel_source: {SRC}\r\nnum_replicas: 3\r\n"),
    ("no newline at the end", f"model_id: m\nmodel_source: {SRC}", f"model_id: m\nmodel_source: {SRC}\nnum_replicas: 3\n"),
    ("trailing comment, no newline", f"model_id: m\nmodel_source: {SRC}\n# end",
     f"model_id: m\nmodel_source: {SRC}\nnum_replicas: 3\n# end"),
    ("explicit key", f"? num_replicas\n: 1\nmodel_id: m\nmodel_source: {SRC}\n",
     f"? num_replicas\n: 3\nmodel_id: m\nmodel_source: {SRC}\n"),
    ("BOM", f"\ufeffmodel_id: m\nmodel_source: {SRC}\nnum_replicas: 1\n",
     f"\ufeffmodel_id: m\nmodel_source: {SRC}\nnum_replicas: 3\n"),
    ("indented top level", f"  model_id: m\n  model_source: {SRC}\n", f"  model_id: m\n  model_source: {SRC}\n  num_replicas: 3\n"),
    ("multi-line plain scalar last", f"model_id: m\nmodel_source: {SRC}\nbase_model:\n  alice-202601010000-\n  b\n",
     f"model_id: m\nmodel_source: {SRC}\nbase_model:\n  alice-202601010000-\n  b\nnum_replicas: 3\n"),
    ("block scalar last", f"model_id: m\nmodel_source: |-\n  {SRC}\n", f"model_id: m\nmodel_source: |-\n  {SRC}\nnum_replicas: 3\n"),
    ("empty flow mapping", "{}\n", "{num_replicas: 3}\n"),
]


@pytest.mark.parametrize("style,before,after", CASES, ids=[c[0] for c in CASES])
def test_set_top_level_changes_that_value_only(style, before, after):
    edited = set_top_level(before, "num_replicas", 3)
    assert edited == after
    assert load_mapping(edited.encode()).value == {**load_mapping(before.encode()).value, "num_replicas": 3}
    assert set_top_level(edited, "num_replicas", 3) == edited   # idempotent


@pytest.mark.parametrize("text,where", [
    ("model_id: m\nnum_replicas: 1\nnum_replicas: 2\n", "3:1"),   # duplicate keys are not a spec
    ("- a\n- b\n", "1:1"),
    ("model_id: [\n", "2:1"),
    ("a: &x 1\nb: *x\n", "1:"),
])
def test_a_file_that_is_not_a_spec_mapping_is_refused_with_its_position(text, where):
    with pytest.raises(YamlDocError) as error:
        set_top_level(text, "num_replicas", 3)
    assert f"{error.value.line}:{error.value.col}".startswith(where)


def test_only_integers_and_booleans_are_written():
    assert set_top_level("a: 1\n", "suspended", True) == "a: 1\nsuspended: true\n"
    assert set_top_level("a: 1\nsuspended: true  # away\n", "suspended", False) == "a: 1\nsuspended: false  # away\n"
    with pytest.raises(TypeError):
        set_top_level("a: 1\n", "num_replicas", "2")
    with pytest.raises(TypeError):
        set_top_level("a: 1\n", "num_replicas", 1.5)


# (style, the file as the user wrote it, the file after suspended is removed)
REMOVALS = [
    ("block, last", f"model_id: m\nmodel_source: {SRC}\nsuspended: true\n", f"model_id: m\nmodel_source: {SRC}\n"),
    ("block, first, its comment goes with it", f"suspended: true  # until Monday\nmodel_id: m\nmodel_source: {SRC}\n",
     f"model_id: m\nmodel_source: {SRC}\n"),
    ("block, between, comment lines stay", f"# mine\nmodel_id: m\n\nsuspended: yes_not_a_bool\n# source:\nmodel_source: {SRC}\n",
     f"# mine\nmodel_id: m\n\n# source:\nmodel_source: {SRC}\n"),
    ("quoted key", f'"model_id": m\n"suspended": true\n"model_source": "{SRC}"\n', f'"model_id": m\n"model_source": "{SRC}"\n'),
    ("CRLF", f"model_id: m\r\nsuspended: true\r\nmodel_source: {SRC}\r\n", f"model_id: m\r\nmodel_source: {SRC}\r\n"),
    ("no newline at the end", f"model_id: m\nmodel_source: {SRC}\nsuspended: true", f"model_id: m\nmodel_source: {SRC}\n"),
    ("indented top level", f"  model_id: m\n  suspended: true\n  model_source: {SRC}\n", f"  model_id: m\n  model_source: {SRC}\n"),
    ("document markers", f"---\nmodel_id: m\nmodel_source: {SRC}\nsuspended: true\n...\n", f"---\nmodel_id: m\nmodel_source: {SRC}\n...\n"),
    ("BOM, first key", f"\ufeffsuspended: true\nmodel_id: m\nmodel_source: {SRC}\n", f"\ufeffmodel_id: m\nmodel_source: {SRC}\n"),
    ("explicit key", f"? suspended\n: true\nmodel_id: m\nmodel_source: {SRC}\n", f"model_id: m\nmodel_source: {SRC}\n"),
    ("nested block value", f"model_id: m\nengine_kwargs:\n    max_model_len: 2048\nmodel_source: {SRC}\n",
     f"model_id: m\nmodel_source: {SRC}\n"),
    ("flow, last", f"{{model_id: m, model_source: {SRC}, suspended: true}}\n", f"{{model_id: m, model_source: {SRC}}}\n"),
    ("flow, first", f"{{suspended: true, model_id: m, model_source: {SRC}}}\n", f"{{model_id: m, model_source: {SRC}}}\n"),
    ("flow over lines, trailing comma", f"{{\n  model_id: m,\n  suspended: true,\n  model_source: {SRC},\n}}\n",
     f"{{\n  model_id: m,\n  model_source: {SRC},\n}}\n"),
    ("JSON", f'{{"model_id": "m", "suspended": true, "model_source": "{SRC}"}}', f'{{"model_id": "m", "model_source": "{SRC}"}}'),
    ("the only entry", "{suspended: true}\n", "{}\n"),
    ("absent: unchanged", f"model_id: m\nmodel_source: {SRC}\n", f"model_id: m\nmodel_source: {SRC}\n"),
]


@pytest.mark.parametrize("style,before,after", REMOVALS, ids=[c[0] for c in REMOVALS])
def test_remove_top_level_removes_that_entry_only(style, before, after):
    key = "engine_kwargs" if style == "nested block value" else "suspended"
    edited = remove_top_level(before, key)
    assert edited == after
    assert load_mapping(edited.encode()).value == {k: v for k, v in load_mapping(before.encode()).value.items() if k != key}
    assert remove_top_level(edited, key) == edited   # idempotent


def test_remove_top_level_refuses_a_bad_file_with_its_position():
    with pytest.raises(YamlDocError) as error:
        remove_top_level("model_id: m\nsuspended: true\nsuspended: false\n", "suspended")
    assert (error.value.line, error.value.col) == (3, 1)

