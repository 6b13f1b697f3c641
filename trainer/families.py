"""Small random models of the base-model families users bring: `ftserve tiny-model DIR --family NAME`.

Each is a random model of the family's architecture (transformers' own class, a few layers wide
enough to train and serve in seconds) on the tiny model's tokenizer, with that family's special
tokens added and a chat template written in the family's style: its turn markers, how it places
the system prompt, how it renders tools, calls and results (where its official template does),
and its reasoning section. They test what differs between families beyond the architecture: the
chat template the trainer and the server render with, the tool-call format and the vLLM tool
parser that reads it, the reasoning parser, and LoRA on each family's linear layers (Phi-3's fused
`qkv_proj` and `gate_up_proj` included). They know nothing: the answers of a random model are
noise, which is what the matrix compares (served adapter against transformers + peft, token for
token).

The templates are the families' shapes, not byte-for-byte copies of the vendors' files; where one
departs from its vendor's file it says so. A real model brings its own template, and the server
reads the tool and reasoning parsers from it (service/inference/parsers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Arguments of a tool call as the families write them: a mapping as JSON, a string as it is.
_ARGS = "{%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}"
_CALL = "{%- set call = call.function if call.function is defined else call %}"

# Qwen3: ChatML, tools and calls as Qwen2.5 / Hermes (`<tool_call>` JSON), reasoning as a
# `<think>` section before the answer. As Qwen3's own template: an assistant turn's reasoning comes
# from `reasoning_content` or from a `<think>...</think>` section at the start of its content;
# `enable_thinking=false` ends the generation prompt with an empty section, and an assistant turn
# without reasoning has an empty one. Departure: every assistant turn keeps its section (Qwen3's
# drops them from turns before the last user message), so a conversation renders the same whole and
# turn by turn, which the trainer's loss mask needs.
QWEN3 = """
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'assistant' %}
{%- set content = message.content or '' %}
{%- set reasoning = message.reasoning_content or '' %}
{%- if not reasoning and '</think>' in content %}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}
{%- set content = content.split('</think>')[-1].lstrip('\\n') %}
{%- endif %}
{{- '<|im_start|>assistant\\n<think>\\n' + reasoning + '\\n</think>\\n\\n' + content }}
{%- for call in message.tool_calls or [] %}""" + _CALL + """
{%- if not loop.first or content %}{{- '\\n' }}{%- endif %}
{{- '<tool_call>\\n{"name": "' + call.name + '", "arguments": ' }}""" + _ARGS + """{{- '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- else %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}
{%- endif %}
"""

# Llama 3.1: header tokens, a system header always (tools announced there as `Environment:
# ipython`), the tool definitions in the first user turn, a call written as one JSON object
# `{"name": ..., "parameters": ...}`, results in `ipython` turns (vLLM's `llama3_json` parser).
LLAMA = """
{{- bos_token }}
{%- if messages[0].role == 'system' %}{%- set system = messages[0].content %}{%- set messages = messages[1:] %}
{%- else %}{%- set system = '' %}{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}
{%- if tools %}{{- 'Environment: ipython\\n' }}{%- endif %}
{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' + system + '<|eot_id|>' }}
{%- for message in messages %}
{%- if message.role == 'user' and loop.first and tools %}
{{- '<|start_header_id|>user<|end_header_id|>\\n\\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\\n\\nRespond in the format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.\\n\\n' }}
{%- for tool in tools %}{{- tool | tojson + '\\n\\n' }}{%- endfor %}
{{- message.content + '<|eot_id|>' }}
{%- elif message.role == 'assistant' and message.tool_calls %}
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- for call in message.tool_calls %}""" + _CALL + """
{%- if not loop.first %}{{- '; ' }}{%- endif %}
{{- '{"name": "' + call.name + '", "parameters": ' }}""" + _ARGS + """{{- '}' }}
{%- endfor %}
{{- '<|eot_id|>' }}
{%- elif message.role == 'tool' %}
{{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}
{%- else %}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + (message.content or '') + '<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""

# Mistral (v7 / Small 3 "tekken" style): `[SYSTEM_PROMPT]`, `[INST]...[/INST]`, the tools before
# the last user turn as `[AVAILABLE_TOOLS]`, calls as `[TOOL_CALLS]` + a JSON list, results as
# `[TOOL_RESULTS]` (vLLM's `mistral` parser). Departure: the tools come before the first user turn
# (Mistral's put them before the last), so a conversation renders the same whole and turn by turn.
MISTRAL = """
{{- bos_token }}
{%- if messages[0].role == 'system' %}{{- '[SYSTEM_PROMPT]' + messages[0].content + '[/SYSTEM_PROMPT]' }}{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'user' %}
{%- if tools and loop.index0 == (1 if messages[0].role == 'system' else 0) %}
{{- '[AVAILABLE_TOOLS]' + (tools | tojson) + '[/AVAILABLE_TOOLS]' }}
{%- endif %}
{{- '[INST]' + message.content + '[/INST]' }}
{%- elif message.role == 'assistant' %}
{{- message.content or '' }}
{%- if message.tool_calls %}
{{- '[TOOL_CALLS][' }}
{%- for call in message.tool_calls %}""" + _CALL + """
{%- if not loop.first %}{{- ', ' }}{%- endif %}
{{- '{"name": "' + call.name + '", "arguments": ' }}""" + _ARGS + """{{- '}' }}
{%- endfor %}
{{- ']' }}
{%- endif %}
{{- eos_token }}
{%- elif message.role == 'tool' %}
{{- '[TOOL_RESULTS]' + message.content + '[/TOOL_RESULTS]' }}
{%- endif %}
{%- endfor %}
"""

# Gemma 2: `<start_of_turn>user` / `<start_of_turn>model`, no system role (its system prompt goes
# at the start of the first user turn, as Gemma 3 does; Gemma 2's own template refuses one), and no
# tools (its template renders none).
GEMMA = """
{{- bos_token }}
{%- if messages[0].role == 'system' %}{%- set first = messages[0].content + '\\n\\n' %}{%- set messages = messages[1:] %}
{%- else %}{%- set first = '' %}{%- endif %}
{%- for message in messages %}
{%- if message.role not in ('user', 'assistant') %}{{- raise_exception('Gemma renders only user and assistant turns after the system prompt') }}{%- endif %}
{%- set role = 'model' if message.role == 'assistant' else 'user' %}
{{- '<start_of_turn>' + role + '\\n' + (first if loop.first else '') + (message.content or '') + '<end_of_turn>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}
"""

# Phi-3: `<|system|>`, `<|user|>`, `<|assistant|>` turns ended by `<|end|>`; no tools.
PHI3 = """
{%- for message in messages %}
{%- if message.role not in ('system', 'user', 'assistant') %}{{- raise_exception('Phi-3 renders only system, user and assistant turns') }}{%- endif %}
{{- '<|' + message.role + '|>\\n' + (message.content or '') + '<|end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}
"""

# DeepSeek-R1 distills (on Qwen2.5): `<｜User｜>` / `<｜Assistant｜>`, the system prompt first, the
# generation prompt opening the reasoning section (`<think>\n`), so the model's output starts inside
# it (vLLM's `deepseek_r1` parser expects that). Departure: an assistant turn without reasoning is
# rendered with an empty section (R1's drops the reasoning of earlier turns), so a conversation
# renders the same whole and turn by turn.
DEEPSEEK_R1 = """
{{- bos_token }}
{%- if messages[0].role == 'system' %}{{- messages[0].content }}{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'user' %}{{- '<｜User｜>' + message.content }}
{%- elif message.role == 'assistant' %}
{%- set content = message.content or '' %}
{%- if message.reasoning_content %}{%- set content = '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' + content %}{%- endif %}
{%- if not content.startswith('<think>') %}{%- set content = '<think>\\n\\n</think>\\n\\n' + content %}{%- endif %}
{{- '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}
{%- else %}{{- raise_exception('DeepSeek-R1 renders only system, user and assistant turns') }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<｜Assistant｜><think>\\n' }}{%- endif %}
"""


@dataclass(frozen=True)
class Family:
    """A base-model family: its architecture, its special tokens and template, and the vLLM parsers that
    read its output (None: it has no tool or reasoning format)."""

    name: str
    architecture: str  # transformers' config class
    template: str
    special: tuple[str, ...]  # added as special tokens (the first bos, the second eos, where used)
    bos: str | None
    eos: str
    tool_parser: str | None
    reasoning_parser: str | None
    text_tokens: tuple[str, ...] = ()  # atomic, but ordinary text (kept in decoded output for the parsers)
    config: dict = field(default_factory=dict)


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("qwen2", "Qwen2Config", "", (), None, "<|im_end|>", "hermes", None),  # the tiny model's own
    Family("qwen3", "Qwen3Config", QWEN3, (), None, "<|im_end|>", "hermes", "qwen3",
           text_tokens=("<think>", "</think>"), config={"head_dim": 64}),
    Family("llama", "LlamaConfig", LLAMA, ("<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>",
                                           "<|end_header_id|>", "<|eom_id|>", "<|python_tag|>"),
           "<|begin_of_text|>", "<|eot_id|>", "llama3_json", None),
    Family("mistral", "MistralConfig", MISTRAL, ("<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]",
                                                 "[/SYSTEM_PROMPT]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                                                 "[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
           "<s>", "</s>", "mistral", None),
    Family("gemma", "Gemma2Config", GEMMA, ("<bos>", "<end_of_turn>", "<start_of_turn>"), "<bos>",
           "<end_of_turn>", None, None, config={"head_dim": 64, "query_pre_attn_scalar": 64,
                                                 "attn_logit_softcapping": None, "final_logit_softcapping": None}),
    Family("phi3", "Phi3Config", PHI3, ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), None, "<|end|>",
           None, None),
    Family("deepseek_r1", "Qwen2Config", DEEPSEEK_R1, ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                                       "<｜User｜>", "<｜Assistant｜>"),
           "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", None, "deepseek_r1",
           text_tokens=("<think>", "</think>")),
]}

# Small enough to train and serve in seconds; heads of 64, a size vLLM's CPU attention takes.
SHAPE = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=2048)


def family_tokenizer(family: Family, tiny_model: Path):
    """The tiny model's tokenizer with the family's tokens and chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    if family.name == "qwen2":
        return tokenizer
    if family.special:
        tokenizer.add_tokens(list(family.special), special_tokens=True)
    if family.text_tokens:
        tokenizer.add_tokens(list(family.text_tokens))
    tokenizer.chat_template = family.template.strip("\n")
    tokenizer.eos_token = family.eos
    if family.bos is not None:
        tokenizer.bos_token = family.bos
    return tokenizer


def build_family_model(out_dir: str | Path, family: str, tiny_model: Path, seed: int = 0) -> Path:
    """A random model of `family`'s architecture on the tiny model's tokenizer, written to `out_dir`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    spec = FAMILIES[family]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = family_tokenizer(spec, tiny_model)
    eos, pad = tokenizer.convert_tokens_to_ids(spec.eos), tokenizer.pad_token_id
    bos = tokenizer.convert_tokens_to_ids(spec.bos) if spec.bos else pad
    config = getattr(transformers, spec.architecture)(
        vocab_size=len(tokenizer), tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
        torch_dtype="float32", **SHAPE, **spec.config)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
