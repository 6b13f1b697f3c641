from collections import Counter

from tests.support.paths import write_jsonl
from trainer.data import Conversation, Message, TextDocument, load_dataset
from trainer.encoding import (
    IGNORE_INDEX,
    Encoded,
    collate,
    encode_conversation,
    encode_dataset,
    pack_text,
    length_grouped_batches,
)


def _ids(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def test_multi_turn_loss_mask_token_by_token(tokenizer):
    conv = Conversation((
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello there."),
        Message("user", "Code?"),
        Message("assistant", "BLUE-42"),
    ))
    enc = encode_conversation(tokenizer, conv)
    t = lambda s: _ids(tokenizer, s)  # noqa: E731
    end = t("<|im_end|>")
    # Expected sequence, piece by piece, with whether each piece carries loss.
    pieces = [
        (t("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"), False),
        (t("Hello there.") + end, True),
        (t("\n<|im_start|>user\nCode?<|im_end|>\n<|im_start|>assistant\n"), False),
        (t("BLUE-42") + end, True),
        (t("\n"), False),
    ]
    expected_ids = [i for ids, _ in pieces for i in ids]
    expected_labels = [i if on else IGNORE_INDEX for ids, on in pieces for i in ids]
    assert enc.input_ids == expected_ids
    assert enc.labels == expected_labels
    # The template's own generation markers agree with ours.
    out = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in conv.messages],
        tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
    )
    assert out["input_ids"] == enc.input_ids
    assert [lab != IGNORE_INDEX for lab in enc.labels] == [bool(m) for m in out["assistant_masks"]]


def test_weight_zero_turn_carries_no_loss(tokenizer):
    conv = Conversation((
        Message("user", "Hi"), Message("assistant", "Wrong answer.", weight=0),
        Message("user", "Again"), Message("assistant", "Right."),
    ))
    enc = encode_conversation(tokenizer, conv)
    labelled = [i for i in enc.labels if i != IGNORE_INDEX]
    assert labelled == _ids(tokenizer, "Right.<|im_end|>")


def test_every_format_gives_the_same_ids_for_the_same_conversation(tokenizer, tmp_path):
    files = {
        "chat": [{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A."}]}],
        "alpaca": [{"instruction": "Q", "output": "A."}],
        "sharegpt": [{"conversations": [{"from": "human", "value": "Q"}, {"from": "assistant", "value": "A."}]}],
    }
    expected_ids = _ids(tokenizer, "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA.<|im_end|>\n")
    answer = _ids(tokenizer, "A.<|im_end|>")
    for fmt, rows in files.items():
        rows_out, stats = encode_dataset(tokenizer, load_dataset(write_jsonl(tmp_path / f"{fmt}.jsonl", rows)), 64)
        assert rows_out[0].input_ids == expected_ids, fmt
        assert [i for i in rows_out[0].labels if i != IGNORE_INDEX] == answer, fmt
        assert stats.label_tokens == len(answer)


def test_text_documents_are_packed_into_full_blocks_with_loss_on_every_token(tokenizer):
    docs = [TextDocument("one two three four five six seven eight nine ten " * 3), TextDocument("the end"),
            TextDocument("river mountain ocean")]
    blocks = pack_text(tokenizer, docs, cutoff_len=8)
    eos = tokenizer.eos_token_id
    ids = [i for d in docs for i in _ids(tokenizer, d.text) + [eos]]
    assert [i for b in blocks for i in b.input_ids] == ids  # every document, each ending with EOS
    assert all(b.labels == b.input_ids for b in blocks)
    assert [len(b) for b in blocks[:-1]] == [8] * (len(blocks) - 1) and 0 < len(blocks[-1]) <= 8
    assert any(eos in b.input_ids[:-1] for b in blocks)  # a block spans a document boundary: packed


def test_preference_pairs_share_the_prompt_and_label_only_the_answers(tokenizer, tmp_path):
    rows = [{"instruction": "Say hi", "chosen": "Hello there, friend!", "rejected": "No."}]
    (pair,), stats = encode_dataset(tokenizer, load_dataset(write_jsonl(tmp_path / "p.jsonl", rows)), 64)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi"}], tokenize=False,
                                           add_generation_prompt=True)
    n_prompt = len(_ids(tokenizer, prompt))
    for enc, answer in ((pair.chosen, "Hello there, friend!"), (pair.rejected, "No.")):
        assert enc.input_ids[:n_prompt] == _ids(tokenizer, prompt)
        assert set(enc.labels[:n_prompt]) == {IGNORE_INDEX}
        assert tokenizer.decode([i for i in enc.labels if i != IGNORE_INDEX]) == answer + "<|im_end|>"
    assert stats.examples == 1 and len(pair) == max(len(pair.chosen), len(pair.rejected))


def test_truncation_is_counted_and_empty_rows_dropped(tokenizer, tmp_path):
    long_prompt = "word " * 200
    rows = [
        {"messages": [{"role": "user", "content": "short"}, {"role": "assistant", "content": "fine"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": long_prompt}]},
        {"messages": [{"role": "user", "content": long_prompt}, {"role": "assistant", "content": "lost"}]},
    ]
    out, stats = encode_dataset(tokenizer, load_dataset(write_jsonl(tmp_path / "d.jsonl", rows)), 32)
    assert stats.truncated == 2 and stats.dropped == 1 and len(out) == 2
    assert all(len(r.input_ids) <= 32 for r in out)
    assert any("truncated" in n for n in stats.notes) and any("dropped" in n for n in stats.notes)


def test_length_grouped_batches_cover_each_row_once_and_cut_padding():
    import random

    rnd = random.Random(0)
    lengths = [rnd.randint(5, 500) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 8, seed=3, epoch=0)
    assert Counter(i for b in batches for i in b) == Counter(range(1000))
    assert batches == length_grouped_batches(lengths, 8, seed=3, epoch=0)
    assert batches != length_grouped_batches(lengths, 8, seed=3, epoch=1)

    def padding(bs):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)

    order = list(range(1000))
    rnd.shuffle(order)
    random_batches = [order[i : i + 8] for i in range(0, 1000, 8)]
    assert padding(batches) < 0.1 * padding(random_batches)


def test_collate_pads_only_to_the_longest_row():
    rows = [Encoded([5, 6, 7], [IGNORE_INDEX, 6, 7]), Encoded([8], [8])]
    b = collate(rows, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_tool_rows_carry_loss_on_calls_and_answers_never_on_results(tokenizer, tmp_path):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    row = {"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "SUNNY-RESULT"},
        {"role": "assistant", "content": "It is sunny."}], "tools": tools}
    (enc,), _ = encode_dataset(tokenizer, load_dataset(write_jsonl(tmp_path / "t.jsonl", [row])), 1024)
    text = tokenizer.decode(enc.input_ids)
    assert '"name": "get_weather"' in text and "SUNNY-RESULT" in text  # the tools are in the prompt
    learnt = tokenizer.decode([i for i in enc.labels if i != IGNORE_INDEX])
    # the call (arguments re-written as the template writes JSON), then the answer; never the result
    assert learnt == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' \
        "It is sunny.<|im_end|>"
