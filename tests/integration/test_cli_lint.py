"""argusctl lint / schema / --help as a user runs them: real files, real process, exit codes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_argusctl


def test_example_tree_lints_clean(repo_root, argus_home):
    result = run_argusctl("lint", str(repo_root / "models.d"), cwd=repo_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "4 files checked: 4 valid, 0 invalid"
    assert result.stderr == ""


def _tree(tmp_path, files: dict[str, bytes]):
    for rel, data in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def test_broken_specs_give_path_line_col_and_exit_1(tmp_path, argus_home):
    _tree(tmp_path, {
        "models.d/alice/ok.yaml": b"model_id: ok\nmodel_source: $HOME/common/hf/m\n",
        "models.d/alice/bad.yaml": b"model_id: bad\nmodel_source: $HOME/common/hf/m\nnum_replicas: '2'\n",
        "models.d/alice/syntax.yml": b"model_id: [\n",
        "models.d/bob/README.md": b"not a spec\n",
    })
    result = run_argusctl("lint", "models.d", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "models.d/alice/bad.yaml:3:15: num_replicas must be a whole number, got '2' (a string)"
    assert lines[1].startswith("models.d/alice/syntax.yml:2:1: YAML syntax error: ")  # wording is libyaml's
    assert lines[2:] == ["3 files checked: 1 valid, 2 invalid (2 problems)"]
    assert "Traceback" not in result.stderr


def test_same_model_id_in_two_files_of_one_user_is_an_error_in_both(tmp_path, argus_home):
    _tree(tmp_path, {
        "models.d/alice/a.yaml": b"model_id: m\nmodel_source: $HOME/x\n",
        "models.d/alice/b.yaml": b"# comment\nmodel_id: m\nmodel_source: $HOME/y\n",
        "models.d/bob/c.yaml": b"model_id: m\nmodel_source: $HOME/x\n",
    })
    result = run_argusctl("lint", "models.d", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == ("models.d/alice/a.yaml:1:11: model_id 'm' is also defined in "
                        "models.d/alice/b.yaml; each model needs its own model_id")
    assert lines[1].startswith("models.d/alice/b.yaml:2:11: model_id 'm' is also defined in "
                               "models.d/alice/a.yaml")
    assert len(lines) == 3  # bob's 'm' is his own


def test_json_output(tmp_path, argus_home):
    _tree(tmp_path, {"models.d/alice/bad.yaml": b"model_id: '-x'\nmodel_source: /etc\n"})
    result = run_argusctl("lint", "-o", "json", "models.d", cwd=tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["files"] == 1 and report["invalid"] == 1 and report["valid"] is False
    assert [(p["line"], p["col"]) for p in report["problems"]] == [(1, 11), (2, 15)]


def test_file_outside_models_d_is_the_users_of_the_clone_as_for_apply(tmp_path, argus_home):
    _tree(tmp_path, {"spec.yaml": b"model_id: m\nmodel_source: $HOME/x\n",
                     "models.d/carol/m.yaml": b"model_id: m\nmodel_source: $HOME/y\n"})
    # No clone yet: nothing says whose it is.
    result = run_argusctl("lint", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "spec.yaml:1:1: cannot tell whose spec this is" in result.stdout and "argusctl init" in result.stdout
    assert run_argusctl("lint", "--user", "alice", "spec.yaml", cwd=tmp_path).returncode == 0
    # With a clone, the clone's user, as `argusctl apply -f spec.yaml` would commit it.
    made = run_argusctl("init", "--user", "carol", "--name", "Carol", "--email", "carol@example.com", cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    assert run_argusctl("lint", "spec.yaml", cwd=tmp_path).returncode == 0
    # Proof that it is carol's: it now clashes with carol's own m (a path under models.d/ still says whose).
    result = run_argusctl("lint", "spec.yaml", "models.d", cwd=tmp_path)
    assert result.returncode == 1 and "spec.yaml:1:11: " in result.stdout and "models.d/carol/m.yaml" in result.stdout
    # A --workdir that is no clone is said so, not guessed around.
    result = run_argusctl("lint", "--workdir", str(tmp_path / "nowhere"), "spec.yaml", cwd=tmp_path)
    assert result.returncode == 3 and "is not a GitOps clone" in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["lint", "does-not-exist"], "does-not-exist: no such file or directory"),
    (["lint"], "Missing argument"),
    (["lint", "-o", "xml", "."], "Invalid value"),
    (["nosuchcommand"], "No such command"),
])
def test_usage_errors_exit_2(tmp_path, argus_home, args, fragment):
    result = run_argusctl(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_directory_is_a_usage_error(tmp_path, argus_home):
    (tmp_path / "models.d").mkdir()
    result = run_argusctl("lint", "models.d", cwd=tmp_path)
    assert result.returncode == 2
    assert "no spec files" in result.stderr


def test_broken_config_is_one_clear_error(tmp_path, argus_home):
    (tmp_path / "c.yaml").write_text("serving:\n  serve:\n    http_port: x\n")
    result = run_argusctl("--config", str(tmp_path / "c.yaml"), "lint", ".", cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr.startswith("argusctl: error: invalid config:")
    assert "c.yaml:3:16: serving.serve.http_port must be a whole number" in result.stderr


def test_schema_is_json_schema_with_limits(argus_home, tmp_path):
    result = run_argusctl("schema", cwd=tmp_path)
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"model_id", "model_source"}
    assert schema["properties"]["num_replicas"]["maximum"] == 2  # the local profile's limit
    assert schema["properties"]["model_id"]["pattern"].startswith("^")
    scaling = schema["$defs"]["AutoscalingPolicy"]
    assert set(scaling["properties"]) == {"min_replicas", "max_replicas", "target_ongoing_requests",
                                          "scale_down_delay_s"}
    assert scaling["properties"]["max_replicas"]["maximum"] == 2  # the same limit as num_replicas
    assert schema["properties"]["suspended"]["type"] == "boolean"
    assert schema["not"] == {"required": ["num_replicas", "autoscaling"]}


def _commands(help_text: str) -> list[str]:
    """The command names listed under `Commands:` in a group's --help."""
    lines = help_text.splitlines()
    listed = lines[lines.index("Commands:") + 1:]
    return [line.split()[0] for line in listed if line.startswith("  ") and not line.startswith("   ")]


