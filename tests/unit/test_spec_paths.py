"""Paths: macros, allowed roots, other users, '..', symlink escapes (+ properties)."""
import os
import posixpath

import pytest
from hypothesis import given, settings, strategies as st

from daemon.core.spec import PathRejected, expand_macros, resolve_model_source

ROOT = "/private"


@pytest.mark.parametrize("source, expected", [
    ("$HOME", "/private/users/alice"),
    ("$HOME/ckpt", "/private/users/alice/ckpt"),
    ("$HOME/common/hf/Qwen", "/private/hf/Qwen"),
    ("$HOME/common/hf", "/private/hf"),
    ("$HOME/common/datasets/d", "/private/datasets/d"),
    ("$HOME/common/hfx", "/private/users/alice/common/hfx"),   # not the hf macro: segment boundary
    ("$HOMEX/a", "$HOMEX/a"),
    ("/private/hf/x", "/private/hf/x"),
])
def test_macro_expansion(source, expected):
    assert expand_macros(source, "alice", ROOT) == expected


@pytest.mark.parametrize("source, expected", [
    ("$HOME/common/hf/Qwen2-7B-Instruct", "/private/hf/Qwen2-7B-Instruct"),
    ("$HOME/ckpt/v2", "/private/users/alice/ckpt/v2"),
    ("/private/hf/org/model", "/private/hf/org/model"),
    ("/private/users/alice/m", "/private/users/alice/m"),
    ("/private//hf/./m/", "/private/hf/m"),
    ("$HOME/common/hfx/m", "/private/users/alice/common/hfx/m"),
])
def test_allowed_paths(source, expected):
    assert resolve_model_source(source, "alice", ROOT) == expected


@pytest.mark.parametrize("source, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("$HOME/../bob/m", "'..' segment"),
    ("/private/hf/../users/bob/m", "'..' segment"),
    ("..", "'..' segment"),
    ("/private/users/bob/m", "user 'bob'"),
    ("/private/users/alicex/m", "user 'alicex'"),
    ("$HOME/common/datasets/d", "outside the allowed roots"),
    ("/private/hf", "outside the allowed roots"),
    ("$HOME", "outside the allowed roots"),
    ("/private/users/alice", "outside the allowed roots"),
    ("/private", "outside the allowed roots"),
    ("/etc/passwd", "outside the allowed roots"),
    ("/privatehf/m", "outside the allowed roots"),
    ("/private/hfx/m", "outside the allowed roots"),
    ("hf/m", "not absolute"),
    ("~/m", "not absolute"),
    ("$USER/m", "unknown macro"),
    ("${HOME}/m", "unknown macro"),
    ("hf://org/model", "URL"),
    ("s3://bucket/m", "URL"),
    ("/private/hf/m\x00", "control characters"),
    ("/private/hf/m\x7f", "control characters"),
    # C1 too (U+0085 is a line break to YAML, U+009B a terminal's CSI): the rule the replica and
    # the deploy-time check run on an already-parsed path, where no YAML rule applies.
    ("/private/hf/m\x85", "control characters"),
    ("/private/hf/m\x9b2J", "control characters"),
    ("/private/hf/" + "a" * 5000, "longer than"),
])
def test_rejected_paths(source, reason):
    with pytest.raises(PathRejected, match=reason):
        resolve_model_source(source, "alice", ROOT)


def test_symlink_escape_is_rejected(tmp_path):
    root = tmp_path / "private"
    (root / "hf").mkdir(parents=True)
    (root / "users" / "alice").mkdir(parents=True)
    (root / "users" / "bob" / "secret").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "hf" / "evil")
    os.symlink(root / "users" / "bob" / "secret", root / "users" / "alice" / "bobs")
    os.symlink(root / "hf", root / "users" / "alice" / "shared")
    # As written, each is inside alice's roots; through its symlinks (read by the shell), two are not.
    from daemon.folders import path_problem
    for source in ("$HOME/common/hf/evil/m", "$HOME/bobs"):
        path = resolve_model_source(source, "alice", str(root))
        assert "leads through a symlink" in path_problem(path, "alice", str(root)), source
    # A link from a user's tree into the shared hf tree stays inside allowed roots.
    path = resolve_model_source("$HOME/shared/m", "alice", str(root))
    assert path == f"{root}/users/alice/shared/m" and path_problem(path, "alice", str(root)) is None


def _inside_allowed(path: str, root: str, user: str) -> bool:
    hf, mine = posixpath.join(root, "hf"), posixpath.join(root, "users", user)
    return any(path.startswith(base + "/") and len(path) > len(base) + 1 for base in (hf, mine))


