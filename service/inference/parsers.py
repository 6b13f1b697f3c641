"""Which vLLM parsers read a model's output: its tool calls and its reasoning section.

Set with `--tool-call-parser` and `--reasoning-parser` (vLLM's names), or `auto` (the default): read
from the base model's chat template, as a user would pick them from the model card:

| the template writes                                | tool parser   | reasoning parser |
|----------------------------------------------------|---------------|------------------|
| `<tool_call>` JSON (Qwen2.5, Qwen3, Hermes)          | `hermes`      |                  |
| Llama 3.1's `{"name": ..., "parameters": ...}`       | `llama3_json` |                  |
| Mistral's `[TOOL_CALLS]`                             | `mistral`     |                  |
| a `<think>` section, ChatML turns (Qwen3, QwQ)       |               | `qwen3`          |
| a `<think>` section, DeepSeek's `<｜Assistant｜>`     |               | `deepseek_r1`    |

`none` turns one off: a request with tools is then refused (the template would not show them), and
reasoning stays in the answer text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Parsers:
    tool: str | None
    reasoning: str | None


def detect_tool_parser(template: str) -> str | None:
    if "<tool_call>" in template:
        return "hermes"
    if "<|start_header_id|>" in template and '"parameters"' in template:
        return "llama3_json"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    return None


def detect_reasoning_parser(template: str) -> str | None:
    if "<think>" not in template:
        return None
    return "deepseek_r1" if "<｜Assistant｜>" in template else "qwen3"


def resolve(tool_setting: str, reasoning_setting: str, template: str | None) -> Parsers:
    """The parsers for a model with this chat template, from the settings (`auto`, `none` or a name).
    A name vLLM does not know is refused at start."""
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager

    template = template or ""
    tool = detect_tool_parser(template) if tool_setting == "auto" else None if tool_setting == "none" else tool_setting
    reasoning = detect_reasoning_parser(template) if reasoning_setting == "auto" else \
        None if reasoning_setting == "none" else reasoning_setting
    if tool is not None:
        ToolParserManager.get_tool_parser(tool)  # KeyError names it
    if reasoning is not None:
        ReasoningParserManager.get_reasoning_parser(reasoning)
    return Parsers(tool, reasoning)


def tool_parser_class(name: str):
    from vllm.tool_parsers import ToolParserManager

    return ToolParserManager.get_tool_parser(name)


def reasoning_parser(name: str, tokenizer, chat_template_kwargs: dict | None):
    """A new reasoning parser for one output (a streamed one keeps state)."""
    from vllm.reasoning import ReasoningParserManager

    return ReasoningParserManager.get_reasoning_parser(name)(
        tokenizer, chat_template_kwargs=chat_template_kwargs or {})


class ReasoningReader:
    """One output's reasoning section split from its answer, whole (`split`) or as it streams (`feed`);
    without a reasoning parser everything is answer."""

    def __init__(self, name: str | None, tokenizer, chat_template_kwargs: dict | None):
        self.parser = None if name is None else reasoning_parser(name, tokenizer, chat_template_kwargs)
        self.text, self.token_ids = "", []

    def split(self, text: str) -> tuple[str | None, str]:
        """A whole output -> (its reasoning or None, its answer)."""
        if self.parser is None:
            return None, text
        reasoning, content = self.parser.extract_reasoning(text, None)
        return reasoning or None, content or ""

    def feed(self, delta_text: str, delta_ids) -> tuple[str | None, str | None]:
        """The next piece of a streamed output -> (its reasoning part, its answer part)."""
        if self.parser is None:
            return None, delta_text
        previous_text, previous_ids = self.text, self.token_ids
        self.text, self.token_ids = self.text + delta_text, self.token_ids + list(delta_ids)
        delta = self.parser.extract_reasoning_streaming(previous_text, self.text, delta_text, previous_ids,
                                                        self.token_ids, list(delta_ids))
        if delta is None:
            return None, None
        return delta.reasoning or None, delta.content or None