def test_help_on_every_command(argus_home):
    """Every command and subcommand prints its help (in-process through Typer's CliRunner)."""
    from typer.testing import CliRunner

    from argusctl.main import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"], prog_name="argusctl")
    assert top.exit_code == 0, top.output
    commands = _commands(top.stdout)
    assert {"lint", "schema", "status", "apply", "hook", "token"} <= set(commands)
    for command in commands:
        result = runner.invoke(app, [command, "--help"], prog_name="argusctl")
        assert result.exit_code == 0 and f"Usage: argusctl {command} " in result.stdout, (command, result.output)
        if "Commands:" in result.stdout:  # a group: hook, token
            for sub in _commands(result.stdout):
                inner = runner.invoke(app, [command, sub, "--help"], prog_name="argusctl")
                assert inner.exit_code == 0 and f"Usage: argusctl {command} {sub} " in inner.stdout, (sub, inner.output)


def test_console_script_runs(argus_home, tmp_path):
    """The installed `argusctl` entry point itself, as a user's shell starts it (one real process)."""
    script = Path(sys.executable).parent / "argusctl"
    result = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: argusctl [OPTIONS] COMMAND [ARGS]...") and "lint" in result.stdout
    bad = subprocess.run([str(script), "lint", "--no-such-option"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "No such option: --no-such-option" in bad.stderr
    assert "Traceback" not in bad.stderr


_IMPORTS_AFTER = ("import sys, runpy; sys.argv = ['argusctl'] + sys.argv[1:]\n"
                  "try:\n    runpy.run_module('argusctl', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                  "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n")


def _imported(repo_root, args: list[str]) -> set[str]:
    """The modules loaded after `argusctl ARGS` in a fresh interpreter (a subprocess, so nothing
    another test imported counts)."""
    result = subprocess.run([sys.executable, "-c", _IMPORTS_AFTER, *args], cwd=repo_root, capture_output=True,
                            text=True)
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


# What a command that does not use them must not pay for at start (issue 22: `--help` cost 4.6x
# `import typer`, mostly building daemon.config's pydantic models). Rich's help renderer cost
# twice `import typer` on its own. Timing-free: a module list does not flake on a busy machine.
_NOT_FOR_HELP = ("pydantic", "pydantic_core", "yaml", "git", "rich", "tabulate", "sqlite3", "fastapi", "logging",
                 "daemon.config", "daemon.store", "daemon.core.spec", "daemon.core.describe", "daemon.core.records",
                 "daemon.gitrepo", "argusctl.ops", "argusctl.hook.checks")
# Linting one spec file in models.d/ needs the config, the spec, the judge and PyYAML (and
# Typer's own pydantic), nothing of the store, git, argusd's loops or the other commands' engines.
_NOT_FOR_LINT = ("logging", "sqlite3", "git", "daemon.store", "daemon.core.describe", "daemon.gitrepo",
                 "daemon.gitwrite", "daemon.remote", "daemon.sync", "daemon.serving", "daemon.api",
                 "argusctl.ops.write", "argusctl.hook.checks", "argusctl.ops.doctor")
_NEVER_IN_CLI = ("ray", "vllm", "torch", "git", "fastapi", "uvicorn", "sqlite3", "rich")


def test_help_imports_only_typer_and_the_command_table(repo_root, argus_home):
    modules = _imported(repo_root, ["--help"])
    assert "typer" in modules and "argusctl.lint" in modules  # it did run
    loaded = sorted(name for name in _NOT_FOR_HELP
                    if name in modules or any(m.startswith(name + ".") for m in modules))
    assert loaded == [], f"argusctl --help imported {loaded}: import them inside the command that uses them"


def test_lint_of_one_file_imports_only_what_it_checks_with(repo_root, argus_home):
    modules = _imported(repo_root, ["lint", "models.d/bob/smollm2.yaml"])
    assert {"daemon.core.spec", "daemon.core.verdict", "daemon.config"} <= modules  # it did lint
    loaded = sorted(name for name in _NOT_FOR_LINT if any(m == name or m.startswith(name + ".") for m in modules))
    assert loaded == [], f"argusctl lint of one file imported {loaded}: import them where they are used"


def test_models_are_built_when_first_validated(repo_root):
    """Importing the config and the spec builds no pydantic validator (defer_build): a command
    pays for a model only when it validates one, and Config's one build covers its sections."""
    probe = ("from daemon.config import Config, LlmConfig\n"
             "from daemon.core.spec import AdapterPolicy, ServingSpec\n"
             "models = (Config, LlmConfig, AdapterPolicy, ServingSpec)\n"
             "print([m.__pydantic_complete__ for m in models])\n"
             "ServingSpec.model_validate({'model_id': 'm', 'model_source': '$HOME/m'})\n"
             "print(ServingSpec.__pydantic_complete__)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[False, False, False, False]", "True"]


@pytest.mark.parametrize("args", [["lint", "models.d/bob/smollm2.yaml"], ["schema"]])
def test_lint_imports_no_cluster_store_or_git(repo_root, argus_home, args):
    modules = _imported(repo_root, args)
    assert "daemon.core.spec" in modules  # it did lint
    loaded = sorted(name for name in _NEVER_IN_CLI if any(m == name or m.startswith(name + ".") for m in modules))
    assert loaded == [], f"argusctl {' '.join(args)} imported {loaded}"
