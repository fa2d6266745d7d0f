"""argusctl lint on adapter specs: the folder is checked where this machine has it, and a base
among the linted files must take the adapter (the rules argusd applies)."""
import json

from argusctl.ops.lint import lint_paths
from helpers import spec_policy


def test_lint_checks_an_adapter_against_its_base_in_the_tree(tmp_path):
    root = tmp_path / "private"
    tree = tmp_path / "repo" / "models.d" / "bob"
    tree.mkdir(parents=True)
    folder = root / "users" / "bob" / "adapters" / "t"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
    (tree / "base.yaml").write_text("model_id: base\nmodel_source: $HOME/common/hf/M\nadapters:\n  max_rank: 8\n")
    (tree / "t.yaml").write_text("model_id: t\nbase_model: base\nmodel_source: $HOME/adapters/t\n")
    (tree / "elsewhere.yaml").write_text("model_id: e\nbase_model: base\nmodel_source: $HOME/adapters/absent\n")
    report = lint_paths([str(tmp_path / "repo")], spec_policy(root=str(root)))
    assert [(p.path.rsplit("/", 1)[1], p.line, p.col) for p in report.problems] == [("t.yaml", 2, 13)]
    assert "the adapter's rank is 16" in report.problems[0].message
    (folder / "adapter_config.json").write_text("{}")
    report = lint_paths([str(tmp_path / "repo")], spec_policy(root=str(root)))
    assert [(p.line, p.col) for p in report.problems] == [(3, 15)] and "is not a LoRA adapter" in report.problems[0].message