segments = st.sampled_from(["$HOME", "$HOME/common/hf", "$HOME/common/datasets", "..", ".", "", "private",
                            "hf", "users", "alice", "bob", "datasets", "m", "$USER", "~", "common", "x..y"])
sources = st.lists(segments, min_size=0, max_size=7).map("/".join) | st.text(max_size=40)


@settings(max_examples=600, deadline=None)
@given(source=sources, lead=st.booleans())
def test_no_accepted_source_resolves_outside_allowed_roots(source, lead):
    source = ("/" + source) if lead else source
    try:
        resolved = resolve_model_source(source, "alice", ROOT)
    except PathRejected:
        return
    assert resolved == posixpath.normpath(resolved)
    assert _inside_allowed(resolved, ROOT, "alice"), (source, resolved)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.sampled_from(["hf", "users", "alice", "bob", "evil", "m", "out", "loop"]), max_size=5))
def test_no_accepted_source_escapes_through_symlinks(tmp_path_factory, parts):
    base = tmp_path_factory.mktemp("fs")
    root = base / "private"
    for d in ("hf/m", "users/alice/m", "users/bob/m"):
        (root / d).mkdir(parents=True)
    (base / "out").mkdir()
    os.symlink(base / "out", root / "hf" / "evil")
    os.symlink(root / "users" / "bob", root / "users" / "alice" / "bob")
    os.symlink(root / "users" / "alice" / "loop", root / "users" / "alice" / "loop")
    source = "/" + "/".join(["private"] + parts)
    source = str(base) + source
    from daemon.folders import path_problem
    try:
        resolved = resolve_model_source(source, "alice", str(root))
    except PathRejected:
        return
    if path_problem(resolved, "alice", str(root)) is not None:
        return   # refused through its symlinks
    real = os.path.realpath(resolved)
    assert _inside_allowed(real, os.path.realpath(root), "alice"), (source, real)


def test_a_folder_swapped_for_a_symlink_after_acceptance_is_caught_at_deploy(tmp_path):
    """The spec was accepted while models/a was alice's own folder; then it became a link into
    bob's tree. The deploy-time check (reconcile) follows the link and refuses it."""
    from daemon.folders import source_problem

    root = tmp_path / "private"
    mine, bobs = root / "users" / "alice" / "models", root / "users" / "bob" / "secret"
    (mine / "a").mkdir(parents=True)
    bobs.mkdir(parents=True)
    path = resolve_model_source("$HOME/models/a", "alice", str(root))
    assert source_problem(path, "alice", str(root)) is None
    (mine / "a").rmdir()
    os.symlink(bobs, mine / "a")
    problem = source_problem(path, "alice", str(root))
    assert problem is not None and f"leads through a symlink to {bobs}" in problem
    assert problem.endswith(f"{bobs}, outside {root}/hf/ or {root}/users/alice/ (checked again after the spec was accepted)")
    os.unlink(mine / "a")
    assert "does not exist; put the model there" in source_problem(path, "alice", str(root))


@pytest.mark.parametrize("config,gpus,problem", [
    ('{"num_attention_heads": 9}', 2, "gpus_per_replica 2 does not divide the model's 9 attention heads"),
    ('{"num_attention_heads": 32}', 4, None),
    ('{"text_config": {"num_attention_heads": 28}}', 8, "use one of 1, 2, 4, 7, 14, 28"),
    # Qwen2.5-7B: 28 heads, 4 key/value heads; 7 and 14 divide 28 but fail at load in vLLM
    ('{"num_attention_heads": 28, "num_key_value_heads": 4}', 7,
     "gpus_per_replica 7 cannot split the model's 4 key/value heads (its config.json): vLLM needs one of the two "
     "to divide the other; use one of 1, 2, 4, 28"),
    ('{"num_attention_heads": 28, "num_key_value_heads": 4}', 8,
     "does not divide the model's 28 attention heads (its config.json), so vLLM cannot split it; use one of 1, 2, 4, 28"),
    ('{"num_attention_heads": 28, "num_key_value_heads": 4}', 28, None),   # each key/value head on 7 GPUs
    ('{"num_attention_heads": 32, "num_key_value_heads": 8}', 4, None),    # 2 key/value heads a GPU
    ('{"num_attention_heads": 32, "num_key_value_heads": 8}', 16, None),
    ('{"num_attention_heads": 12, "num_key_value_heads": 8}', 6, "cannot split the model's 8 key/value heads"),
    ('{"num_attention_heads": 12, "num_key_value_heads": 8}', 3, "cannot split the model's 8 key/value heads"),
    ('{"num_attention_heads": 12, "multi_query_group_num": 2}', 3, "use one of 1, 2, 4, 6, 12"),   # ChatGLM's key
    ('{"num_attention_heads": 9}', 1, None),    # no tensor parallelism: nothing to split
    ("not json", 3, None),                     # the folder cannot say: vLLM will
    (None, 3, None),
])
def test_a_tensor_parallel_size_the_model_cannot_split_fails_at_deploy(tmp_path, config, gpus, problem):
    from daemon.folders import source_problem

    root = tmp_path / "private"
    folder = root / "hf" / "m"
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.json").write_text(config)
    found = source_problem(str(folder), "alice", str(root), gpus)
    assert (found is None) if problem is None else (problem in found), found


