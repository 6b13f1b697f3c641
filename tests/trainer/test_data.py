import json

import pytest

from tests.support.paths import write_jsonl
from trainer.data import (
    Conversation,
    DataError,
    Message,
    PreferencePair,
    ShareGPTTags,
    TextDocument,
    ToolCall,
    load_dataset,
)

U = {"role": "user", "content": "What is 2+2?"}
A = {"role": "assistant", "content": "4"}


def test_chat_rows_become_conversations_with_weights(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"messages": [{"role": "system", "content": "Be terse."}, U, {**A, "weight": 0},
                      {"role": "user", "content": [{"type": "text", "text": "Again?"}]}, A]},
    ])
    ds = load_dataset(path)
    assert ds.format == "chat"
    assert ds.examples == [Conversation((
        Message("system", "Be terse."), Message("user", "What is 2+2?"), Message("assistant", "4", 0),
        Message("user", "Again?"), Message("assistant", "4", 1),
    ))]


def test_alpaca_rows_with_system_and_history(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Translate", "input": "chat", "output": "cat", "system": "You translate.",
         "history": [["hi", "hello"]]},
        {"instruction": "Say yes", "output": "yes"},
    ])
    ds = load_dataset(path)
    assert ds.format == "alpaca"
    assert ds.examples[0] == Conversation((
        Message("system", "You translate."), Message("user", "hi"), Message("assistant", "hello"),
        Message("user", "Translate\nchat"), Message("assistant", "cat"),
    ))
    assert ds.examples[1] == Conversation((Message("user", "Say yes"), Message("assistant", "yes")))


def test_sharegpt_default_and_custom_tags(tmp_path):
    default = write_jsonl(tmp_path / "a.jsonl", [
        {"system": "S", "conversations": [{"from": "human", "value": "q"}, {"from": "assistant", "value": "a"}]},
    ])
    assert load_dataset(default).examples == [
        Conversation((Message("system", "S"), Message("user", "q"), Message("assistant", "a")))
    ]
    custom = write_jsonl(tmp_path / "b.jsonl", [
        {"conversations": [{"role": "user", "content": "q"}, {"role": "gpt", "content": "a"}]},
    ])
    tags = ShareGPTTags(role_tag="role", content_tag="content", user_tag="user", assistant_tag="gpt")
    ds = load_dataset(custom, tags=tags)
    assert ds.format == "sharegpt"
    assert ds.examples == [Conversation((Message("user", "q"), Message("assistant", "a")))]


def test_preference_and_text_rows(tmp_path):
    pref = write_jsonl(tmp_path / "p.jsonl", [
        {"input": {"messages": [U]}, "preferred_output": [{"role": "assistant", "content": "4"}],
         "non_preferred_output": [{"role": "assistant", "content": "5"}]},
    ])
    ds = load_dataset(pref)
    assert ds.format == "preference"
    assert ds.examples == [PreferencePair((Message("user", "What is 2+2?"),), "4", "5")]
    text = write_jsonl(tmp_path / "t.jsonl", [{"text": "Once upon a time."}, {"text": "The end."}])
    assert load_dataset(text).examples == [TextDocument("Once upon a time."), TextDocument("The end.")]


def test_llama_factory_pairwise_rows_become_preference_pairs(tmp_path):
    alpaca = write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "What is 2+2?", "input": "", "chosen": "4", "rejected": "5", "system": "Be brief."},
    ])
    ds = load_dataset(alpaca)
    assert ds.kind == "preference"
    assert ds.examples == [PreferencePair((Message("system", "Be brief."), Message("user", "What is 2+2?")), "4", "5")]
    sharegpt = write_jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "human", "value": "What is 2+2?"}],
         "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"}},
    ])
    ds = load_dataset(sharegpt, tags=ShareGPTTags(assistant_tag="gpt"))
    assert ds.examples == [PreferencePair((Message("user", "What is 2+2?", weight=0),), "4", "5")]


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _call(call_id="c1", name="get_weather", arguments='{"city": "Paris"}'):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL_ROW = {"messages": [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [_call()]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "assistant", "content": "It is sunny."}], "tools": [WEATHER]}


