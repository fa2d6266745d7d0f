"""The path rule of daemon/core/replica_contract.py with the roots read from the file system:
what a replica (daemon/frontend/weights.py) and argusd's shells call. Standard library only, for
the same reason as the contract: it runs on every Ray node."""
from __future__ import annotations

import os
import posixpath

from daemon.core.replica_contract import Roots, outside_roots


def real_roots(root: str, user_id: str) -> Roots:
    return Roots(os.path.realpath(posixpath.join(root, "hf")), os.path.realpath(posixpath.join(root, "users")),
                 os.path.realpath(posixpath.join(root, "users", user_id)))


def served_path_problem(real: str, user_id: str, root: str) -> str | None:
    """Why weights at `real` (every symlink resolved) are not `user_id`'s to serve, or None."""
    return outside_roots(real, user_id, real_roots(root, user_id))