def test_the_shell_reads_nothing_in_a_folder_that_leads_out_of_the_roots(tmp_path):
    """The facts the judge gets: a folder (or its config.json) that leads through a symlink out
    of alice's roots is never opened, so a spec cannot make argus read a file of its choosing."""
    from daemon.folders import read_folder

    root = tmp_path / "private"
    (root / "hf" / "m").mkdir(parents=True)
    (root / "users" / "bob" / "secret").mkdir(parents=True)
    (root / "users" / "bob" / "secret" / "config.json").write_text('{"max_position_embeddings": 1}')
    os.symlink(root / "users" / "bob" / "secret", root / "hf" / "evil")
    os.symlink(root / "users" / "bob" / "secret" / "config.json", root / "hf" / "m" / "config.json")
    evil = read_folder(f"{root}/hf/evil", "alice", str(root))
    assert (evil.real, evil.is_dir, evil.config_json) == (f"{root}/users/bob/secret", False, None)
    linked = read_folder(f"{root}/hf/m", "alice", str(root))
    assert linked.is_dir and linked.config_json is None
    (root / "hf" / "m" / "config.json").unlink()
    (root / "hf" / "m" / "config.json").write_text('{"max_position_embeddings": 8}')
    assert read_folder(f"{root}/hf/m", "alice", str(root)).config_json == b'{"max_position_embeddings": 8}'


def _alice_model(tmp_path):
    root = tmp_path / "private"
    folder = root / "hf" / "m"
    folder.mkdir(parents=True)
    (root / "users" / "bob" / "secret").mkdir(parents=True)
    (root / "users" / "bob" / "secret" / "config.json").write_text('{"max_position_embeddings": 1}')
    return root, folder


def test_a_fifo_named_config_json_is_not_read_and_nothing_waits(tmp_path):
    """open(2) of a FIFO blocks until a writer comes: lint, the hook and argusd's sync hung on it.
    The read runs in a thread so a regression fails the test instead of hanging it."""
    import threading

    from daemon.folders import read_folder

    root, folder = _alice_model(tmp_path)
    os.mkfifo(folder / "config.json")
    found = []
    reader = threading.Thread(target=lambda: found.append(read_folder(str(folder), "alice", str(root))), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a folder with a FIFO named config.json blocked"
    assert found[0].is_dir and found[0].config_json is None


def test_a_config_json_larger_than_argus_reads_is_not_read(tmp_path):
    from daemon.core.folders import JSON_BYTES
    from daemon.folders import read_folder

    root, folder = _alice_model(tmp_path)
    with open(folder / "config.json", "wb") as handle:
        handle.truncate(8 << 30)     # sparse: 8 GiB that take no disk
    assert read_folder(str(folder), "alice", str(root)).config_json is None
    (folder / "config.json").write_bytes(b" " * (JSON_BYTES - 2) + b"{}")
    assert read_folder(str(folder), "alice", str(root)).config_json is not None


def test_a_folder_swapped_for_a_symlink_after_realpath_is_caught_as_opened(tmp_path, monkeypatch):
    """The swap between the check and the open: realpath() saw alice's folder, then a folder on
    the way became a symlink into bob's tree (or config.json itself became one). What the kernel
    opened is checked, so nothing of bob's is read."""
    import daemon.folders as shell

    root, folder = _alice_model(tmp_path)
    (folder / "config.json").write_text('{"max_position_embeddings": 8}')
    roots = shell.real_roots(str(root), "alice")
    assert shell._read_json(str(folder), "config.json", roots, "alice") == b'{"max_position_embeddings": 8}'
    monkeypatch.setattr(shell.os.path, "realpath", lambda p: p)   # realpath ran before the swap
    (folder / "config.json").unlink()
    os.symlink(root / "users" / "bob" / "secret" / "config.json", folder / "config.json")
    assert shell._read_json(str(folder), "config.json", roots, "alice") is None       # the file itself
    swapped = root / "hf" / "swapped"
    os.symlink(root / "users" / "bob" / "secret", swapped)
    assert shell._read_json(str(swapped), "config.json", roots, "alice") is None      # a folder on the way
