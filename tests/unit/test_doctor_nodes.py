"""doctor's per-node verdicts from the node probe's findings, as a table."""
import pytest

from argusctl.ops.doctor import FAIL, OK, node_checks

GOOD = {"node_id": "a" * 56, "python": "3.11.7", "ray": "2.60.0", "vllm": "0.29.0", "argus": "ok"}


@pytest.mark.parametrize("finding,status,says", [
    (GOOD, OK, "imports daemon.frontend"),
    ({**GOOD, "ray": "2.55.0"}, FAIL, "argus expects ray 2.60.0, vllm 0.29.0"),
    ({**GOOD, "vllm": "0.32.0"}, FAIL, "argus expects ray 2.60.0, vllm 0.29.0"),
    ({**GOOD, "error": "ModuleNotFoundError: No module named 'daemon'"}, FAIL, "No module named 'daemon'"),
])
def test_each_node_is_judged(finding, status, says):
    (check,) = node_checks([finding], on_cpu=False)
    assert (check.status, check.name) == (status, "node aaaaaaaaaaaa")
    assert says in check.detail
    assert (check.fix == "") == (status == OK)


def test_no_node_is_a_failure():
    (check,) = node_checks([], on_cpu=True)
    assert check.status == FAIL