def test_tool_rows_in_openai_and_sharegpt_form_become_the_same_conversation(tmp_path):
    openai = load_dataset(write_jsonl(tmp_path / "o.jsonl", [TOOL_ROW])).examples[0]
    assert openai.tools == (WEATHER,)
    assert openai.messages[1] == Message("assistant", "", tool_calls=(ToolCall("c1", "get_weather", {"city": "Paris"}),))
    assert openai.messages[2] == Message("tool", "sunny", tool_call_id="c1")
    sharegpt = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"from": "observation", "value": "sunny"},
        {"from": "gpt", "value": "It is sunny."}], "tools": json.dumps([WEATHER["function"]])}])
    other = load_dataset(sharegpt, tags=ShareGPTTags(assistant_tag="gpt")).examples[0]
    assert other.tools == openai.tools
    assert [m.to_dict() | {"tool_calls": None, "tool_call_id": None} for m in other.messages] == \
        [m.to_dict() | {"tool_calls": None, "tool_call_id": None} for m in openai.messages]
    assert other.messages[1].tool_calls[0].arguments == {"city": "Paris"}


def _tool_row(**changes):
    row = json.loads(json.dumps(TOOL_ROW))
    for path, value in changes.items():
        *keys, last = path.split("/")
        node = row
        for k in keys:
            node = node[int(k) if k.isdigit() else k]
        if value is None:
            node.pop(int(last) if last.isdigit() else last)
        else:
            node[int(last) if last.isdigit() else last] = value
    return row


@pytest.mark.parametrize("row,expected", [
    (_tool_row(**{"messages/1/tool_calls/0/function/arguments": "{city: Paris"}),
     "line 2: messages[1].tool_calls[0].function.arguments: not valid JSON"),
    (_tool_row(**{"messages/1/tool_calls/0/function/arguments": "[1, 2]"}),
     "line 2: messages[1].tool_calls[0].function.arguments: must be a JSON object"),
    (_tool_row(**{"messages/1/tool_calls/0/function/name": "get_time"}),
     "line 2: messages[1].tool_calls[0].function.name: unknown tool 'get_time'; the row's tools are ['get_weather']"),
    (_tool_row(**{"messages/2": None}),
     "line 2: messages[1].tool_calls: call 'c1' has no tool message with its result before the next assistant"),
    (_tool_row(**{"messages/2/tool_call_id": "c9"}), "line 2: messages[2].tool_call_id: 'c9' answers no earlier call"),
    (_tool_row(**{"messages/2/tool_call_id": None}), "line 2: messages[2]: 'tool_call_id' is missing"),
    (_tool_row(tools=None), "line 2: messages[1].tool_calls: the row calls tools but defines none"),
    (_tool_row(**{"messages/1/tool_calls": [_call(), _call("c2")], "parallel_tool_calls": False}),
     "line 2: messages[1].tool_calls: several calls in one turn, but parallel_tool_calls is false"),
    (_tool_row(**{"messages/1/tool_calls": None}), "line 2: messages[1]: 'content' is missing"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{\"name\": \"get_weather\""},
                        {"from": "observation", "value": "x"}, {"from": "assistant", "value": "a"}],
      "tools": [WEATHER["function"]]}, "line 2: conversations[1].value: not valid JSON"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": json.dumps(
        {"name": "get_time", "arguments": {}})}, {"from": "observation", "value": "x"}, {"from": "assistant", "value": "a"}],
      "tools": [WEATHER["function"]]}, "line 2: conversations[1].value[0].function.name: unknown tool 'get_time'"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "observation", "value": "x"},
                        {"from": "assistant", "value": "a"}], "tools": [WEATHER["function"]]},
     "line 2: conversations[1].from: 'observation' answers no earlier 'function_call' turn"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": json.dumps(
        {"name": "get_weather", "arguments": {}})}, {"from": "assistant", "value": "a"}], "tools": [WEATHER["function"]]},
     "line 2: conversations[1].value: call 'call_0' has no 'observation' turn with its result"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "assistant", "value": "a"}], "tools": "[{"},
     "line 2: tools: not valid JSON"),
])
def test_malformed_tool_rows_are_reported_with_line_and_field(tmp_path, row, expected):
    good = TOOL_ROW if "messages" in row else {"conversations": [{"from": "human", "value": "q"},
                                                                  {"from": "assistant", "value": "a"}]}
    with pytest.raises(DataError) as e:
        load_dataset(write_jsonl(tmp_path / "bad.jsonl", [good, row]))
    assert str(e.value.first).startswith(expected), str(e.value.first)


