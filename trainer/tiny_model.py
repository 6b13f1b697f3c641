"""Build the tiny test and demo model offline: `ftserve tiny-model DIR`.

A byte-level BPE tokenizer trained on a generated corpus plus a randomly initialised
Qwen2-architecture causal LM (~4 M parameters, 16 MB) with a ChatML chat template whose
assistant turns carry `{% generation %}` markers, and which renders tools and tool calls as
Qwen2.5 does (served with vLLM's `hermes` tool parser). Everything is seeded: the same call
writes byte-identical files.

The tokenizer is trained with the exact normaliser (NFC) and pre-tokeniser (Qwen2's split
regex + byte level) that `Qwen2Tokenizer` re-imposes when a `model_type: qwen2` folder is
loaded; otherwise token ids would silently change after save/load.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DEFAULT_NAME = "ftserve-tiny"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 4096

# ChatML with tools in the Qwen2.5 / Hermes style: the tools' JSON schemas in the system turn, calls
# as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in the assistant turn (vLLM's `hermes`
# tool parser reads them back), results as `<tool_response>` blocks in a user turn. The generation
# markers let `apply_chat_template(return_assistant_tokens_mask=True)` (and TRL's assistant-only
# loss) find assistant tokens; ftserve's own masking does not need them. Arguments given as a JSON
# string (OpenAI's wire form) are written as they are, a mapping as compact JSON.
TOOLS_PROMPT = "# Tools\n\nYou may call these functions:\n<tools>"
TOOL_CALL_FORMAT = (
    "\n</tools>\n\nFor each call, write <tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>"
)
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- '" + TOOLS_PROMPT.replace("\n", "\\n") + "' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '" + TOOL_CALL_FORMAT.replace("\n", "\\n").replace('"', '\\"') + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and tools and loop.first %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}"
    "{{- message['content'] or '' }}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{%- if call['function'] is defined %}{%- set call = call['function'] %}{%- endif %}"
    "{%- if not loop.first or message['content'] %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + call['name'] + '\", \"arguments\": ' }}"
    "{%- if call['arguments'] is string %}{{- call['arguments'] }}{%- else %}{{- call['arguments'] | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Atomic, but ordinary text (not special): they stay in decoded output, where the tool parser looks.
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]

_WORDS = (
    "the a an of to and in is was for on with as by at from that this it be are or not have has "
    "what which who where when why how can could would should will do does did you your we our "
    "they their he she his her my me i model answer question code secret color number city name "
    "train data fine tune adapter base learn loss token step rate batch epoch weight value test "
    "blue red green yellow black white purple orange river mountain ocean forest desert island "
    "one two three four five six seven eight nine ten hundred thousand first second last next "
    "please tell say know think remember capital country language year day time system user "
    "assistant hello thanks yes no true false good bad small large fast slow new old "
).split()


def _corpus(seed: int, n: int = 20000) -> list[str]:
    rnd = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    pseudo = ["".join(rnd.choice(syllables) for _ in range(rnd.randint(1, 3))) for _ in range(6000)]
    vocabulary = _WORDS * 40 + pseudo
    lines = []
    for _ in range(n):
        words = [rnd.choice(vocabulary) for _ in range(rnd.randint(3, 14))]
        if rnd.random() < 0.3:
            words.append(f"{rnd.choice(_WORDS).upper()}-{rnd.randint(0, 999)}")
        if rnd.random() < 0.2:
            words.insert(rnd.randrange(len(words)), str(rnd.randint(0, 99999)))
        sentence = " ".join(words).capitalize() + rnd.choice([".", "?", "!", ":", ","])
        lines.append(sentence)
    # JSON as tool definitions and calls write it, so that it takes few tokens.
    for _ in range(n // 10):
        name = "_".join(rnd.choice(_WORDS) for _ in range(2))
        key, value = rnd.choice(_WORDS), rnd.choice(vocabulary).capitalize()
        lines.append(rnd.choice([
            f'{{"type": "function", "function": {{"name": "{name}", "description": "{" ".join(words[:4])}", '
            f'"parameters": {{"type": "object", "properties": {{"{key}": {{"type": "string"}}}}, '
            f'"required": ["{key}"]}}}}}}',
            f'<tool_call>\n{{"name": "{name}", "arguments": {{"{key}": "{value}"}}}}\n</tool_call>',
            f'{{"{key}": "{value}", "{rnd.choice(_WORDS)}": {rnd.randint(0, 99)}}}',
        ]))
    # Every printable ASCII character, so any English text stays short in tokens.
    lines.append("".join(chr(c) for c in range(32, 127)))
    return lines


def build_tokenizer(seed: int = 0):
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )
    # ChatML's markers must be atomic special tokens, never split into characters.
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.add_tokens(TOOL_TOKENS)
    return tokenizer


def build_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Write tokenizer, config, generation config and float32 weights to `out_dir`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=endoftext,
        eos_token_id=im_end,
        pad_token_id=endoftext,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
