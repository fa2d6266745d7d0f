"""The probes' verdicts on the endpoint's answer, as tables: when an adapter or a new
generation has answered, when it failed for good (with vLLM's reason), and when to ask again."""
import pytest

from daemon.serving.probe import adapter_verdict, generation_verdict

TRACEBACK = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
             "ValueError: max_model_len 1000000 exceeds the model's limit 8192")


@pytest.mark.parametrize("code, message, expected", [
    (200, "", (True, None)),
    (404, "not routed yet", (False, None)),
    (503, "busy", (False, None)),
    (500, "LoRA rank 64 exceeds max_lora_rank 8", (True, "vLLM could not load the adapter (500): LoRA rank 64 "
                                                         "exceeds max_lora_rank 8")),
    (403, "folder swapped", (True, "vLLM could not load the adapter (403): folder swapped")),
])
def test_adapter_verdict(code, message, expected):
    assert adapter_verdict(code, message) == expected


@pytest.mark.parametrize("code, message, expected", [
    (200, "", (True, None)),
    (404, "front end not reconfigured yet", (False, None)),
    (429, "busy", (False, None)),
    (500, "replica restarting", (False, None)),
    (400, TRACEBACK, (True, "the new generation answered 400: ValueError: max_model_len 1000000 exceeds the "
                            "model's limit 8192")),
])
def test_generation_verdict(code, message, expected):
    assert generation_verdict(code, message) == expected