def test_plain_text_files_hold_one_document_per_paragraph(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("The zorblat valve opens.\nIt hums.\n\n\nThe quib gauge reads high.\n")
    ds = load_dataset(path)
    assert ds.format == "plaintext" and ds.kind == "text"
    assert ds.examples == [TextDocument("The zorblat valve opens.\nIt hums."), TextDocument("The quib gauge reads high.")]
    assert load_dataset(tmp_path / "notes.txt", data_format="plaintext").examples == ds.examples
    (tmp_path / "bad.txt").write_bytes(b"fine\nstill fine\n\xff\xfe\n")
    with pytest.raises(DataError, match="line 3: not valid UTF-8 text"):
        load_dataset(tmp_path / "bad.txt")
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(DataError, match="the file has no text"):
        load_dataset(tmp_path / "blank.txt")


def test_explicit_format_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [U, A]}])
    with pytest.raises(DataError) as e:
        load_dataset(path, data_format="text")
    assert str(e.value.first) == "line 1: messages: unknown key"


# Each bad row sits on line 2 after one good row; the expected text names line and field.
GOOD = {"messages": [U, A]}
MALFORMED = [
    ("invalid json", '{"messages": [', "line 2: invalid JSON"),
    ("not an object", "[1, 2]", "line 2: expected a JSON object, got list"),
    ("unknown top-level key", {"messages": [U, A], "mesages": []}, "line 2: mesages: unknown key"),
    ("misspelt message key", {"messages": [U, {"role": "assistant", "contnet": "4"}]},
     "line 2: messages[1].contnet: unknown key"),
    ("unknown role", {"messages": [{"role": "bot", "content": "x"}, A]}, "line 2: messages[0].role: unknown role 'bot'"),
    ("function role", {"messages": [{"role": "function", "content": "x"}, A]},
     "line 2: messages[0].role: role 'function' (the deprecated function calling) is not supported; use 'tool'"),
    ("no assistant turn", {"messages": [U]}, "line 2: messages: no assistant message"),
    ("all weights zero", {"messages": [U, {**A, "weight": 0}]}, "line 2: messages: every assistant message has weight 0"),
    ("weight out of range", {"messages": [U, {**A, "weight": 2}]}, "line 2: messages[1].weight: Input should be 0 or 1"),
    ("weight on user", {"messages": [{**U, "weight": 1}, A]}, "line 2: messages[0]: 'weight' is only allowed"),
    ("content wrong type", {"messages": [{"role": "user", "content": 7}, A]}, "line 2: messages[0].content"),
    ("empty messages", {"messages": []}, "line 2: messages: List should have at least 1 item"),
    ("tool without a function", {"messages": [U, A], "tools": [{"type": "function"}]},
     "line 2: tools[0].function: Field required"),
    ("functions not supported", {"messages": [U, A], "functions": []}, "line 2: functions: 'functions' (the deprecated"),
    ("not utf-8", b'{"messages": "\xff\xfe"}', "line 2: not valid UTF-8 text"),
]


