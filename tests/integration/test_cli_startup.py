"""What argusctl pays to start that argus does not use: pydantic plugins (issue 22, a fast CLI).

Real argusctl processes with a real installed plugin (a package on PYTHONPATH whose metadata names a
`pydantic` entry point), no timing: whether the plugin's module was imported does not flake on a
busy machine. The module list of `--help` and `lint` is guarded in tests/integration/test_cli_lint.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOADED = "argus-test-pydantic-plugin: loaded"

_PLUGIN = f"""import sys
print({LOADED!r}, file=sys.stderr)


class Plugin:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        return None, None, None


plugin = Plugin()
"""


@pytest.fixture
def plugin_env(tmp_path) -> dict[str, str]:
    """An environment in which pydantic finds one installed plugin, which says when it is loaded."""
    site = tmp_path / "site"
    dist = site / "argus_test_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: argus-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nargus_test = argus_test_plugin:plugin\n")
    (site / "argus_test_plugin.py").write_text(_PLUGIN)
    (tmp_path / "models.d" / "alice").mkdir(parents=True)
    (tmp_path / "models.d" / "alice" / "demo.yaml").write_text("model_id: demo\nmodel_source: $HOME/m\n")
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    # This tree first (its argusctl, not an installed one), then the plugin's site.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(site)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["ARGUS_CONFIG"] = str(REPO / "configs" / "local.yaml")
    env["ARGUS_HOME"] = str(tmp_path / "argus-home")
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_plugin_is_found_where_nothing_turns_plugins_off(plugin_env, tmp_path):
    """The fixture is real: a validator built by plain pydantic loads the plugin."""
    result = _run(["-c", "from pydantic import TypeAdapter; TypeAdapter(int).validate_python(1)"], plugin_env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert LOADED in result.stderr


def test_lint_does_not_look_for_pydantic_plugins(plugin_env, tmp_path):
    """argus uses no pydantic plugin: argusctl does not scan every installed package's metadata
    for them (42 M instructions in the serving venv's 190 packages) on every command."""
    result = _run(["-m", "argusctl", "lint", "models.d/alice/demo.yaml"], plugin_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 file checked: 1 valid" in result.stdout
    assert LOADED not in result.stderr


def test_a_users_own_plugin_setting_wins(plugin_env, tmp_path):
    """PYDANTIC_DISABLE_PLUGINS set by the user (here: a list without this plugin) is kept."""
    result = _run(["-m", "argusctl", "lint", "models.d/alice/demo.yaml"],
                  {**plugin_env, "PYDANTIC_DISABLE_PLUGINS": "some_other_plugin"}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert LOADED in result.stderr


_MODULES_AFTER = ("import sys, runpy; sys.argv = ['argusctl'] + sys.argv[1:]\n"
                  "try:\n    runpy.run_module('argusctl', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                  "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n")


def test_lint_of_one_file_makes_no_records_and_parses_no_json(plugin_env, tmp_path):
    """Beside tests/integration/test_cli_lint.py's list: the judge names a refusal without the
    record classes (ModelRow, Event, Rejection: 19 M instructions), and a spec whose folder is not
    on this machine has no config.json to parse."""
    result = _run(["-c", _MODULES_AFTER, "lint", "models.d/alice/demo.yaml"], plugin_env, tmp_path)
    modules = set(next(line for line in result.stderr.splitlines() if line.startswith("MODULES ")).split()[1:])
    assert {"daemon.core.verdict", "daemon.core.spec"} <= modules  # it did lint
    assert sorted({"daemon.core.records", "json"} & modules) == []
