from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture
def argus_home(tmp_path, monkeypatch) -> Path:
    """An ARGUS_HOME of its own for the local profile, so nothing touches ~/.argus."""
    home = tmp_path / "argus-home"
    (home / "private" / "hf").mkdir(parents=True)
    (home / "private" / "users").mkdir(parents=True)
    monkeypatch.setenv("ARGUS_HOME", str(home))
    monkeypatch.setenv("ARGUS_CONFIG", str(REPO / "configs" / "local.yaml"))
    return home


