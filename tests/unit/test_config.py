import pytest

from daemon.config import Config, expand, load_config
from daemon.errors import ConfigError


def test_dev_profile_has_the_seed_values(repo_root):
    config = load_config(repo_root / "configs" / "dev.yaml", env={})
    assert config.serving.llm.accelerator_type == "H20"
    assert config.serving.serve.http_port == 8000
    assert config.serving.serve.proxy_location == "HeadOnly"
    assert config.storage.root == "/private"
    assert not config.serving.llm.on_cpu


def test_local_profile_lives_under_argus_home(repo_root, tmp_path):
    config = load_config(repo_root / "configs" / "local.yaml", env={"ARGUS_HOME": str(tmp_path)})
    assert config.serving.llm.on_cpu
    assert config.storage.root == f"{tmp_path}/private"
    assert config.state.db == f"{tmp_path}/state/argus.db"
    assert config.gitops.repo == f"{tmp_path}/gitops.git"


def test_local_profile_default_home(repo_root):
    config = load_config(repo_root / "configs" / "local.yaml", env={"HOME": "/home/u"})
    assert config.storage.root.endswith("/.argus/private")


@pytest.mark.parametrize("text, fragment", [
    ("serving:\n  serve:\n    http_port: 80000\n", "cfg.yaml:3:16: serving.serve.http_port input should be less than or equal to 65535"),
    ("serving:\n  serve:\n    http_port: '8000'\n", "cfg.yaml:3:16: serving.serve.http_port must be a whole number"),
    ("serving:\n  serve:\n    proxy_location: Everywhere\n", "cfg.yaml:3:21: serving.serve.proxy_location: Input should be"),
    ("serving:\n  llm:\n    acelerator_type: H20\n", "cfg.yaml:3:5: unknown field 'serving.llm.acelerator_type'; did you mean 'accelerator_type'?"),
    ("serving:\n  llm:\n    accelerator_type: 'H 20'\n", "cfg.yaml:3:23: serving.llm.accelerator_type: 'H 20' is not an accelerator type Ray 2.60 accepts"),
    ("storage:\n  root: relative/dir\n", "cfg.yaml:2:9: storage.root: must be an absolute path"),
    ("storage:\n  root: ${NOPE}/x\n", "cfg.yaml:2:9: environment variable NOPE is not set"),
    ("limits:\n  max_replicas: 0\n", "limits.max_replicas input should be greater than or equal to 1"),
    ("[1, 2]\n", "cfg.yaml:1:1: a config must be a mapping"),
    # Configs that point at nothing (argusd then synced whatever repo it was started in).
    ("state:\n  db: ''\n", "cfg.yaml:2:7: state.db: is empty; give the absolute path"),
    ("state:\n  db: ':memory:'\n", "cfg.yaml:2:7: state.db: must be an absolute path"),
    ("gitops:\n  repo: ''\n", "cfg.yaml:2:9: gitops.repo: is empty; give the absolute path of a bare repo"),
    ("gitops:\n  repo: relative/x.git\n", "gitops.repo: 'relative/x.git' is neither an absolute path nor a git URL"),
    ("gitops:\n  branch: ''\n", "cfg.yaml:2:11: gitops.branch: '' is not a branch name"),
    ("gitops:\n  branch: a..b\n", "gitops.branch: 'a..b' is not a branch name"),
    ("gitops:\n  workdir: ''\n", "gitops.workdir: is empty"),
    # docs/spec.md: user ids are lower-case (the directory under models.d/); pointed at the key.
    ("users:\n  bob: {}\n  Alice:\n    git_identities: [a@x]\n",
     "cfg.yaml:3:3: users.Alice: user id 'Alice' is not valid: use 1-32 lowercase letters, digits, '_' or '-', "
     "starting with a letter (the directory name under models.d/); write 'alice' here and name the directory "
     "models.d/alice/"),
    ("users:\n  'a b': {}\n", "cfg.yaml:2:3: users.a b: user id 'a b' is not valid: use 1-32 lowercase"),
])
def test_invalid_configs_name_the_line(tmp_path, text, fragment):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert fragment.replace("cfg.yaml", str(path)) in str(caught.value)


def test_missing_config_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="not found; pass --config or set ARGUS_CONFIG"):
        load_config(tmp_path / "nope.yaml", env={})


@pytest.mark.parametrize("value, env, expected", [
    ("${A}", {"A": "x"}, "x"),
    ("${A:-d}/y", {}, "d/y"),
    ("${A:-d}", {"A": ""}, "d"),
    ("plain $A", {"A": "x"}, "plain $A"),
    ("~/x", {}, None),
])
def test_expand(value, env, expected):
    out = expand(value, env)
    assert out == expected if expected is not None else not out.startswith("~")


def test_empty_config_means_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("profile: dev\n")
    assert load_config(path, env={}) == Config()


@pytest.mark.parametrize("value", ["per_model", "single_app"])
def test_the_removed_layout_key_is_one_error_at_its_line_that_says_to_delete_it(tmp_path, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"serving:\n  serve:\n    http_port: 8000\n    layout: {value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    (line,) = str(err.value).splitlines()[1:]
    assert line == (f"{path}:4:13: serving.serve.layout: this key was removed: argus always runs one Serve "
                    "application per model behind its front end (what `per_model` was; `single_app` is gone); "
                    "delete the line")
