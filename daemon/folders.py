"""The shell that reads a model or adapter folder into core.folders.FolderFacts: symlinks
resolved, config.json and adapter_config.json read. It reads a folder's files only once its
real path is inside its owner's roots, so a spec can never make argusd or the hook read a path
of the user's choosing; the core rules then judge the facts."""
from __future__ import annotations

import os
import posixpath
import stat

from daemon.core.folders import (ADAPTER_CONFIG, CONFIG_JSON, JSON_BYTES, AdapterReading,
                                 AdapterRefused, FolderFacts, adapter_reading)
from daemon.core.replica_contract import Roots, outside_roots
from daemon.core.spec import CHECKED_AGAIN, path_problem as path_rule, source_problem as source_rule
from daemon.served_paths import real_roots


# Opening never waits and never follows a last symlink: a FIFO named config.json would block
# open(2) forever (lint, the hook, argusd's sync and the API with it). Regular files ignore
# O_NONBLOCK; anything else is not read.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def _opened(fd: int) -> str:
    """The path the kernel opened for `fd`: a directory on the way swapped for a symlink after
    realpath() shows here, not in the name that was asked for."""
    return os.readlink(f"/proc/self/fd/{fd}")


def _read_json(folder_real: str, name: str, roots: Roots, user_id: str) -> bytes | None:
    """A JSON file of the folder, when it is a regular file of at most JSON_BYTES that leads
    nowhere outside the roots, as opened (None otherwise: the rules then judge without it)."""
    real = os.path.realpath(posixpath.join(folder_real, name))
    if outside_roots(real, user_id, roots) is not None:
        return None
    try:
        fd = os.open(real, READ_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_size > JSON_BYTES
                or outside_roots(_opened(fd), user_id, roots) is not None):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(JSON_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_folder(path: str, user_id: str, root: str, contents: bool = True) -> FolderFacts:
    """What argus may know of the folder at `path` (a model_source that passed the lexical path
    rules). Outside the owner's roots, through symlinks, nothing in it is opened; `contents`
    False: where it leads, and nothing else (the path rules need no more)."""
    roots = real_roots(root, user_id)
    real = os.path.realpath(path)
    if not contents or outside_roots(real, user_id, roots) is not None:
        return FolderFacts(path, real, roots)
    if not os.path.isdir(real):
        return FolderFacts(path, real, roots)
    try:
        names = sorted(os.listdir(real))
    except OSError as exc:
        return FolderFacts(path, real, roots, is_dir=True, read_error=exc.strerror or str(exc))
    links = tuple((posixpath.join(path, n), os.path.realpath(posixpath.join(real, n)))
                  for n in names if os.path.islink(posixpath.join(real, n)))
    return FolderFacts(path, real, roots, is_dir=True,
                       config_json=_read_json(real, CONFIG_JSON, roots, user_id) if CONFIG_JSON in names else None,
                       adapter_config_json=(_read_json(real, ADAPTER_CONFIG, roots, user_id)
                                            if ADAPTER_CONFIG in names else None),
                       links=links)


# The rules as argusd's reconcile loop asks them, by path: read the facts, then judge.

def path_problem(path: str, user_id: str, root: str) -> str | None:
    """Why a folder accepted earlier breaks the path rules now, or None."""
    found = path_rule(read_folder(path, user_id, root, contents=False), user_id, root)
    return f"{found}{CHECKED_AGAIN}" if found is not None else None


def source_problem(path: str, user_id: str, root: str, gpus_per_replica: int = 1) -> str | None:
    """Why a model folder accepted earlier cannot be deployed now, or None."""
    return source_rule(read_folder(path, user_id, root), user_id, root, gpus_per_replica)


def read_adapter(path: str, user_id: str, root: str) -> AdapterReading:
    """An adapter folder's adapter_config.json, or why it cannot be served."""
    facts = read_folder(path, user_id, root)
    found = path_rule(facts, user_id, root)
    if found is not None:
        return AdapterRefused(f"{found}{CHECKED_AGAIN}")
    return adapter_reading(facts, user_id)