@pytest.mark.parametrize("row,expected", [(r, e) for _, r, e in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_chat_rows_are_reported_with_line_and_field(tmp_path, row, expected):
    path = tmp_path / "bad.jsonl"
    if isinstance(row, dict):
        row = json.dumps(row)
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + (row if isinstance(row, bytes) else row.encode()) + b"\n")
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert str(e.value.first).startswith(expected), str(e.value.first)


@pytest.mark.parametrize("rows,expected", [
    ([{"instruction": "x"}], "line 1: 'output' is missing: give 'output', or 'chosen' and 'rejected'"),
    ([{"instruction": "x", "chosen": "y"}], "line 1: 'rejected' is missing"),
    ([{"instruction": "x", "output": "y", "chosen": "y", "rejected": "z"}], "line 1: give either 'output' or"),
    ([{"instruction": "x", "chosen": "y", "rejected": "z"}, {"instruction": "x", "output": "y"}],
     "line 2: a conversation row in a file of preference rows: one file holds one kind"),
    ([{"conversations": [{"from": "human", "value": "q"}, {"from": "assistant", "value": "a"}],
      "chosen": {"from": "assistant", "value": "b"}, "rejected": {"from": "assistant", "value": "c"}}],
     "line 1: conversations[1]: a preference pair's prompt must end with a 'human' turn"),
    ([{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "assistant", "value": "b"}}],
     "line 1: rejected: must be an object"),
    ([{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "human", "value": "b"},
       "rejected": {"from": "assistant", "value": "c"}}], "line 1: chosen.from: must be 'gpt'"),
    ([{"input": {"messages": [U]}, "preferred_output": [{"role": "assistant", "content": ""}],
       "non_preferred_output": [{"role": "assistant", "content": "5"}]}],
     "line 1: preferred_output[0].content: String should have at least 1 character"),
    ([{"instruction": "x", "output": "y", "histroy": []}], "line 1: histroy: unknown key"),
    ([{"instruction": "x", "output": "y", "history": [["only one"]]}], "line 1: history[0]"),
    ([{"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}],
     "line 1: conversations[1].from: unknown role 'bot'"),
    ([{"conversations": [{"from": "human", "value": "q"}, {"from": "assistant", "content _tag": "a"}]}],
     "line 1: conversations[1].content _tag: unknown key"),
    ([{"conversations": [{"from": "human", "value": "q"}]}], "line 1: conversations: no assistant message"),
    ([{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{}"}]}],
     "line 1: conversations[1].value: must be {\"name\": ..., \"arguments\": {...}} or a list of them"),
    ([{"input": {"messages": [U]}, "preferred_output": [{"role": "assistant", "content": "4"}]}],
     "line 1: non_preferred_output: Field required"),
    ([{"text": ""}], "line 1: text: String should have at least 1 character"),
    ([{"prompt": "x", "completion": "y"}], "line 1: cannot tell the data format from keys ['completion', 'prompt']"),
])
def test_malformed_rows_of_other_formats(tmp_path, rows, expected):
    with pytest.raises(DataError) as e:
        load_dataset(write_jsonl(tmp_path / "bad.jsonl", rows))
    assert str(e.value.first).startswith(expected), str(e.value.first)


def test_every_bad_row_is_counted_and_empty_files_rejected(tmp_path):
    rows = [GOOD] + [{"messages": [U]}] * 30
    with pytest.raises(DataError) as e:
        load_dataset(write_jsonl(tmp_path / "many.jsonl", rows))
    assert e.value.total_bad == 30 and len(e.value.errors) == 20
    assert [err.line for err in e.value.errors] == list(range(2, 22))
    assert "(and 10 more)" in str(e.value)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="the file has no rows"):
        load_dataset(tmp_path / "empty.jsonl")


# ------------------------------------------------------------------ files as LLaMA-Factory users keep them
SHAREGPT_ROWS = [
    {"conversations": [{"from": "human", "value": "Who are you?"}, {"from": "gpt", "value": "I am ftserve."}]},
    {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"},
                       {"from": "gpt", "value": "4"}]},
]


def test_a_json_array_of_sharegpt_rows_with_llamafactory_s_tags(tmp_path):
    path = tmp_path / "identity.json"
    path.write_text(json.dumps(SHAREGPT_ROWS, indent=2, ensure_ascii=False))
    ds = load_dataset(path)
    assert ds.format == "sharegpt" and len(ds.examples) == 2
    assert [m.role for m in ds.examples[1].messages] == ["system", "user", "assistant"]


def test_openai_role_names_are_read_beside_the_default_tags(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [
        {"conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "a"}]},
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    assert [[m.role for m in e.messages] for e in load_dataset(path).examples] == [["user", "assistant"]] * 2
    custom = ShareGPTTags(role_tag="from", content_tag="value", user_tag="Q", assistant_tag="A")
    with pytest.raises(DataError, match="unknown role 'user'.*unknown role 'human'"):  # configured: as they are
        load_dataset(path, tags=custom)


def test_an_array_s_bad_element_is_named_by_index_and_starting_line(tmp_path):
    rows = SHAREGPT_ROWS + [{"conversations": [{"from": "human", "value": "q"}, {"form": "gpt", "value": "a"}]}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows, indent=2))
    with pytest.raises(DataError) as e:
        load_dataset(path)
    start = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line == "  {"][2]
    assert str(e.value.first) == f"element 2 (line {start}): conversations[1].form: unknown key (expected 'from' and 'value')"
    assert len(e.value.errors) == 1


def test_a_json_syntax_error_in_an_array_is_one_error_at_its_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"text": "a"},\n  {"text": "b",}\n]\n')
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert len(e.value.errors) == 1 and str(e.value.first).startswith("element 1 (line 3): invalid JSON")


def test_windows_files_a_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(r).encode() for r in SHAREGPT_ROWS) + b"\r\n")
    assert len(load_dataset(path).examples) == 2
    array = tmp_path / "win.json"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps(SHAREGPT_ROWS, indent=2).replace("\n", "\r\n").encode())
    assert len(load_dataset(array).examples) == 2
    text = tmp_path / "win.txt"
    text.write_bytes(b"\xef\xbb\xbfFirst document.\r\n\r\nSecond one.\r\n")
    assert [d.text for d in load_dataset(text).examples] == ["First document.", "Second one."]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_file_is_named_with_its_fix(tmp_path, encoding):
    path = tmp_path / "unicode.jsonl"
    path.write_bytes("".join(json.dumps(r) + "\n" for r in SHAREGPT_ROWS).encode(encoding))
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert len(e.value.errors) == 1 and "UTF-16" in str(e.value) and "save it as UTF-8" in str(e.value)


