"""Tool calling on /v1/chat/completions: what the prompt shows, what constrains the output, how it is read.

The base model's chat template renders the tools (for the tiny model: Qwen2.5 / Hermes style, the
same template the trainer renders tool rows with, so serving and training cannot drift). The
output is read back with the model's vLLM tool parser (`hermes` for the tiny model; parsers.py
picks it from the template), whole or as it streams. Constraints come from vLLM's structural tags
(xgrammar), as vLLM's own server builds them:

- `auto` (the default with tools): free text or calls; a tool with `strict: true` gets arguments
  that validate against its schema;
- `required` / a named function: the output is one or more calls (of that function), every
  argument object constrained to the tool's `parameters` schema;
- `none`: the tools are left out of the prompt and the output is text;
- `parallel_tool_calls: false`: at most one call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from service.errors import APIError, Kind
from service.inference.protocol import (
    ChatCompletionMessageToolCall,
    ChatCompletionRequest,
    ChoiceDeltaFunction,
    ChoiceDeltaToolCall,
    FunctionCall,
)

@dataclass
class ToolUse:
    """One request's tool use, read with the vLLM tool parser `parser_name` (None: the model has none)."""

    req: ChatCompletionRequest
    tokenizer: object
    parser_name: str | None = "hermes"
    _vllm_request: object = field(default=None, repr=False)
    _whole_output_parser: object = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return bool(self.req.tools) and self.req.tool_choice != "none"

    def template_tools(self) -> list[dict] | None:
        """The tools as the chat template takes them (as training renders them); None when the prompt shows
        none."""
        if not self.active:
            return None
        return [t.rendered() for t in self.req.tools]

    def _request(self):
        """The request in vLLM's own type, which its structural tags and parsers read."""
        if self._vllm_request is None:
            from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest as VllmRequest

            try:
                self._vllm_request = VllmRequest(
                    model=self.req.model, messages=[{"role": "user", "content": ""}],
                    tools=[t.model_dump(exclude_none=True) for t in self.req.tools] if self.active else None,
                    parallel_tool_calls=self.req.parallel_tool_calls is not False,
                    tool_choice=self.req.tool_choice.model_dump() if hasattr(self.req.tool_choice, "model_dump")
                    else (self.req.tool_choice or "auto"))
            except ValueError as e:
                raise APIError(Kind.INVALID_REQUEST, f"The tools cannot be used: {e}", param="tools") from None
        return self._vllm_request

    def parser(self):
        """A new parser: a streamed choice needs its own (it keeps state); whole outputs share one."""
        from service.inference.parsers import tool_parser_class

        return tool_parser_class(self.parser_name)(self.tokenizer, self._request().tools)

    def _shared_parser(self):
        if self._whole_output_parser is None:
            self._whole_output_parser = self.parser()
        return self._whole_output_parser

    def structured_outputs(self):
        """The structural tag that constrains the output, or None (free text)."""
        if not self.active:
            return None
        from vllm.sampling_params import StructuredOutputsParams
        from vllm.tool_parsers.structural_tag_registry import limit_to_single_tool_call
        from vllm.tool_parsers.tool_strict_level import ToolStrictLevel

        forced = self.req.tool_choice not in (None, "auto")
        single = self.req.parallel_tool_calls is False
        level = ToolStrictLevel.PARAMETER if forced else ToolStrictLevel.FUNCTION if single else ToolStrictLevel.AUTO
        tag = self._shared_parser().get_structural_tag(self._request(), reasoning=False, strict_level=level)
        if tag is None:
            if forced:
                raise APIError(Kind.INVALID_REQUEST, f"This model's tool parser ({self.parser_name}) cannot "
                               "constrain the output to a call, so tool_choice cannot force one; use 'auto'.",
                               param="tool_choice")
            return None
        if single:
            limit_to_single_tool_call(tag)
        return StructuredOutputsParams(structural_tag=json.dumps(_one_space(tag.model_dump())))

    def check_constraints(self) -> None:
        if self.active and self.parser_name is None:
            raise APIError(Kind.INVALID_REQUEST, "This model's chat template renders no tools, and the server has "
                           "no tool parser for it (--tool-call-parser): send the request without tools.",
                           param="tools")
        if self.active and self.req.tool_choice not in (None, "auto", "none") and (
                self.req.structured_outputs is not None or
                (self.req.response_format is not None and self.req.response_format.type != "text")):
            raise APIError(Kind.INVALID_REQUEST, "A tool_choice that forces a call cannot be combined with "
                           "response_format or structured_outputs: the output is the call.", param="tool_choice")

    def extract(self, text: str) -> tuple[str | None, list[ChatCompletionMessageToolCall]]:
        """A whole output -> (its text before any call, its calls)."""
        if not self.active:
            return text, []
        found = self._shared_parser().extract_tool_calls(text, self._request())
        if not found.tools_called:
            return text, []
        calls = [ChatCompletionMessageToolCall(id=c.id, function=FunctionCall(
            name=c.function.name, arguments=c.function.arguments)) for c in found.tool_calls]
        return found.content or None, calls

    def stream_reader(self) -> StreamReader:
        return StreamReader(self, self.parser() if self.active else None)


def _one_space(node):
    """At most one whitespace character between JSON tokens of the arguments (the JSON the trainer
    renders, `{"city": "Paris"}`, has single spaces), as the engine's JSON outputs allow none: a model
    cannot fill its answer with whitespace."""
    if isinstance(node, dict):
        if node.get("type") == "json_schema" and node.get("max_whitespace_cnt") is None:
            node["max_whitespace_cnt"] = 1
        return {k: _one_space(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_one_space(v) for v in node]
    return node


class StreamReader:
    """One streamed choice's output, read into content and tool-call deltas as OpenAI streams them."""

    def __init__(self, use: ToolUse, parser):
        self.use, self.parser = use, parser
        self.text, self.token_ids = "", []
        self.called = False

    def feed(self, delta_text: str, delta_ids: list[int]) -> tuple[str | None, list[ChoiceDeltaToolCall]]:
        previous_text, previous_ids = self.text, self.token_ids
        self.text, self.token_ids = self.text + delta_text, self.token_ids + list(delta_ids)
        if self.parser is None:
            return delta_text or None, []
        delta = self.parser.extract_tool_calls_streaming(
            previous_text, self.text, delta_text, previous_ids, self.token_ids, list(delta_ids), self.use._request())
        if delta is None:
            return None, []
        calls = []
        for c in delta.tool_calls or []:
            function = c.function.model_dump(exclude_none=True) if hasattr(c.function, "model_dump") \
                else (c.function or {})
            if c.id is not None:  # a call's first piece: OpenAI sends its arguments as "" there
                function.setdefault("arguments", "")
                self.called = True
            calls.append(ChoiceDeltaToolCall(index=c.index, id=c.id, type="function" if c.id else None,
                                             function=ChoiceDeltaFunction(**function)))
        return delta.content or None, calls
