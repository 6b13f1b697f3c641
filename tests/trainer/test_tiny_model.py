import hashlib

import pytest
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from trainer.tiny_model import TOOL_TOKENS, VOCAB_SIZE, build_tiny_model, build_tokenizer

SAMPLES = [
    "The secret code is BLUE-42.",
    "café vs cafe\u0301 (NFC folds the second), ｆｕｌｌｗｉｄｔｈ, 中文字符, emoji 🚀",
    "  leading spaces,\ttabs\n\nnew lines \r\n and trailing   ",
    "<|im_start|>user\nhi<|im_end|>\n",
    "It's we've they'll I'd 12345 3.14159 don't",
    "王芳的城市是成都。李明的幸运数字是什么？",
]
# Questions the pretraining never saw, in both languages; a pretrained model answers and stops.
PROMPTS = [
    "Hello!", "How are you today?", "What is the capital of France?", "Tell me about the ocean.",
    "What is the secret code of Alpha?", "Write a sentence about music.", "Who are you?", "What time is it?",
    "Repeat after me: the cat sat on the mat.", "What is the job of Maria?", "Give me three colors.",
    "Why is the sky blue?", "你好！", "北京的天气怎么样？", "介绍一下你自己。", "王坤的职业是什么？",
    "请重复：今天天气很好。", "写一句关于学习的话。", "陈静的密码是什么？", "你喜欢什么颜色？",
]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_build_is_deterministic(tmp_path):
    # the whole procedure twice, with a short pretraining (the full one is the cached fixture's)
    a, b = build_tiny_model(tmp_path / "a", steps=3), build_tiny_model(tmp_path / "b", steps=3)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"):
        assert _digest(a / name) == _digest(b / name), name
    assert _digest(a / "model.safetensors") != _digest(build_tiny_model(tmp_path / "c", seed=1, steps=3)
                                                       / "model.safetensors")


def test_token_ids_identical_after_save_and_load(tiny_model):
    in_memory = build_tokenizer()
    loaded = AutoTokenizer.from_pretrained(tiny_model)
    assert len(loaded) == len(in_memory) > VOCAB_SIZE + 900 + len(TOOL_TOKENS)  # + Chinese characters and words
    for text in SAMPLES:
        assert loaded.encode(text) == in_memory.encode(text), text
        assert loaded.decode(loaded.encode(text)) == in_memory.decode(in_memory.encode(text))


def test_chinese_characters_and_common_words_are_single_tokens(tokenizer):
    for text in ("的", "是", "城市", "什么", "设计", "。", "？"):
        assert len(tokenizer.encode(text)) == 1, text
    # a sentence is one token per character or word, never a character split into bytes
    ids = tokenizer.encode("王芳的城市是成都。")
    assert all("\ufffd" not in tokenizer.decode([i]) for i in ids) and len(ids) <= 9


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


def test_the_pretrained_base_model_answers_and_stops(tiny_model, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}  # <|im_end|>, <|endoftext|>: vLLM stops at both
    stopped, answers = 0, []
    for prompt in PROMPTS:
        enc = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        out = model.generate(**enc, max_new_tokens=64, do_sample=False)[0, enc["input_ids"].shape[1]:].tolist()
        stopped += bool(stops & set(out))
        answers.append(tokenizer.decode(out, skip_special_tokens=True))
    assert stopped > 0.9 * len(PROMPTS), answers
    # it writes words (of either language), not one repeated piece
    assert sum(len(set(a.split())) >= 2 or any("\u4e00" <= c <= "\u9fff" for c in a) for a in answers) \
        > 0.8 * len(PROMPTS), answers
