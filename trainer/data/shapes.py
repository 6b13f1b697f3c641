"""The normalised shapes every format becomes: conversations, text documents and preference pairs;
the dataset a file holds; and which stage trains on which kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from trainer.data.errors import FieldError


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict  # decoded from the JSON text


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    weight: int = 1  # only meaningful on assistant messages
    tool_calls: tuple[ToolCall, ...] = ()  # assistant messages that call tools
    tool_call_id: str | None = None  # tool messages: the call they answer

    def to_dict(self) -> dict:
        """The message as chat templates take it (OpenAI's shape, arguments as a mapping)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                  "arguments": c.arguments}} for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    tools: tuple[dict, ...] = ()  # OpenAI tool definitions ({"type": "function", "function": {...}})


@dataclass(frozen=True)
class TextDocument:
    text: str


@dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[Message, ...]
    preferred: str
    non_preferred: str
    tools: tuple[dict, ...] = ()


@dataclass(frozen=True)
class LabelledExample:
    """A prompt and one answer, labelled desirable or not (KTO: LLaMA-Factory's `kto_tag`, a row's `label`)."""

    prompt: tuple[Message, ...]
    completion: str
    desirable: bool
    tools: tuple[dict, ...] = ()


Example = Conversation | TextDocument | PreferencePair | LabelledExample
KINDS = {Conversation: "conversation", TextDocument: "text", PreferencePair: "preference",
         LabelledExample: "labelled"}


def labelled(conversation: Conversation, label: bool) -> LabelledExample:
    """A labelled row: its last message is the answer the label judges, the rest its prompt."""
    *prompt, answer = conversation.messages
    if answer.role != "assistant" or answer.tool_calls or not prompt:
        raise FieldError("label", "a labelled (KTO) row ends with the assistant answer its label judges, "
                         "after at least one prompt message")
    return LabelledExample(tuple(prompt), answer.content, label, conversation.tools)


@dataclass(frozen=True)
class ShareGPTTags:
    """Key and role names of ShareGPT rows (LLaMA-Factory's `tags`, with its defaults). With the defaults,
    OpenAI's `user` and `assistant` are read as `human` and `gpt` too."""

    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    observation_tag: str = "observation"
    function_tag: str = "function_call"
    system_tag: str = "system"


@dataclass
class Dataset:
    path: str
    format: str
    examples: list[Example] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """`conversation`, `text` or `preference`: what every example of the file is."""
        return KINDS[type(self.examples[0])]


def check_turns(messages: list[Message]) -> None:
    if not any(m.role == "assistant" for m in messages):
        raise ValueError("no assistant message: there is nothing to learn from this row")
    if not any(m.role == "assistant" and m.weight for m in messages):
        raise ValueError("every assistant message has weight 0: there is nothing to learn from this row")


STAGE_KINDS = {"sft": "conversation", "pt": "text", "dpo": "preference", "kto": "labelled"}


def check_stage(stage: str, kind: str) -> None:
    """Each stage trains on one kind of example: conversations (sft), text (pt), preference pairs (dpo)."""
    if STAGE_KINDS[stage] != kind:
        fits = {k: s for s, k in STAGE_KINDS.items()}[kind]
        raise ValueError(f"stage '{stage}' does not train on {kind} data (use stage '{fits}' for it); "
                         "sft trains on conversations, pt on text, dpo on preference pairs, kto on labelled "
                         "answers")
