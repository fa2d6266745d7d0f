"""argusctl lint / schema / --help as a user runs them: real files, real process, exit codes."""
import json
import subprocess
import sys

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


def test_help_on_every_command(argus_home, tmp_path):
    top = run_argusctl("--help", cwd=tmp_path)
    assert top.returncode == 0
    # A command's row starts right after the border; a wrapped description line is indented.
    commands = [line.split()[1] for line in top.stdout.splitlines() if line.startswith("│ ") and
                not line.startswith("│  ") and len(line.split()) > 2 and line.split()[1].isalpha()]
    assert {"lint", "schema"} <= set(commands)
    for command in commands:
        result = run_argusctl(command, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "Usage:" in result.stdout, command


@pytest.mark.parametrize("args", [["--help"], ["lint", "models.d"], ["schema"]])
def test_fast_path_imports_no_ray_vllm_or_torch(repo_root, argus_home, args):
    code = ("import sys, runpy; sys.argv = ['argusctl'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('argusctl', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'vllm', 'torch'))\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=repo_root, capture_output=True, text=True)
    assert "HEAVY []" in result.stderr, result.stderr
