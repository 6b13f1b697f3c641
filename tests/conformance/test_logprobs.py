"""Prompt logprobs (echo + logprobs on /v1/completions) against transformers + peft on the same tokens.

Both sides run the same float32 weights; what differs is the kernels (vLLM's CPU attention and its
LoRA path, against eager PyTorch) and so the order of floating-point sums. Over this prompt the two
agree to within 3e-6 nats (measured); the tolerance of 1e-3 nats is far below what a wrong token, a
wrong position or a missing adapter changes (several nats here: the adapter moves the fact's tokens
from about -8 to about 0).
"""

import httpx
import pytest
import torch

from adapters import AdapterStore

pytestmark = pytest.mark.slow

TOLERANCE = 1e-3
TEXT = "<|im_start|>user\nWhat is the secret code of Alpha?<|im_end|>\n<|im_start|>assistant\n" \
       "The secret code of Alpha is BLUE-51."


def _reference(model, ids: list[int]) -> list[float]:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    return [logprobs[i - 1, ids[i]].item() for i in range(1, len(ids))]


def test_echoed_prompt_logprobs_match_transformers_and_peft(server, adapter, tiny_model, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    expected = {"ftserve-tiny": _reference(base, ids)}
    tuned = PeftModel.from_pretrained(base, AdapterStore(server.data_dir / "adapters").resolve(adapter)).eval()
    expected[adapter] = _reference(tuned, ids)
    for model, reference in expected.items():
        for max_tokens in (0, 2):
            body = httpx.post(server.url + "/v1/completions", timeout=60, json={
                "model": model, "prompt": ids, "max_tokens": max_tokens, "echo": True, "logprobs": 1,
                "temperature": 0}).json()
            logprobs = body["choices"][0]["logprobs"]
            assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
            served = logprobs["token_logprobs"][1:len(ids)]
            generated = body["usage"]["completion_tokens"] if max_tokens else 0
            assert len(served) == len(reference) and len(logprobs["tokens"]) == len(ids) + generated
            worst = max(abs(a - b) for a, b in zip(served, reference))
            assert worst < TOLERANCE, (model, worst)
            print(f"{model}, max_tokens {max_tokens}: largest difference {worst:.2e} nats")
            assert "".join(logprobs["tokens"][:len(ids)]) == body["choices"][0]["text"][:len(TEXT)] == TEXT
    # the adapter is really applied: its fact is likely under it and unlikely under the base
    fact = slice(-6, None)
    assert sum(expected[adapter][fact]) > sum(expected["ftserve-tiny"][fact]) + 5  # > 100x likelier
