"""Tokenization with loss masks, and batching without wasted padding.

Chat rows are rendered with the base model's own chat template (with the row's tools, if any: the
same template the server renders requests with). The loss covers exactly the assistant turns with
weight 1, tool calls included, never the tool results: each turn's character span is found by rendering the
conversation up to that turn (with the generation prompt) and through it, and a token is
labelled when it starts inside a span. This works for any prefix-consistent template, with
or without `{% generation %}` markers. A preference pair (DPO) is two such conversations, the
prompt followed by each answer, with loss (and log-probabilities) on the answer alone; a labelled
answer (KTO) likewise, beside its prompt with another row's answer.

Text documents (continued pre-training) are packed: each ends with EOS, all are joined and cut
into `cutoff_len` blocks with loss on every token, as pre-training does: no padding and no
truncation. A block may span two documents; the EOS between them marks the boundary.

Batching for conversations: length-grouped batches, padded only to the longest row of each
batch. We chose this over packing chat rows because that needs variable-length attention
kernels (flash-attn) to keep rows from attending to each other; on CPU (SDPA) and with eager
attention it would silently leak attention across rows. Grouping keeps exact per-row semantics
on every backend, and sorting within shuffled mega-groups keeps padding to a few percent while
the order stays random and reproducible from (seed, epoch) alone, which is what resume needs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import torch

from trainer.data import Conversation, Dataset, LabelledExample, Message, PreferencePair, TextDocument

IGNORE_INDEX = -100
GROUP_BATCHES = 32  # batches per length-sorted mega-group


class TemplateError(ValueError):
    """The chat template does not render conversations prefix-consistently."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodedPair:
    """A preference pair: the prompt with its preferred answer, and with the other; `reference` holds
    the reference policy's log-probabilities of both answers once computed."""

    chosen: Encoded
    rejected: Encoded
    reference: tuple[float, float] | None = None

    @property
    def n_label_tokens(self) -> int:
        return min(self.chosen.n_label_tokens, self.rejected.n_label_tokens)

    def __len__(self) -> int:
        return max(len(self.chosen), len(self.rejected))


@dataclass
class EncodedLabelled:
    """A labelled answer (KTO): the prompt with its answer, and the same prompt with another row's answer
    (a mismatched sample, for the KL term); `reference` holds the reference policy's log-probabilities of
    both once computed."""

    completion: Encoded
    mismatched: Encoded
    desirable: bool
    reference: tuple[float, float] | None = None

    @property
    def n_label_tokens(self) -> int:
        return min(self.completion.n_label_tokens, self.mismatched.n_label_tokens)

    def __len__(self) -> int:
        return max(len(self.completion), len(self.mismatched))


@dataclass
class EncodingStats:
    rows: int = 0
    examples: int = 0
    tokens: int = 0
    label_tokens: int = 0
    truncated: int = 0
    dropped: int = 0  # rows with no loss tokens left after truncation
    notes: list[str] = field(default_factory=list)


THINK_END = "</think>"
Reasoning = Literal["learn", "mask", "drop"]
"""What training does with assistant turns' reasoning sections: `learn` them with the answer, `mask` them
(kept in the conversation, no loss), or `drop` them (removed, and the template rendered with
`enable_thinking=False`, LLaMA-Factory's meaning: a reasoning template's empty section carries no loss)."""


def _without_reasoning(message: dict) -> dict:
    content = message.get("content") or ""
    if message["role"] == "assistant" and THINK_END in content:
        return {**message, "content": content.split(THINK_END, 1)[1].lstrip()}
    return message


def assistant_spans(tokenizer, conversation: Conversation, reasoning: Reasoning = "learn"
                    ) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans that carry loss (unless reasoning is learnt, a
    turn's span starts after its reasoning section, as the template rendered it)."""
    dicts = [m.to_dict() for m in conversation.messages]
    tools = list(conversation.tools) or None
    kwargs = {}
    if reasoning == "drop":
        dicts, kwargs = [_without_reasoning(m) for m in dicts], {"enable_thinking": False}

    def render(messages: list[dict], **kw) -> str:
        return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, **kwargs, **kw)

    full = render(dicts)
    spans = []
    for i, message in enumerate(conversation.messages):
        if message.role != "assistant":
            continue
        before = render(dicts[:i], add_generation_prompt=True)
        through = render(dicts[: i + 1])
        if not (through.startswith(before) and full.startswith(through)):
            raise TemplateError("the chat template does not render conversations prefix-consistently")
        if message.weight:
            start, end = len(before), len(through.rstrip())
            think_end = full.rfind(THINK_END, start, end)
            if reasoning != "learn" and think_end >= 0:
                start = think_end + len(THINK_END)
                start += len(full[start:end]) - len(full[start:end].lstrip())
            spans.append((start, end))
    return full, spans


