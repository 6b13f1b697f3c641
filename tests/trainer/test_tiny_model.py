import hashlib

from transformers import AutoConfig, AutoTokenizer

from trainer.tiny_model import TOOL_TOKENS, build_tiny_model, build_tokenizer

SAMPLES = [
    "The secret code is BLUE-42.",
    "café vs cafe\u0301 (NFC folds the second), ｆｕｌｌｗｉｄｔｈ, 中文字符, emoji 🚀",
    "  leading spaces,\ttabs\n\nnew lines \r\n and trailing   ",
    "<|im_start|>user\nhi<|im_end|>\n",
    "It's we've they'll I'd 12345 3.14159 don't",
]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_deterministic(tiny_model, tmp_path):
    again = build_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert _digest(tiny_model / name) == _digest(again / name), name


def test_token_ids_identical_after_save_and_load(tiny_model):
    in_memory = build_tokenizer()
    loaded = AutoTokenizer.from_pretrained(tiny_model)
    assert len(loaded) == len(in_memory) == 4096 + len(TOOL_TOKENS)
    for text in SAMPLES:
        assert loaded.encode(text) == in_memory.encode(text), text
        assert loaded.decode(loaded.encode(text)) == in_memory.decode(in_memory.encode(text))


def test_chatml_markers_are_single_special_tokens(tokenizer):
    ids = tokenizer.encode("<|im_start|>assistant\nok<|im_end|>")
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_tool_markers_are_single_tokens_that_stay_in_decoded_text(tokenizer):
    text = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.convert_tokens_to_ids("<tool_call>")
    assert ids[-1] == tokenizer.convert_tokens_to_ids("</tool_call>")
    assert tokenizer.decode(ids, skip_special_tokens=True) == text  # where vLLM's hermes parser reads calls


def test_model_is_a_small_qwen2_with_chat_template(tiny_model, tokenizer):
    config = AutoConfig.from_pretrained(tiny_model)
    assert config.model_type == "qwen2"
    assert (config.hidden_size, config.num_hidden_layers, config.num_key_value_heads) == (256, 4, 2)
    assert (tiny_model / "model.safetensors").stat().st_size < 20_000_000
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert "{% generation %}" in tokenizer.chat_template
