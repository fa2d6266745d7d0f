"""The accelerator names the config accepts: exactly those Ray 2.60's LLMConfig accepts with
argus's GPU bundles (the list itself is kept in step with Ray by
tests/integration/test_accelerator_contract.py)."""
import pytest

from daemon.config import RAY_ACCELERATOR_TYPES, accelerator_problem, load_config
from daemon.errors import ConfigError


@pytest.mark.parametrize("name", ["H20", "H100", "A100-80G", "L40S", "cpu", "CPU"])
def test_rays_names_and_cpu_are_accepted(name):
    assert accelerator_problem(name) is None


@pytest.mark.parametrize("name, says", [
    ("H800", "'H800' is not an accelerator type Ray 2.60 accepts: every model would fail to build"),
    ("A800", "'A800' is not an accelerator type Ray 2.60 accepts"),
    ("L20", "'L20' is not an accelerator type Ray 2.60 accepts"),
    ("h20", "(did you mean 'H20'?)"),
    ("A10", "Ray calls 'A10' 'A10G'; write A10G"),
    ("TPU-V4", "'TPU-V4' is not an accelerator type"),   # Ray refuses a TPU with argus's GPU bundles
])
def test_other_names_are_refused_with_rays_list(name, says):
    problem = accelerator_problem(name)
    assert problem is not None and says in problem
    if name != "A10":
        assert "Use 'cpu' or one of: V100, P100" in problem and "H20" in problem


def test_the_config_names_the_line_and_rays_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("profile: dev\nserving:\n  llm:\n    accelerator_type: H800\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert f"{path}:4:23: serving.llm.accelerator_type: 'H800' is not an accelerator type Ray 2.60 accepts" in message
    assert all(name in message for name in RAY_ACCELERATOR_TYPES)
    assert "Traceback" not in message


def test_the_shipped_profiles_use_accepted_names(repo_root):
    for profile in ("dev.yaml", "local.yaml"):
        assert accelerator_problem(load_config(repo_root / "configs" / profile, env={"HOME": "/h"})
                                   .serving.llm.accelerator_type) is None
