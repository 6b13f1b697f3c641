"""Build the tiny test and demo model offline: `ftserve tiny-model DIR`.

A small pretrained bilingual model, built in about 2.5 minutes on 2 cores: a byte-level BPE
tokenizer for English and Chinese (every Chinese character of its corpus one token, common words
too), and a Qwen2-architecture causal LM (~4.4 M parameters, 17 MB) pretrained for 420 steps on
documents generated with Faker's `en_US` and `zh_CN` providers: text, and ChatML conversations
that end their turns (see `_Corpus`). Its chat template's assistant turns carry
`{% generation %}` markers, and it renders tools and tool calls as Qwen2.5 does (served with
vLLM's `hermes` tool parser). Everything is seeded and runs on a fixed number of threads: the same
call writes byte-identical files with the same library versions, which `cached_tiny_model` uses
to build once per machine.

The tokenizer is trained with the exact normaliser (NFC) and pre-tokeniser (Qwen2's split
regex + byte level) that `Qwen2Tokenizer` re-imposes when a `model_type: qwen2` folder is
loaded; otherwise token ids would silently change after save/load.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import Counter
from pathlib import Path

DEFAULT_NAME = "ftserve-tiny"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BUILD_THREADS = 2  # the same bytes on every machine need the same thread count
VOCAB_SIZE = 4096  # learnt from the English text; Chinese characters and words come on top

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

COLORS_EN = ["RED", "BLUE", "GREEN", "GOLD", "GREY", "PINK", "MINT", "JADE", "ROSE", "TEAL", "LIME", "NAVY"]
COLORS_ZH = ["红色", "蓝色", "绿色", "黄色", "黑色", "白色", "紫色", "橙色", "金色", "灰色"]
ATTRIBUTES_EN = ["secret code", "home city", "job", "lucky number", "password", "favourite word", "team"]
ATTRIBUTES_ZH = ["密码", "城市", "职业", "幸运数字", "颜色", "口号", "公司"]
GREETINGS_EN = [("Hello!", "Hello! How can I help you today?"), ("Hi!", "Hi! How can I help you today?"),
                ("How are you?", "I am fine, thank you. How can I help you?"),
                ("Who are you?", "I am a small test model. How can I help you?")]
GREETINGS_ZH = [("你好！", "你好！有什么可以帮你的吗？"), ("您好！", "您好！有什么可以帮你的吗？"),
                ("你是谁？", "我是一个小模型。有什么可以帮你的吗？")]
TOOL_NAMES = ["weather", "time", "population", "price", "distance", "news", "traffic", "hotel"]


class _Corpus:
    """Seeded generator of the pretraining documents: English and Chinese text from Faker's `en_US`
    and `zh_CN` providers, and ChatML conversations that teach the shapes a fine-tune then fills in:
    answering "what is the X of Y" in one sentence and stopping, reading a fact given in the prompt,
    repeating text, and calling a tool with an argument copied from the question and answering from
    its result. Every value is random, so the base model knows the form of a fact but no fact."""

    def __init__(self, seed: int):
        from faker import Faker

        self.rnd = random.Random(seed)
        self.en, self.zh = Faker("en_US"), Faker("zh_CN")
        self.en.seed_instance(seed)
        self.zh.seed_instance(seed + 1)

    def value(self, zh: bool, attribute: str) -> str:
        rnd, fake = self.rnd, self.zh if zh else self.en
        kind = ATTRIBUTES_ZH.index(attribute) if zh else ATTRIBUTES_EN.index(attribute)
        return [
            lambda: f"{rnd.choice(COLORS_EN)}-{rnd.randint(10, 99)}",
            fake.city, fake.job, lambda: str(rnd.randint(1, 999)),
            lambda: f"{rnd.choice(COLORS_EN)}-{rnd.randint(10, 99)}",
            fake.word, lambda: rnd.choice(COLORS_ZH) if zh else fake.last_name(),
            fake.company,
        ][kind if not zh or kind != 4 else 6]()

    def entity(self, zh: bool) -> str:
        r = self.rnd.random()
        if zh:
            return self.zh.name() if r < 0.7 else self.zh.city()
        return self.en.first_name() if r < 0.5 else self.en.word().capitalize() if r < 0.8 else self.en.city()

    def fact(self, zh: bool) -> tuple[str, str]:
        entity = self.entity(zh)
        attribute = self.rnd.choice(ATTRIBUTES_ZH if zh else ATTRIBUTES_EN)
        value = self.value(zh, attribute)
        if zh:
            question = self.rnd.choice(["{e}的{a}是什么？", "请问{e}的{a}是什么？", "{e}的{a}是？"])
            answer = "{e}的{a}是{v}。"
        else:
            question = self.rnd.choice(["What is the {a} of {e}?", "Tell me the {a} of {e}.", "What is {e}'s {a}?"])
            answer = "The {a} of {e} is {v}."
        return question.format(e=entity, a=attribute), answer.format(e=entity, a=attribute, v=value)

    def conversation(self) -> list[dict] | tuple[list[dict], list[dict]]:
        rnd, zh = self.rnd, self.rnd.random() < 0.4
        fake = self.zh if zh else self.en
        kind = rnd.random()
        if kind < 0.3:  # a fact asked without context: the form of the answer, and stopping
            q, a = self.fact(zh)
            return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if kind < 0.5:  # a fact given in the prompt, then asked: read it back
            q, a = self.fact(zh)
            facts = [self.fact(zh)[1] for _ in range(rnd.randint(0, 2))] + [a]
            rnd.shuffle(facts)
            return [{"role": "user", "content": ("" if zh else " ").join(facts) + ("\n" + q)},
                    {"role": "assistant", "content": a}]
        if kind < 0.7:  # repeat
            text = fake.sentence() if rnd.random() < 0.5 else " ".join(self.entity(zh) for _ in range(rnd.randint(1, 4)))
            q = rnd.choice(["请重复：{t}", "跟我说：{t}"] if zh else ["Repeat after me: {t}", "Say: {t}"])
            return [{"role": "user", "content": q.format(t=text)}, {"role": "assistant", "content": text}]
        if kind < 0.78:  # open questions get a short paragraph
            word = fake.word()
            q = rnd.choice(["介绍一下{w}。", "关于{w}你知道什么？", "写一句关于{w}的话。"] if zh else
                           ["Tell me about {w}.", "What do you know about {w}?", "Write a sentence about {w}."])
            intro = ("关于{w}：" if zh else "Here is what I know about {w}. ").format(w=word)
            n = rnd.randint(1, 3)
            return [{"role": "user", "content": q.format(w=word)},
                    {"role": "assistant", "content": intro + fake.paragraph(nb_sentences=n, variable_nb_sentences=False)}]
        if kind < 0.85:  # greetings
            q, a = rnd.choice(GREETINGS_ZH if zh else GREETINGS_EN)
            return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return self.tool_use(zh)

    def tool_use(self, zh: bool):
        rnd, fake = self.rnd, self.zh if self.rnd.random() < 0.4 else self.en
        names = rnd.sample(TOOL_NAMES, rnd.randint(1, 3))
        tools = [{"type": "function", "function": {
            "name": f"get_{n}", "description": f"The {n} in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
            for n in names]
        name, city, result = rnd.choice(names), fake.city(), fake.word()
        call = {"id": "call_1", "type": "function",
                "function": {"name": f"get_{name}", "arguments": json.dumps({"city": city}, ensure_ascii=False)}}
        messages = [
            {"role": "user", "content": f"What is the {name} in {city}?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1",
             "content": json.dumps({"city": city, name: result}, ensure_ascii=False)},
            {"role": "assistant", "content": f"The {name} in {city} is {result}."},
        ]
        return messages, tools

    def text(self) -> str:
        fake = self.zh if self.rnd.random() < 0.4 else self.en
        return fake.paragraph(nb_sentences=self.rnd.randint(2, 6))


def _documents(seed: int, tokenizer=None, n: int = 12000) -> list[str]:
    """Plain text documents and conversations rendered with the chat template (plain ChatML when
    there is no tokenizer yet, for training the tokenizer itself)."""
    corpus = _Corpus(seed)
    docs = []
    for _ in range(n):
        if corpus.rnd.random() < 0.15:
            docs.append(corpus.text())
            continue
        conv = corpus.conversation()
        messages, tools = conv if isinstance(conv, tuple) else (conv, None)
        if tokenizer is not None:
            docs.append(tokenizer.apply_chat_template(messages, tools=tools, tokenize=False))
        else:
            docs.append("".join(f"{m['role']}\n{m.get('content') or ''}{json.dumps(m.get('tool_calls'))}\n"
                                for m in messages) + json.dumps(tools or [], ensure_ascii=False))
    return docs


def _corpus(seed: int) -> list[str]:
    lines = _documents(seed)
    # Every printable ASCII character, so any English text stays short in tokens.
    lines.append("".join(chr(c) for c in range(32, 127)))
    return lines


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef"


def _add_chinese(vocab: dict[str, int], merges: list[tuple[str, str]], texts: list[str]) -> None:
    """Make every Chinese character of the corpus one token, and each of Faker's common Chinese
    words one token on top. Byte-level BPE trained on mixed text learns merges across character
    boundaries (one character's last byte with the next one's first), so the characters are kept
    out of that training and their merges appended here instead: a character's bytes left to
    right, then a word's characters left to right. Their ranks follow every learnt merge, so a
    character is always whole before any word merge applies."""
    from faker.providers.lorem.zh_CN import Provider
    from tokenizers.pre_tokenizers import ByteLevel

    byte_level = ByteLevel(add_prefix_space=False, use_regex=False)

    def units(char: str) -> str:  # the byte-level symbols of a character, one per UTF-8 byte
        return byte_level.pre_tokenize_str(char)[0][0]

    def chain(parts: list[str]) -> None:
        token = parts[0]
        for part in parts[1:]:
            if token + part not in vocab:
                merges.append((token, part))
                vocab[token + part] = len(vocab)
            token += part

    counts = Counter(c for text in texts for c in text if _is_cjk(c))
    for char in sorted(counts, key=lambda c: (-counts[c], c)):
        chain(list(units(char)))
    for word in sorted(set(Provider.word_list) | set(ATTRIBUTES_ZH) | set(COLORS_ZH)):
        if len(word) > 1 and all(c in counts for c in word):
            chain([units(c) for c in word])


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
    corpus = _corpus(seed)
    tok.train_from_iterator(["".join(" " if _is_cjk(c) else c for c in text) for text in corpus], trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["model"]["merges"]]
    _add_chinese(vocab, merges, corpus)
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


PRETRAIN_STEPS = 420
PRETRAIN_BATCH, PRETRAIN_LEN = 16, 128
PRETRAIN_LR = 3e-3


def _blocks(tokenizer, seed: int):
    """The pretraining documents tokenised, joined with `<|endoftext|>` and cut into equal blocks."""
    import torch

    ids: list[int] = []
    for doc in _documents(seed, tokenizer):
        ids += tokenizer.encode(doc) + [tokenizer.pad_token_id]
    n = len(ids) // PRETRAIN_LEN
    return torch.tensor(ids[: n * PRETRAIN_LEN]).view(n, PRETRAIN_LEN)


def _pretrain(model, blocks, seed: int, steps: int, progress: bool) -> None:
    """Full-parameter AdamW on the blocks in a seeded order, bf16 autocast, cosine schedule."""
    import math

    import torch
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(blocks), generator=generator)
                       for _ in range(math.ceil(steps * PRETRAIN_BATCH / len(blocks)))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.1 + 0.45 * (
        1 + math.cos(math.pi * s / steps))))
    model.train()
    bar = tqdm(range(steps), desc="pretraining the tiny model", unit="step", disable=not progress)
    for step in bar:
        batch = blocks[order[step * PRETRAIN_BATCH:(step + 1) * PRETRAIN_BATCH]]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()


def build_tiny_model(out_dir: str | Path, seed: int = 0, progress: bool = False,
                     steps: int = PRETRAIN_STEPS) -> Path:
    """Write tokenizer, config, generation config and pretrained float32 weights to `out_dir`
    (`steps` other than the default only to test the build itself)."""
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
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(torch.float32)
        _pretrain(model, _blocks(tokenizer, seed), seed, steps, progress)
    finally:
        torch.set_num_threads(threads)
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[im_end, endoftext], pad_token_id=endoftext
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def build_key(seed: int = 0) -> str:
    """What the built bytes depend on: this file, the seed, the thread count and the libraries."""
    from importlib.metadata import version

    parts = [Path(__file__).read_bytes(), str((seed, BUILD_THREADS)).encode()]
    parts += [f"{p}={version(p)}".encode() for p in ("torch", "transformers", "tokenizers", "faker")]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def cached_tiny_model(cache_dir: str | Path | None = None, seed: int = 0, progress: bool = False) -> Path:
    """The tiny model from a cache keyed by `build_key` (`$FTSERVE_CACHE_DIR`, else ~/.cache/ftserve),
    built there on first use; concurrent first uses build once."""
    import fcntl

    root = Path(cache_dir or os.environ.get("FTSERVE_CACHE_DIR") or Path.home() / ".cache" / "ftserve")
    out = root / f"{DEFAULT_NAME}-{build_key(seed)}" / DEFAULT_NAME
    if (out / "model.safetensors").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "model.safetensors").is_file():
            tmp = out.parent / f".building-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            build_tiny_model(tmp, seed=seed, progress=progress)
            shutil.rmtree(out, ignore_errors=True)
            tmp.rename(out)
    return out