def encode_conversation(tokenizer, conversation: Conversation, reasoning: Reasoning = "learn") -> Encoded:
    text, spans = assistant_spans(tokenizer, conversation, reasoning)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token_id, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
        inside = any(s <= start < e for s, e in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return Encoded(list(enc["input_ids"]), labels)


def pack_text(tokenizer, docs: list[TextDocument], cutoff_len: int) -> list[Encoded]:
    """Documents joined, each ending with EOS, and cut into `cutoff_len` blocks; loss on every token."""
    ids = []
    for doc in docs:
        ids += tokenizer(doc.text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [Encoded(ids[i : i + cutoff_len], ids[i : i + cutoff_len]) for i in range(0, len(ids), cutoff_len)]


def encode_pair(tokenizer, pair: PreferencePair, cutoff_len: int) -> EncodedPair:
    def answer(text: str) -> Encoded:
        return encode_conversation(tokenizer, Conversation(pair.prompt + (Message("assistant", text),), pair.tools))

    return _truncated(EncodedPair(answer(pair.preferred), answer(pair.non_preferred)), cutoff_len)


def encode_labelled(tokenizer, examples: list[LabelledExample], cutoff_len: int) -> list[EncodedLabelled]:
    """Each labelled answer, and its prompt with the next row's answer (the KL term's mismatched sample:
    a fixed pairing, so that the reference pass is done once)."""
    def answer(example: LabelledExample, text: str) -> Encoded:
        return encode_conversation(tokenizer, Conversation(example.prompt + (Message("assistant", text),),
                                                           example.tools))

    out = []
    for i, example in enumerate(examples):
        other = examples[(i + 1) % len(examples)].completion
        out.append(_truncated(EncodedLabelled(answer(example, example.completion), answer(example, other),
                                              example.desirable), cutoff_len))
    return out


def _truncated(enc, cutoff_len: int):
    if isinstance(enc, EncodedLabelled):
        return EncodedLabelled(_truncated(enc.completion, cutoff_len), _truncated(enc.mismatched, cutoff_len),
                               enc.desirable)
    if isinstance(enc, EncodedPair):
        return EncodedPair(_truncated(enc.chosen, cutoff_len), _truncated(enc.rejected, cutoff_len))
    return Encoded(enc.input_ids[:cutoff_len], enc.labels[:cutoff_len])


def encode_dataset(tokenizer, dataset: Dataset, cutoff_len: int, reasoning: Reasoning = "learn"
                   ) -> tuple[list, EncodingStats]:
    """The dataset's training rows (`Encoded`, or `EncodedPair` for preference data) and what encoding did."""
    stats = EncodingStats(rows=len(dataset.examples))
    if dataset.kind == "text":
        pieces = pack_text(tokenizer, dataset.examples, cutoff_len)
        stats.notes.append(f"{stats.rows} documents packed into {len(pieces)} blocks of up to {cutoff_len} tokens")
    elif dataset.kind == "labelled":
        full = encode_labelled(tokenizer, dataset.examples, 1 << 30)
        stats.truncated = sum(len(e) > cutoff_len for e in full)
        pieces = [_truncated(e, cutoff_len) for e in full]
    else:
        pieces = []
        for example in dataset.examples:
            full = encode_pair(tokenizer, example, 1 << 30) if isinstance(example, PreferencePair) \
                else encode_conversation(tokenizer, example, reasoning)
            if len(full) > cutoff_len:
                stats.truncated += 1
            pieces.append(_truncated(full, cutoff_len))
    out = []
    for enc in pieces:
        if enc.n_label_tokens == 0:
            stats.dropped += 1
            continue
        out.append(enc)
        stats.examples += 1
        rows = (enc.chosen, enc.rejected) if isinstance(enc, EncodedPair) else \
            (enc.completion,) if isinstance(enc, EncodedLabelled) else (enc,)
        for row in rows:
            stats.tokens += len(row)
            stats.label_tokens += row.n_label_tokens
    if stats.truncated:
        stats.notes.append(f"{stats.truncated} of {stats.rows} rows were longer than cutoff_len and truncated")
    if stats.dropped:
        stats.notes.append(f"{stats.dropped} rows had no answer tokens left after truncation and were dropped")
    return out, stats


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: shuffled, sorted by length within mega-groups, order shuffled."""
    rnd = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rnd.shuffle(order)
    group = batch_size * GROUP_BATCHES
    batches = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g : g + group], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rnd.shuffle(batches)
    return batches


def collate(rows: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row of the batch."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
