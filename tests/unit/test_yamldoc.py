"""Bad input is one clear, positioned error: never a traceback, never a hang."""
import time

import pytest

from daemon.errors import SpecError
from daemon.core.spec import parse_spec
from helpers import spec_policy
from daemon.core.yamldoc import YamlDocError, load_mapping


@pytest.mark.parametrize("data, where, message", [
    (b"", (1, 1), "file is empty"),
    (b"\n\n  \n", (1, 1), "file is empty"),
    (b"# only a comment\n", (1, 1), "file is empty"),
    (b"a: 1\n---\nb: 2\n", (2, 1), "holds one document"),
    (b"---\na: 1\n---\n", (3, 1), "holds one document"),
    (b"- a\n- b\n", (1, 1), "not a list"),
    (b"just text\n", (1, 1), "not a single value"),
    (b"a: [1,\n", (2, 1), "YAML syntax error"),
    (b"a: b: c\n", (1, 5), "YAML syntax error"),
    (b"a: 1\n\tb: 2\n", (2, 1), "YAML syntax error"),
    (b"ok: 1\nbad: \xc3\x28\n", (2, 6), "not valid UTF-8"),
    (b"a: &x 1\nb: *x\n", (1, 4), "anchors and aliases"),
    (b"a: 1\na: 2\n", (2, 1), "duplicate key 'a' (first at line 1)"),
    (b"<<: {a: 1}\n", (1, 1), "keys must be plain strings"),
    (b"? [a]\n: 1\n", (1, 3), "keys must be plain strings"),
    (b"1: a\n", (1, 1), "must be a string"),
    (b"a: !!python/name:os.system\n", (1, 4), "tag"),
    (b"a: !custom x\n", (1, 4), "tag"),
    (b"a: \x07\n", (1, 1), "YAML error"),
    # Explicit standard tags too: docs/spec.md says "no tags".
    (b"a: !!str 5\n", (1, 4), "tag '!!str' is not allowed"),
    (b"a: !!int '5'\n", (1, 4), "tag '!!int' is not allowed"),
    # Not a number: NaN never equals itself, so the model was redeployed on every commit.
    (b"engine_kwargs: {seed: .nan}\n", (1, 23), ".nan is not a finite number"),
    (b"a: -.Inf\n", (1, 4), "-.Inf is not a finite number"),
    # C1 controls: invisible or acting on a terminal (U+009B is CSI); U+0085 is a YAML line break.
    ("a: x\u0085y\n".encode(), (1, 5), "control character U+0085"),
    ("a: ok\nb: x\u009b2J\n".encode(), (2, 5), "control character U+009B"),
    # ... and the same characters written as escapes in a double-quoted string, value or key.
    (b'a: ok\nb: "x\\x85y"\n', (2, 4), "control character U+0085 (written as an escape)"),
    (b'a: "\\u009b2J"\n', (1, 4), "control character U+009B (written as an escape)"),
    (b'"k\\N": 1\n', (1, 1), "control character U+0085 (written as an escape)"),
    (b'a: {b: ["\\x9b"]}\n', (1, 9), "control character U+009B (written as an escape)"),
    # Nesting that once raised RecursionError in lint, the hook and argusd (1.2 KB, 490 deep).
    (b"a: " + b"[" * 490 + b"]" * 490 + b"\n", (1, 20), "nested more than 16 levels deep"),
    (b"a: " + b"{a: " * 990 + b"1" + b"}" * 990 + b"\n", (1, 68), "nested more than 16 levels deep"),
    (b"".join(b" " * i + b"k%d:\n" % i for i in range(300)) + b" " * 300 + b"v: 1\n", (18, 18),
     "nested more than 16 levels deep"),
])
def test_bad_documents(data, where, message):
    with pytest.raises(YamlDocError) as caught:
        load_mapping(data)
    assert (caught.value.line, caught.value.col) == where
    assert message in caught.value.message


@pytest.mark.parametrize("data, where, message", [
    # The parser notices an unclosed bracket or quote where the next construct starts: the
    # message names where it opened too, and how to close it.
    (b"model_id: a\nengine_kwargs: [1, 2\nmodel_source: x\n", (3, 13), "(the '[' at 2:16 is not closed; add ']')"),
    (b"a: {b: 1\nc: 2\n", (2, 2), "(the '{' at 1:4 is not closed; add '}')"),
    (b'a: "abc\nb: 1\n', (3, 1), "(the quote at 1:4 is not closed; add the closing quote)"),
    (b"a:\n  - 1\n b: 2\n", (3, 2), "(in the block mapping that starts at 1:1)"),
])
def test_syntax_errors_say_where_the_unclosed_construct_opened(data, where, message):
    with pytest.raises(YamlDocError) as caught:
        load_mapping(data)
    assert (caught.value.line, caught.value.col) == where
    assert caught.value.message.startswith("YAML syntax error: ") and caught.value.message.endswith(message)


def test_a_syntax_error_where_nothing_opened_elsewhere_is_the_problem_alone():
    with pytest.raises(YamlDocError) as caught:
        load_mapping(b"a: b: c\n")
    assert (caught.value.line, caught.value.col) == (1, 5)
    assert caught.value.message.startswith("YAML syntax error: mapping values are not allowed")
    assert "(" not in caught.value.message


def test_size_limit():
    with pytest.raises(YamlDocError, match="over the 1024-byte limit"):
        load_mapping(b"a: " + b"x" * 2000, max_bytes=1024)


def test_billion_laughs_is_refused_fast():
    bomb = b'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + b"".join(
        b"%s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n" % ((bytes([c]),) * 2 + (bytes([c - 1]),) * 9)
        for c in range(ord("b"), ord("k")))
    started = time.monotonic()
    with pytest.raises(YamlDocError, match="anchors and aliases"):
        load_mapping(bomb)
    assert time.monotonic() - started < 1.0


def test_bom_is_accepted_and_positions_are_one_based():
    doc = load_mapping("\ufeffmodel_id: m\nengine_kwargs:\n  max_model_len: 5\n".encode())
    assert doc.value == {"model_id": "m", "engine_kwargs": {"max_model_len": 5}}
    assert (doc.position(("engine_kwargs", "max_model_len")).line,
            doc.position(("engine_kwargs", "max_model_len")).col) == (3, 18)
    assert doc.position(("engine_kwargs", "max_model_len"), prefer_key=True).col == 3
    assert doc.position(("nope", "deeper")).line == 1


def test_spec_errors_carry_the_path():
    with pytest.raises(SpecError) as caught:
        parse_spec("models.d/alice/x.yaml", b"model_id: [\n", "alice", spec_policy())
    assert str(caught.value.problems[0]).startswith("models.d/alice/x.yaml:2:1: YAML syntax error")


def test_three_levels_and_exclamation_marks_in_strings_are_fine():
    doc = load_mapping(b"engine_kwargs: {compilation_config: {level: [1, 2]}}\nnote: 'hi!'\n")
    assert doc.value["engine_kwargs"]["compilation_config"]["level"] == [1, 2]
