"""Where specs live in the GitOps repo and which tree entries argus reads: one wording per
rule, used by `argusctl lint`, the pre-receive hook and argusd alike."""
from __future__ import annotations

MODELS_DIR = "models.d"
SPEC_SUFFIXES = (".yaml", ".yml")
SYMLINK_MODE = "120000"
FILE_MODES = ("100644", "100755")  # what argus reads; links, submodules and the like are refused

WRONG_DEPTH = f"specs live at {MODELS_DIR}/<user_id>/<name>.yaml; move this file there"
SYMLINK = f"symlinks are not allowed in {MODELS_DIR}; commit the file itself"
NOT_A_FILE = f"submodules and other non-file entries are not allowed in {MODELS_DIR}; commit the file itself"


def unknown_user(user: str) -> str:
    return f"user {user!r} is not known to this platform; an operator adds users to the config's users: section"


def duplicate_model_id(model_id: str, others: list[str]) -> str:
    return f"model_id {model_id!r} is also defined in {', '.join(others)}; each model needs its own model_id"


def unreadable(exc: BaseException) -> str:
    """A file that broke the reader itself: refused, never a traceback that stops a process."""
    return f"argus could not read this file ({type(exc).__name__}); simplify it, and report it to the operators"


def entry_problem(mode: str) -> str | None:
    """Why a tree entry with this git mode cannot be a spec, or None for a regular file."""
    if mode in FILE_MODES:
        return None
    return SYMLINK if mode == SYMLINK_MODE else NOT_A_FILE


def is_judged(path: str, mode: str) -> bool:
    """Whether argus judges this entry under models.d/: a spec by its name, or any entry that is
    not a regular file (a submodule, a symlink), which is refused whatever its name or depth."""
    return is_spec_path(path) or (path.startswith(MODELS_DIR + "/") and mode not in FILE_MODES)


def stray_problem(path: str, mode: str) -> str | None:
    """Why an entry under models.d/ but not at <user_id>/<name> is refused; None: argus ignores it
    (a README.md beside the user directories)."""
    if not path.startswith(MODELS_DIR + "/"):
        return None
    return entry_problem(mode) or (WRONG_DEPTH if is_spec_path(path) else None)


def user_of(path: str) -> str | None:
    """`models.d/<user>/<name>` -> user; None for any other depth."""
    parts = path.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == MODELS_DIR else None


def is_spec_path(path: str) -> bool:
    """Whether a path under models.d/ is one argus reads (YAML, not hidden)."""
    name = path.rsplit("/", 1)[-1]
    return path.startswith(MODELS_DIR + "/") and name.endswith(SPEC_SUFFIXES) and not name.startswith(".")
