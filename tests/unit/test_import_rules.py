"""The layout says where code runs; these rules keep it true (read from the code itself)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIDE_EFFECTS = {"sqlite3", "subprocess", "git", "ray", "vllm", "torch", "urllib", "http", "socket",
                "requests", "fastapi", "watchdog", "threading"}


def modules() -> dict[str, Path]:
    found = {}
    for package in ("daemon", "argusctl"):
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """Every module `name` imports, at any depth of the file (lazy imports in functions too)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out |= {f"{module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return out


MODULES = modules()
IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def test_the_layout_has_the_packages_the_docs_name():
    for package in ("daemon.core", "daemon.sync", "daemon.serving", "daemon.api", "argusctl.ops"):
        assert package in MODULES, package


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("daemon.core")))
def test_core_is_pure(name):
    bad = {m for m in IMPORTS[name] if _top(m) in SIDE_EFFECTS}
    assert not bad, f"{name} imports {bad}: the core takes data and returns data"
    upward = {m for m in IMPORTS[name] if m.startswith("daemon.") and not m.startswith(("daemon.core", "daemon.errors"))}
    assert not upward, f"{name} imports {upward}: the core imports only itself and daemon.errors"


def test_sync_and_serving_do_not_import_each_other():
    for name, imported in IMPORTS.items():
        if name.startswith("daemon.sync"):
            assert not any(m.startswith("daemon.serving") for m in imported), name
        if name.startswith("daemon.serving"):
            assert not any(m.startswith("daemon.sync") for m in imported), name


# What runs inside Ray replicas; of it argusd imports only the names they share (Ray-free).
REPLICAS = "daemon.replicas"
SHARED_NAMES = "daemon.replicas.names"
RAY_FREE_REPLICA_MODULES = {REPLICAS, SHARED_NAMES, "daemon.replicas.weights"}


def _in_replicas(name: str) -> bool:
    return name == REPLICAS or name.startswith(REPLICAS + ".")


def test_only_the_replicas_import_ray_or_vllm():
    for name, imported in IMPORTS.items():
        if not _in_replicas(name) or name in RAY_FREE_REPLICA_MODULES:
            assert not any(_top(m) in ("ray", "vllm", "torch") for m in imported), name


def test_argusd_imports_of_the_replica_code_only_the_shared_names():
    for name, imported in IMPORTS.items():
        if not _in_replicas(name):
            reached = {m for m in imported if _in_replicas(m)}
            assert all(m == SHARED_NAMES or m.startswith(SHARED_NAMES + ".") for m in reached), (name, reached)


def test_the_shared_names_are_standard_library_only():
    assert {_top(m) for m in IMPORTS[SHARED_NAMES]} <= {"__future__"}


def test_the_replica_contract_is_standard_library_only():
    allowed = {"__future__", "os", "posixpath"}
    assert {_top(m) for m in IMPORTS["daemon.core.replica_contract"]} <= allowed


def test_the_replicas_need_nothing_else_of_argus_and_keep_ray_private_names_in_one_place():
    # It is imported on every Ray node from the Serve config; argus's other modules need not be there.
    for name, imported in IMPORTS.items():
        if _in_replicas(name):
            # ...but the stdlib-only contract it shares with argusd (environment names, the path rule).
            assert all(m.startswith((REPLICAS, "daemon.core.replica_contract"))
                       for m in imported if _top(m) in ("daemon", "argusctl")), name
            if name != "daemon.replicas.ray_private":
                assert not any("._internal" in m or "._private" in m for m in imported), name


def test_daemon_never_imports_argusctl_and_ops_have_no_typer():
    for name, imported in IMPORTS.items():
        if name.startswith("daemon"):
            assert not any(_top(m) == "argusctl" for m in imported), name
        if name.startswith("argusctl.ops"):
            assert not any(_top(m) in ("typer", "click", "tabulate") for m in imported), name


def test_the_import_graph_has_no_cycles():
    graph = {name: {m for m in imported if m in MODULES and m != name} for name, imported in IMPORTS.items()}
    # A package imports its own modules only to re-export; its modules importing it is not a cycle.
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_every_package_ships_in_the_wheel():
    # pyproject lists packages by name: a package missing there works in an editable
    # checkout and is absent on a cluster node that installs the wheel.
    import re

    listed = set(re.search(r"^packages = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), re.M).group(1)
                 .replace('"', "").replace(" ", "").split(","))
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for d in ("daemon", "argusctl")
               for p in (REPO / d).rglob("__init__.py")}
    assert listed == on_disk


def test_the_web_part_loads_only_where_it_runs():
    # argusd imports the API server only when api.listen is set (the frontend runs in Ray, with
    # Ray's own FastAPI); argusctl only reads tokens, so
    # neither the CLI nor sync/serving ever loads FastAPI or uvicorn.
    for name, imported in IMPORTS.items():
        web = {m for m in imported if _top(m) in ("fastapi", "uvicorn", "starlette")}
        if web:
            # the HTTP layer of daemon.api (http, server, dependencies, routes_*); never what argusctl reads
            assert (name.startswith("daemon.api.") and name not in ("daemon.api.tokens", "daemon.api.service")
                    or _in_replicas(name)), (name, web)
        if name.startswith(("daemon.sync", "daemon.serving", "daemon.core", REPLICAS)):
            assert not any(m.startswith("daemon.api") for m in imported), name
        if name.startswith("argusctl"):
            assert {m for m in imported if m.startswith("daemon.api.")} <= {"daemon.api.tokens",
                                                                          "daemon.api.tokens.TokenStore",
                                                                          "daemon.api.tokens.tokens_path"}, name
