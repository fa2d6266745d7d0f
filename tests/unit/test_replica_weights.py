"""The replica's side of the path rules (daemon/frontend/weights.py), on real folders and
symlinks: what the replica opens is checked, vLLM gets only checked paths or the replica's own
copies, and a copy's digest changes exactly when the weights do. Loaded from its file: the
daemon.frontend package imports Ray, which the dev venv does not have."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from daemon.served_paths import served_path_problem

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("replica_weights", REPO / "daemon" / "frontend" / "weights.py")
weights = importlib.util.module_from_spec(_spec)
sys.modules["replica_weights"] = weights   # dataclasses look their module up
_spec.loader.exec_module(weights)


@pytest.fixture
def root(tmp_path):
    for folder in ("hf/m", "users/alice/a", "users/eve/a", "elsewhere/a"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "adapter_model.safetensors").write_bytes(folder.encode())
        (tmp_path / folder / "adapter_config.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize("real, refused", [
    ("hf/m", None),
    ("users/alice/a", None),
    ("users/eve/a", "in user 'eve''s tree, not alice's"),
    ("elsewhere/a", "is outside"),
    ("users/alice", "is outside"),   # the tree itself is not a model folder
])
def test_served_path_rule(root, real, refused):
    problem = served_path_problem(str(root / real), "alice", str(root))
    assert problem is None if refused is None else refused in problem


def test_a_model_folder_is_checked_as_opened_and_vllm_gets_the_resolved_path(root):
    owner = weights.Owner("alice", str(root))
    (root / "users/alice/link").symlink_to(root / "hf/m")
    assert weights.check_model_folder(str(root / "users/alice/link"), owner) == str(root / "hf/m")
    (root / "users/alice/swapped").symlink_to(root / "users/eve/a")
    with pytest.raises(weights.WeightsRefusedError, match="leads to .*users/eve/a.*in user 'eve'"):
        weights.check_model_folder(str(root / "users/alice/swapped"), owner)
    (root / "users/alice/a/model.safetensors").symlink_to(root / "users/eve/a/adapter_model.safetensors")
    with pytest.raises(weights.WeightsRefusedError, match="model.safetensors is a symlink to"):
        weights.check_model_folder(str(root / "users/alice/a"), owner)
    with pytest.raises(weights.WeightsRefusedError, match="cannot open"):
        weights.check_model_folder(str(root / "users/alice/missing"), owner)


def test_without_an_owner_nothing_is_loaded():
    with pytest.raises(weights.WeightsRefusedError, match="ARGUS_WEIGHTS_OWNER"):
        weights.Owner.from_env({})


def test_an_adapter_is_copied_checked_and_named_by_its_content(root, tmp_path_factory):
    owner, copies = weights.Owner("alice", str(root)), str(tmp_path_factory.mktemp("copies"))
    folder = root / "users/alice/a"
    first = weights.snapshot_adapter(str(folder), owner, copies)
    assert sorted(os.listdir(first.path)) == ["adapter_config.json", "adapter_model.safetensors"]
    assert weights.snapshot_adapter(str(folder), owner, copies) == first   # same weights, same copy
    stamp = weights.adapter_stamp(str(folder))
    (folder / "adapter_model.safetensors").write_bytes(b"new weights, same folder")
    assert weights.adapter_stamp(str(folder)) != stamp
    second = weights.snapshot_adapter(str(folder), owner, copies)
    assert second.digest != first.digest and second.path != first.path
    assert Path(first.path, "adapter_model.safetensors").read_bytes() == b"users/alice/a"   # the old copy stays
    # The folder swapped for a symlink to another user's adapter: refused, nothing copied.
    os.rename(folder, root / "users/alice/a-old")
    folder.symlink_to(root / "users/eve/a")
    assert weights.adapter_stamp(str(folder)) != stamp
    with pytest.raises(weights.WeightsRefusedError, match="in user 'eve'"):
        weights.snapshot_adapter(str(folder), owner, copies)
    # A file in the folder that is a symlink into another user's tree: refused too.
    folder.unlink()
    os.rename(root / "users/alice/a-old", folder)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.safetensors").symlink_to(root / "users/eve/a/adapter_model.safetensors")
    with pytest.raises(weights.WeightsRefusedError, match="adapter_model.safetensors leads to .*users/eve"):
        weights.snapshot_adapter(str(folder), owner, copies)
    assert sorted(os.listdir(copies)) == sorted([os.path.basename(first.path), os.path.basename(second.path)])


def _snapshot_within(seconds: float, *args) -> object:
    """snapshot_adapter's result or exception, run in a thread so a blocking open cannot hang
    the test: a call still running after `seconds` fails it."""
    import threading
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(weights.snapshot_adapter(*args))
        except Exception as exc:   # noqa: BLE001 - handed to the test
            outcome.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "snapshot_adapter blocked (opening a pipe)"
    return outcome[0]


@pytest.mark.parametrize("how", ["a pipe in the folder", "a symlink to a pipe in the owner's tree"])
def test_a_pipe_in_an_adapter_folder_is_refused_at_once(root, tmp_path_factory, how):
    owner, copies = weights.Owner("alice", str(root)), str(tmp_path_factory.mktemp("copies"))
    folder = root / "users/alice/a"
    pipe = folder / "adapter_model.safetensors" if how == "a pipe in the folder" else root / "users/alice/pipe"
    (folder / "adapter_model.safetensors").unlink()
    os.mkfifo(pipe)
    if pipe.parent != folder:
        (folder / "adapter_model.safetensors").symlink_to(pipe)
    try:
        outcome = _snapshot_within(5, str(folder), owner, copies)
    finally:   # a reader still blocked in open(2) (the old code) is let go by a writer
        try:
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert isinstance(outcome, weights.WeightsRefusedError), outcome
    assert "adapter_model.safetensors: not a regular file" in str(outcome)
    assert os.listdir(copies) == []   # nothing half-copied is left


def test_different_files_never_share_a_digest(root, tmp_path_factory):
    # Names and contents hashed without lengths: {a: "X", b: "Y"} and {a: "Xb\0Y"} fed the
    # same bytes, so different weights would have been one LoRA inside vLLM.
    owner, copies = weights.Owner("alice", str(root)), str(tmp_path_factory.mktemp("copies"))
    two, one = root / "users/alice/two", root / "users/alice/one"
    two.mkdir()
    one.mkdir()
    (two / "a").write_bytes(b"X")
    (two / "b").write_bytes(b"Y")
    (one / "a").write_bytes(b"Xb\0Y")
    assert weights.snapshot_adapter(str(two), owner, copies).digest != weights.snapshot_adapter(str(one), owner, copies).digest