def test_a_file_of_neither_shape_gets_one_message(tmp_path):
    path = tmp_path / "object.json"
    path.write_text(json.dumps({"data": SHAREGPT_ROWS}, indent=2))
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert len(e.value.errors) == 1 and e.value.total_bad == 1
    assert "a data file is JSONL (one JSON object per line) or a JSON array of objects" in str(e.value)


# ------------------------------------------------------------------ KTO: answers labelled desirable or not
def test_labelled_rows_in_every_format_become_labelled_examples(tmp_path):
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [U, A], "label": True},
                                                 {"messages": [U, {**A, "content": "5"}], "label": False}])
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "2+2?", "output": "4", "label": True}])
    sharegpt = tmp_path / "kto.json"
    sharegpt.write_text(json.dumps([{"messages": [{"role": "user", "content": "2+2?"},
                                                  {"role": "assistant", "content": "5"}], "label": False}]))
    info = {"kto": {"file_name": "kto.json", "formatting": "sharegpt",
                    "columns": {"messages": "messages", "kto_tag": "label"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    from trainer.data import LabelledExample
    from trainer.data.dataset_info import load_named_datasets

    examples = load_dataset(chat).examples
    assert [(e.completion, e.desirable) for e in examples] == [("4", True), ("5", False)]
    assert examples[0].prompt[0].content == "What is 2+2?" and load_dataset(chat).kind == "labelled"
    assert load_dataset(alpaca).examples[0] == LabelledExample((Message("user", "2+2?"),), "4", True)
    assert load_named_datasets("kto", tmp_path).examples[0].desirable is False


@pytest.mark.parametrize("rows, expected", [
    ([{"messages": [U, A], "label": "yes"}], "line 1: label: Input should be a valid boolean"),
    ([{"messages": [A, U], "label": True}], "line 1: label: a labelled (KTO) row ends with the assistant answer"),
    ([{"instruction": "q", "chosen": "a", "rejected": "b", "label": True}], "line 1: 'label' judges 'output'"),
    ([{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "label": 1}],
     "line 1: label: must be true or false"),
    ([{"messages": [U, A], "label": True}, {"messages": [U, A]}], "line 2: a conversation row in a file of labelled"),
])
def test_bad_labelled_rows(tmp_path, rows, expected):
    with pytest.raises(DataError) as e:
        load_dataset(write_jsonl(tmp_path / "d.jsonl", rows))
    assert str(e.value.first).startswith(expected), str(e.value.first)


def test_llamafactory_v1_rows_typed_parts_and_loss_weight(tmp_path):
    path = write_jsonl(tmp_path / "v1.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "text", "value": "2+2?"}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "reasoning", "value": "Two and two."}, {"type": "text", "value": "4"}],
         "loss_weight": 1.0},
        {"role": "user", "content": [{"type": "text", "value": "And 3+3?"}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "text", "value": "6"}], "loss_weight": 0.0}]}])
    (conversation,) = load_dataset(path).examples
    assert conversation.messages[1] == Message("assistant", "<think>\nTwo and two.\n</think>\n\n4", weight=1)
    assert conversation.messages[3].weight == 0 and conversation.messages[0].content == "2+2?"


@pytest.mark.parametrize("message, expected", [
    ({"role": "user", "content": "q", "loss_weight": 1.0}, "'loss_weight' 1 is only allowed on assistant"),
    ({"role": "user", "content": [{"type": "reasoning", "value": "x"}]}, "a 'reasoning' part is only allowed"),
    ({"role": "user", "content": "q", "loss_weight": 0.5}, "loss_weight"),
])
def test_bad_v1_messages(tmp_path, message, expected):
    with pytest.raises(DataError, match=expected):
        load_dataset(write_jsonl(tmp_path / "v1.jsonl", [{"messages": [message, A]}]))


@pytest.mark.parametrize("name, text", [("deep.json", "[" * 100_000 + "]" * 100_000),
                                        ("deep.jsonl", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")])
def test_json_nested_too_deeply_is_a_row_error_not_a_crash(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert "invalid JSON: nested too deeply" in str(e.value) and str(e.value.first).startswith(("line 1", "element 0"))


def test_a_tool_renders_without_the_servers_strict_flag():
    """`strict` tells the server to constrain the arguments; the model sees the same tool with or without it,
    in training rows and in requests."""
    from trainer.data.tools import ToolDefinition

    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    strict = ToolDefinition.model_validate({**tool, "function": {**tool["function"], "strict": True}})
    assert strict.rendered() == ToolDefinition.model_validate(tool).rendered() == tool
