"""Every error says whose fault it is, and only that decides the CLI's exit code and the API's
HTTP status; both agree with the one table in docs/cli.md and docs/api.md."""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

from argusctl.common import EXIT_CODES, exit_code_for
from daemon.api.dependencies import RequestError, RequestShape
from daemon.api.http import HTTP_STATUS, status_of
from daemon.errors import (ArgusError, ClusterError, ConfigError, ConflictError, Fault, ForbiddenError, GitError,
                           NotFoundError, Problem, ProblemKind, RefusedError, SpecError, StoreError,
                           UnauthenticatedError, UsageError)

DOCS = Path(__file__).resolve().parents[2] / "docs"

# error, whose fault, argusctl exit, HTTP status, API error code
TABLE = [
    (SpecError([Problem("s", 2, 1, "y")]), Fault.INPUT, 1, 422, "spec_invalid"),
    (SpecError([Problem("s", 1, 1, "x", ProblemKind.SYNTAX), Problem("s", 2, 1, "y")]), Fault.INPUT, 1, 400,
     "yaml_invalid"),
    (SpecError([Problem("s", 2, 1, "y"), Problem("s", 3, 1, "z", ProblemKind.FORBIDDEN)]), Fault.NOT_ALLOWED, 1,
     403, "path_forbidden"),
    (RequestError(RequestShape.INVALID, "x"), Fault.INPUT, 1, 422, "invalid_request"),
    (RequestError(RequestShape.TOO_LARGE, "x"), Fault.INPUT, 1, 413, "too_large"),
    (RequestError(RequestShape.UNSUPPORTED_MEDIA_TYPE, "x"), Fault.INPUT, 1, 415, "unsupported_media_type"),
    (UsageError("x"), Fault.USAGE, 2, 400, "bad_request"),
    (UnauthenticatedError("x"), Fault.UNAUTHENTICATED, 1, 401, "unauthenticated"),
    (ForbiddenError("x"), Fault.NOT_ALLOWED, 1, 403, "forbidden"),
    (RefusedError("x"), Fault.NOT_ALLOWED, 1, 403, "forbidden"),   # the hook said no: not the environment
    (NotFoundError("x"), Fault.NOT_FOUND, 4, 404, "not_found"),
    (ConflictError("x"), Fault.CONFLICT, 6, 409, "conflict"),
    (ConfigError("x"), Fault.ENVIRONMENT, 3, 503, "unavailable"),
    (StoreError("x"), Fault.ENVIRONMENT, 3, 503, "unavailable"),
    (GitError("x"), Fault.ENVIRONMENT, 3, 503, "unavailable"),
    (ClusterError("x"), Fault.ENVIRONMENT, 3, 503, "unavailable"),
]


def all_error_classes() -> set[type]:
    """Every subclass of ArgusError in argus (each module imported that imports without Ray)."""
    import argusctl
    import daemon

    for package in (daemon, argusctl):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name.endswith("__main__"):   # runs the program
                continue
            try:
                importlib.import_module(module.name)
            except ImportError:   # the code that runs in Ray replicas needs Ray (the serving venv)
                pass
    found, todo = set(), [ArgusError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


def api_rows() -> set[tuple[int, str, str, int]]:
    """(status, code, whose fault, exit) of each row of docs/api.md's error table."""
    rows = re.findall(r"^\| (\d{3}) `(\w+)` \| ([\w ]+) \| (\d) \|", (DOCS / "api.md").read_text(), re.M)
    return {(int(status), code, fault, int(exit_)) for status, code, fault, exit_ in rows}


def cli_rows() -> dict[int, str]:
    """exit code -> the HTTP column of docs/cli.md's exit-code table."""
    return {int(exit_): http for exit_, http in
            re.findall(r"^\| (\d) \| [^|]+ \| ([^|]+) \|$", (DOCS / "cli.md").read_text(), re.M)}


def test_the_table_covers_every_error_class():
    assert all_error_classes() == {type(row[0]) for row in TABLE}


def test_both_maps_answer_every_fault():
    assert set(EXIT_CODES) == set(Fault) == set(HTTP_STATUS)


@pytest.mark.parametrize("error, fault, exit_code, status, code", TABLE,
                         ids=[f"{type(r[0]).__name__}-{r[4]}" for r in TABLE])
def test_each_error_maps_by_its_fault_as_the_docs_say(error, fault, exit_code, status, code):
    assert error.fault is fault
    assert exit_code_for(error) == exit_code
    assert status_of(error) == (status, code)
    assert (status, code, fault.value.replace("_", " "), exit_code) in api_rows()
    http = cli_rows()[exit_code]
    assert f"{status} `{code}`" in http or re.search(rf"(^|, ){status}(,|$)", http.strip()), http


def test_the_docs_list_no_mapping_the_code_does_not_make():
    made = {(status, code, fault.value.replace("_", " "), exit_code) for _, fault, exit_code, status, code in TABLE}
    assert api_rows() == made


def test_an_error_class_must_say_whose_fault_it_is():
    with pytest.raises(TypeError, match="must say whose fault it is"):
        type("Vague", (ArgusError,), {})
