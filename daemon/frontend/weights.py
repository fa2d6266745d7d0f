"""Weights as the replica reads them: the path rules (daemon.core.spec.served_path_problem)
applied where vLLM reads, not only where argusd judged the spec.

A model or adapter folder can be swapped for a symlink into another user's tree at any time
after its spec was accepted, so the replica checks the path it actually opened (the kernel's
name for the open directory, /proc/self/fd, every symlink resolved) just before vLLM reads:

- a model folder when the replica starts, before the engine: vLLM is then given that
  resolved path;
- an adapter folder whenever it is (re)loaded. vLLM itself reads an adapter again from its
  path whenever it dropped it from its cache (more adapters in use than it holds), so vLLM
  never gets the user's folder: the replica copies the checked files into a folder of its
  own (`snapshot_adapter`) and vLLM reads only that copy. The copy's content digest names the
  weights, so changed weights are a new LoRA inside vLLM (see ArgusLLMServer).

Ray-free and vLLM-free (tests load it without either); only ArgusLLMServer uses it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import Mapping

from daemon.core.replica_contract import OWNER_ENV, ROOT_ENV
from daemon.served_paths import served_path_problem

COPY_CHUNK = 1 << 20
# Opening never waits: a pipe (or a file swapped for one) would block forever in open(2) while
# the replica holds its adapter lock. Regular files ignore O_NONBLOCK; anything else is refused.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
NOT_A_FILE = "not a regular file (a pipe, socket or device); an adapter folder holds only files and folders"


class WeightsRefusedError(Exception):
    """The weights are not the owner's to serve (or cannot be read); the message says why."""


@dataclass(frozen=True)
class Owner:
    user_id: str
    root: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Owner":
        user_id, root = environ.get(OWNER_ENV, ""), environ.get(ROOT_ENV, "")
        if not user_id or not root:
            raise WeightsRefusedError(f"argus did not say whose weights this replica serves ({OWNER_ENV}, {ROOT_ENV} "
                                 "unset in its runtime_env): nothing is loaded")
        return cls(user_id, root)


@dataclass(frozen=True)
class Snapshot:
    path: str      # the replica's own copy, which vLLM reads
    digest: str    # sha256 of each copied file's name and content digest


def _opened(fd: int) -> str:
    """The path the kernel holds for an open file: what was really opened, symlinks resolved."""
    return os.readlink(f"/proc/self/fd/{fd}")


def _check(opened: str, what: str, owner: Owner) -> None:
    problem = served_path_problem(opened, owner.user_id, owner.root)
    if problem is not None:
        raise WeightsRefusedError(f"{what}: {problem}")


def _open_folder(path: str, owner: Owner) -> tuple[int, str]:
    """The folder opened (every symlink on the way resolved first) and its checked path."""
    try:
        fd = os.open(os.path.realpath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise WeightsRefusedError(f"cannot open {path}: {exc.strerror}") from None
    opened = _opened(fd)
    try:
        _check(opened, path if opened == path else f"{path} leads to {opened}", owner)
    except WeightsRefusedError:
        os.close(fd)
        raise
    return fd, opened


def check_model_folder(path: str, owner: Owner) -> str:
    """The model folder's resolved path, checked with every symlink directly in it (vLLM
    reads the files there); raises WeightsRefusedError."""
    fd, opened = _open_folder(path, owner)
    try:
        for name in sorted(os.listdir(fd)):
            if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                target = os.path.realpath(os.path.join(opened, name))
                _check(target, f"{path}/{name} is a symlink to {target}", owner)
    finally:
        os.close(fd)
    return opened


def adapter_stamp(path: str) -> tuple:
    """A cheap fingerprint of an adapter folder as it is now (where it leads, and each file's
    identity, size and modification time): it changes when weights are written into the same
    folder or the folder is swapped, so the replica then loads it again (and checks it)."""
    real = os.path.realpath(path)
    try:
        entries = sorted(os.scandir(real), key=lambda e: e.name)
        files = [(e.name, os.path.realpath(e.path), s.st_ino, s.st_size, s.st_mtime_ns)
                 for e in entries for s in [os.stat(e.path)] if stat.S_ISREG(s.st_mode)]
    except OSError as exc:
        return (real, "unreadable", exc.errno)
    return (real, tuple(files))


def snapshot_adapter(path: str, owner: Owner, into: str) -> Snapshot:
    """Copy the adapter folder's files (a symlinked file: its checked target) into a new
    folder under `into`, named by the digest of what was copied; raises WeightsRefusedError.
    Each file is checked as opened, so a swap between the check and the read is seen."""
    folder, opened = _open_folder(path, owner)
    digest = hashlib.sha256()
    staging = tempfile.mkdtemp(prefix=".copy-", dir=into)
    try:
        for name in sorted(os.listdir(folder)):
            mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                target = os.path.realpath(os.path.join(opened, name))
                _check(target, f"{path}/{name} leads to {target}", owner)   # before opening it
                fd = os.open(target, READ_FLAGS)
            elif stat.S_ISREG(mode):
                fd = os.open(name, READ_FLAGS, dir_fd=folder)
            elif stat.S_ISDIR(mode):
                continue  # sub-folders (checkpoints, ...): vLLM reads the files at the top
            else:
                raise WeightsRefusedError(f"{path}/{name}: {NOT_A_FILE}")
            with os.fdopen(fd, "rb") as source:
                _check(_opened(source.fileno()), f"{path}/{name} leads to {_opened(source.fileno())}", owner)
                opened_mode = os.fstat(source.fileno()).st_mode
                if stat.S_ISDIR(opened_mode):
                    continue  # a symlink to a sub-folder: not read, as above
                if not stat.S_ISREG(opened_mode):   # swapped for a pipe or device after the stat
                    raise WeightsRefusedError(f"{path}/{name}: {NOT_A_FILE}")
                content = hashlib.sha256()
                with open(os.path.join(staging, name), "wb") as copy:
                    while chunk := source.read(COPY_CHUNK):
                        content.update(chunk)
                        copy.write(chunk)
                # Each name with its length, each content by its own fixed-size digest: two
                # different sets of files can never feed the same bytes to the digest.
                encoded = name.encode()
                digest.update(len(encoded).to_bytes(8, "big") + encoded + content.digest())
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise WeightsRefusedError(f"cannot read the adapter folder {path}: {exc}") from None
    except WeightsRefusedError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(folder)
    final = os.path.join(into, digest.hexdigest())
    if os.path.isdir(final):   # the same weights were copied before
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.rename(staging, final)
    return Snapshot(final, digest.hexdigest())
