import subprocess
import sys


def test_cli_reference_is_current(repo_root):
    """docs/cli.md is generated from --help: regenerate it with scripts/gen_cli_docs.py."""
    result = subprocess.run([sys.executable, "scripts/gen_cli_docs.py", "--check"], cwd=repo_root)
    assert result.returncode == 0, "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_docs.py"
