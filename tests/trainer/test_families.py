"""The family models' templates and parsers, without an engine: each template renders a conversation the
same whole and turn by turn (the trainer's loss mask needs it), a tool call written by the family's
template is read back by the vLLM tool parser the server picks for it, `lora_target: all` reaches the
family's linear layers, and a reasoning section can be kept out of the loss."""

from __future__ import annotations

import json

import pytest

from service.inference.parsers import detect_reasoning_parser, detect_tool_parser, resolve
from trainer.data.openai import ChatRow
from trainer.encoding import IGNORE_INDEX, encode_conversation
from trainer.families import FAMILIES, build_family_model

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


@pytest.fixture(scope="module")
def family_dirs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_family_model(root / name, name, tiny_model) for name in FAMILIES}


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_conversation_renders_the_same_whole_and_turn_by_turn(family_dirs, family):
    tokenizer = _tokenizer(family_dirs[family])
    row = ChatRow.model_validate({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "你是谁？"},
        {"role": "assistant", "content": "我是一个小模型。"}]})
    encoded = encode_conversation(tokenizer, row.to_example())  # raises TemplateError if not prefix-consistent
    learnt = tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX])
    assert "Hello." in learnt and "我是一个小模型。" in learnt
    assert "Hi!" not in learnt and "Be brief." not in learnt
    assert learnt.endswith(FAMILIES[family].eos), learnt  # the turn's end is learnt: the model stops


@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if FAMILIES[f].tool_parser))
def test_a_call_written_by_the_template_is_read_by_the_chosen_parser(family_dirs, family):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    from service.inference.parsers import tool_parser_class

    tokenizer = _tokenizer(family_dirs[family])
    parser_name = detect_tool_parser(tokenizer.chat_template)
    assert parser_name == FAMILIES[family].tool_parser
    messages = [{"role": "user", "content": "The weather in Paris?"}]
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris"}}}]}
    prompt = tokenizer.apply_chat_template(messages, tools=TOOLS, tokenize=False, add_generation_prompt=True)
    assert "get_weather" in prompt  # the tools are shown to the model
    whole = tokenizer.apply_chat_template(messages + [call], tools=TOOLS, tokenize=False)
    written = whole[len(prompt):].split(tokenizer.eos_token)[0]
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": ""}], tools=TOOLS)
    found = tool_parser_class(parser_name)(tokenizer, request.tools).extract_tool_calls(written, request)
    assert found.tools_called, written
    assert [(c.function.name, json.loads(c.function.arguments)) for c in found.tool_calls] == \
        [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_parsers_follow_the_template(family_dirs, family):
    tokenizer = _tokenizer(family_dirs[family])
    spec = FAMILIES[family]
    assert detect_tool_parser(tokenizer.chat_template) == spec.tool_parser
    assert detect_reasoning_parser(tokenizer.chat_template) == spec.reasoning_parser
    assert resolve("auto", "auto", tokenizer.chat_template).tool == spec.tool_parser
    assert resolve("none", "none", tokenizer.chat_template) == resolve("none", "none", "")
    assert resolve("hermes", "deepseek_r1", tokenizer.chat_template).reasoning == "deepseek_r1"
    with pytest.raises(KeyError):
        resolve("no-such-parser", "auto", tokenizer.chat_template)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lora_all_reaches_every_linear_layer_of_the_family(family_dirs, family):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(family_dirs[family], dtype=torch.float32)
    linear = {name.split(".")[-1] for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and "lm_head" not in name}
    tuned = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    assert {name.split(".")[-1] for name in tuned.peft_config["default"].target_modules} == linear
    if family == "phi3":
        assert linear == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}


@pytest.mark.parametrize("family", ["qwen3", "deepseek_r1"])
def test_reasoning_is_learnt_masked_or_dropped(family_dirs, family):
    tokenizer = _tokenizer(family_dirs[family])
    eos = FAMILIES[family].eos
    rows = [  # the same reasoning as OpenAI-style reasoning_content, a LLaMA-Factory v1 part, and inline
        {"messages": [{"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "Four.", "reasoning_content": "Two and two."}]},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": [
            {"type": "reasoning", "value": "Two and two."}, {"type": "text", "value": "Four."}]}]},
        {"messages": [{"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\nFour."}]},
    ]
    for row in rows:
        conversation = ChatRow.model_validate(row).to_example()
        learn, mask, drop = (encode_conversation(tokenizer, conversation, mode) for mode in ("learn", "mask", "drop"))
        assert learn.input_ids == mask.input_ids  # the same text: only the loss differs
        learnt = tokenizer.decode([t for t in learn.labels if t != IGNORE_INDEX])
        assert "Two and two." in learnt and learnt.endswith("Four." + eos)
        assert tokenizer.decode([t for t in mask.labels if t != IGNORE_INDEX]) == "Four." + eos
        assert "Two and two." not in tokenizer.decode(drop.input_ids)  # gone from the conversation
        assert tokenizer.decode([t for t in drop.labels if t != IGNORE_INDEX]) == "Four." + eos


def test_llamafactory_switches_for_thinking():
    from trainer.config import TrainConfig

    base = {"model_name_or_path": "m", "dataset": "d", "output_dir": "o"}
    assert TrainConfig.from_mapping(base).reasoning == "learn"
    assert TrainConfig.from_mapping({**base, "reasoning_loss": False}).reasoning == "mask"
    assert TrainConfig.from_mapping({**base, "enable_thinking": False}).reasoning == "drop"
    assert TrainConfig.from_mapping({**base, "template": "qwen3_nothink"}).reasoning == "drop"


def test_reasoning_only_on_assistant_messages():
    with pytest.raises(ValueError, match="reasoning_content"):
        ChatRow.model_validate({"messages": [{"role": "user", "content": "x", "reasoning_content": "y"},
                                             {"role": "assistant", "content": "z"}]})
