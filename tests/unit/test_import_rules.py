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
    for package in ("daemon.core", "daemon.sync", "daemon.serving", "daemon.api", "daemon.replicas", "argusctl.ops",
                    "argusctl.hook"):
        assert package in MODULES, package


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("daemon.core")))
def test_core_is_pure(name):
    bad = {m for m in IMPORTS[name] if _top(m) in SIDE_EFFECTS}
    assert not bad, f"{name} imports {bad}: the core takes data and returns data"
    upward = {m for m in IMPORTS[name] if m.startswith("daemon.") and not m.startswith(("daemon.core", "daemon.errors"))}
    assert not upward, f"{name} imports {upward}: the core imports only itself and daemon.errors"


# What the core may not do: touch files, processes, sockets or databases. Read from each
# module's syntax tree, so a call hidden in a function (or behind an alias) is caught too.
BANNED_CALLS = {
    "open", "os.open", "os.listdir", "os.scandir", "os.walk", "os.stat", "os.lstat", "os.readlink", "os.access",
    "os.remove", "os.unlink", "os.rename", "os.replace", "os.mkdir", "os.makedirs", "os.rmdir", "os.symlink",
    "os.chmod", "os.system", "os.popen", "os.getcwd", "os.environ", "os.getenv",
    "os.path.realpath", "os.path.abspath", "os.path.isdir", "os.path.isfile", "os.path.islink", "os.path.exists",
    "os.path.lexists", "os.path.getsize", "os.path.getmtime", "os.path.samefile", "os.path.expanduser",
    "io.open", "shutil", "tempfile", "glob", "pathlib", "subprocess", "sqlite3", "socket", "urllib", "http",
    "requests", "fcntl", "mmap",
}
# pathlib's methods that reach the file system, whatever the object is called.
BANNED_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "exists", "is_dir", "is_file",
                  "is_symlink", "iterdir", "glob", "rglob", "resolve", "stat", "lstat", "mkdir", "unlink",
                  "rmdir", "touch", "readlink", "symlink_to", "open", "samefile", "chmod"}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def io_uses(path: Path) -> list[str]:
    """Each use of a banned name in a module, as `line: name` (imports resolved to full names)."""
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({(a.asname or a.name).split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                            for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(getattr(node, "ctx", None), ast.Load):
            name = _dotted(node)
            if name is None:
                continue
            head, _, rest = name.partition(".")
            full = aliases.get(head, head) + (f".{rest}" if rest else "")
            if any(full == b or full.startswith(b + ".") for b in BANNED_CALLS):
                found.append(f"{node.lineno}: {full}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in BANNED_METHODS:
            found.append(f"{node.lineno}: .{node.func.attr}()")
    return sorted(set(found))


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("daemon.core")))
def test_core_does_no_io(name):
    assert not io_uses(MODULES[name]), f"{name} touches the outside world: the shell reads the facts and passes them in"


def test_the_io_rule_catches_what_it_is_meant_to(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nimport os.path as p\nfrom os.path import realpath as rp\nfrom pathlib import Path\n"
                   "def f(x):\n    os.path.isdir(x)\n    p.exists(x)\n    rp(x)\n    open(x)\n"
                   "    Path(x)\n    x.read_text()\n    return os.listdir\n")
    found = io_uses(bad)
    for name in ("os.path.isdir", "os.path.exists", "os.path.realpath", "open", "pathlib.Path", ".read_text()",
                 "os.listdir"):
        assert any(f.endswith(name) for f in found), (name, found)
    good = tmp_path / "good.py"
    good.write_text("import posixpath\nimport json\ndef f(x):\n    return posixpath.join(x, 'a'), json.loads(x)\n")
    assert io_uses(good) == []


def test_sync_and_serving_do_not_import_each_other():
    for name, imported in IMPORTS.items():
        if name.startswith("daemon.sync"):
            assert not any(m.startswith("daemon.serving") for m in imported), name
        if name.startswith("daemon.serving"):
            assert not any(m.startswith("daemon.sync") for m in imported), name


# What runs inside Ray replicas; of it argusd imports only the names they share (Ray-free).
REPLICAS = "daemon.replicas"
SHARED_NAMES = "daemon.replicas.names"
RAY_FREE_REPLICA_MODULES = {REPLICAS, SHARED_NAMES, "daemon.replicas.weights", "daemon.replicas.token_stream"}


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
    assert {_top(m) for m in IMPORTS["daemon.core.replica_contract"]} <= {"__future__", "json", "posixpath", "dataclasses"}
    # ...and its shell (the roots' real paths), which replicas import beside it.
    assert {m for m in IMPORTS["daemon.served_paths"] if _top(m) in ("daemon", "argusctl")} <= {
        "daemon.core.replica_contract", "daemon.core.replica_contract.Roots",
        "daemon.core.replica_contract.outside_roots"}
    assert {_top(m) for m in IMPORTS["daemon.served_paths"]} <= {"__future__", "os", "posixpath", "daemon"}


def test_the_replicas_need_nothing_else_of_argus_and_keep_ray_private_names_in_one_place():
    # It is imported on every Ray node from the Serve config; argus's other modules need not be there.
    for name, imported in IMPORTS.items():
        if _in_replicas(name):
            # ...but the stdlib-only contract it shares with argusd (environment names, the path rule).
            assert all(m.startswith((REPLICAS, "daemon.core.replica_contract", "daemon.served_paths"))
                       for m in imported if _top(m) in ("daemon", "argusctl")), name
            if name not in ("daemon.replicas.ray_private", "daemon.replicas.ray_build"):
                assert not any("._internal" in m or "._private" in m for m in imported), name


def test_the_apps_builds_import_nothing_that_imports_vllm():
    # Serve runs the build in a new worker per app; Ray Serve LLM's config module imports vLLM
    # (~10 s). The build's modules import none of it (a fresh process proves it: test_ray_contract).
    heavy = ("vllm", "torch", "ray.serve.llm", "ray.llm._internal.serve.core", "daemon.replicas.ray_private")
    for name in ("daemon.replicas.ray_build", "daemon.replicas.names"):
        assert not [m for m in IMPORTS[name] if m.startswith(heavy)], name
    # ...nor does the front end's build, but for its old names, imported from ingress on use.
    assert sorted(m for m in IMPORTS["daemon.replicas.frontend"] if m.startswith(heavy + ("daemon.replicas.ingress",))) \
        == ["daemon.replicas.ingress"]
    # model_server imports the server class only when asked for it by its old name (on use).
    assert sorted(m for m in IMPORTS["daemon.replicas.model_server"] if m.startswith(heavy + ("daemon.replicas.llm_server",))) \
        == ["daemon.replicas.llm_server", "daemon.replicas.llm_server.ArgusLLMServer"]


def test_daemon_never_imports_argusctl_and_ops_have_no_typer():
    for name, imported in IMPORTS.items():
        if name.startswith("daemon"):
            assert not any(_top(m) == "argusctl" for m in imported), name
        if name.startswith("argusctl.ops") or name == "argusctl.hook.checks":
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
