"""Training data: one loader for JSONL files in five formats (this package's modules: shapes, errors,
tools, one module per format family, loader).

Every row is validated by a strict pydantic model of its format (unknown keys are errors)
and normalised into one of three shapes the tokenizer understands:

- `Conversation`: chat messages, each assistant turn with a loss weight (0 or 1);
- `TextDocument`: raw text for continued pre-training;
- `PreferencePair`: a prompt with a preferred and a non-preferred answer (DPO).

Formats (detected per file from the first row's keys; `data_format` overrides):

| format       | row keys                                                               |
|--------------|------------------------------------------------------------------------|
| `chat`       | `messages` (OpenAI chat; `weight` 0/1 on assistant messages)           |
| `alpaca`     | `instruction`, `input`?, `output`, `system`?, `history`?               |
|              | pairwise (LLaMA-Factory): `chosen`, `rejected` instead of `output`     |
| `sharegpt`   | `conversations` (tags configurable), `system`?                         |
|              | pairwise (LLaMA-Factory): `chosen`, `rejected` turns after the prompt  |
| `preference` | `input.messages`, `preferred_output`, `non_preferred_output` (OpenAI)  |
| `text`       | `text`                                                                 |
| `plaintext`  | not JSONL: a `.txt` file, documents separated by blank lines           |

Every row of a file is one kind of example: a file mixing pairs and conversations is an error.

Errors name the line (1-based) and the field: `line 7: messages[2].role: ...`.
"""

from trainer.data.errors import MAX_ERRORS, DataError, RowError, field_path
from trainer.data.loader import FORMATS, detect_format, load_dataset, parse_row
from trainer.data.shapes import (
    KINDS, STAGE_KINDS, Conversation, Dataset, Example, LabelledExample, Message, PreferencePair, ShareGPTTags,
    TextDocument, ToolCall, check_stage,
)
from trainer.data.text import load_plain_text
from trainer.data.tools import FunctionDefinition, ToolDefinition, check_tool_use

__all__ = [
    "FORMATS", "KINDS", "MAX_ERRORS", "STAGE_KINDS", "Conversation", "DataError", "Dataset", "Example",
    "FunctionDefinition", "LabelledExample", "Message", "PreferencePair", "RowError", "ShareGPTTags", "TextDocument", "ToolCall",
    "ToolDefinition", "check_stage", "check_tool_use", "detect_format", "field_path", "load_dataset",
    "load_plain_text", "parse_row",
]
