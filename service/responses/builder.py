"""One response as it is generated: its output items, built from the model's text and tool calls, and the
typed stream events that say so, each with its `sequence_number`.

Text opens an assistant message (`output_item.added`, `content_part.added`, `output_text.delta`...); a
tool call closes it and opens a `function_call` item (`function_call_arguments.delta`...); the end closes
what is open (`.done` events in reverse order of opening) and sends the response's last state
(`response.completed`, or `response.incomplete` when `max_output_tokens` cut it short).
"""

from __future__ import annotations

import time

from service.ids import new_id
from service.responses.protocol import (
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ContentPartEvent,
    ErrorEvent,
    Event,
    FunctionCall,
    IncompleteDetails,
    Logprob,
    OutputItemEvent,
    OutputMessage,
    OutputReasoning,
    OutputTextContent,
    ReasoningDeltaEvent,
    ReasoningDoneEvent,
    ReasoningTextContent,
    Response,
    ResponseError,
    ResponseEvent,
    ResponseUsage,
    TextDeltaEvent,
    TextDoneEvent,
)


class ResponseBuilder:
    def __init__(self, response: Response):
        self.response = response
        self.sequence = 0
        self.message: OutputMessage | None = None  # the open message, if any
        self.calls: dict[int, FunctionCall] = {}  # open calls by the tool parser's index
        self.thought: OutputReasoning | None = None  # the open reasoning item, if any

    def _event(self, event: Event) -> Event:
        event.sequence_number = self.sequence
        self.sequence += 1
        return event

    def _snapshot(self, kind: str) -> ResponseEvent:
        return self._event(ResponseEvent(type=kind, response=self.response.model_copy(deep=True)))

    def start(self) -> list[Event]:
        return [self._snapshot("response.created"), self._snapshot("response.in_progress")]

    # ---------------------------------------------------------------- as it streams
    def reasoning(self, delta: str) -> list[Event]:
        """A piece of the model's reasoning: a `reasoning` item, before the answer's message."""
        events = []
        if self.thought is None:
            self.thought = OutputReasoning(id=new_id("rs_", 32), status="in_progress",
                                           content=[ReasoningTextContent()])
            events.append(self._event(OutputItemEvent(type="response.output_item.added",
                                                      output_index=self._add(self.thought),
                                                      item=self.thought.model_copy(deep=True))))
        self.thought.content[0].text += delta
        events.append(self._event(ReasoningDeltaEvent(item_id=self.thought.id, output_index=self._index(self.thought),
                                                      content_index=0, delta=delta)))
        return events

    def text(self, delta: str, logprobs: list[Logprob] | None = None) -> list[Event]:
        events = self._close_reasoning()
        if self.message is None:
            events += self._close_calls()
            self.message = OutputMessage(id=new_id("msg_", 32), status="in_progress")
            index = self._add(self.message)
            events.append(self._event(OutputItemEvent(type="response.output_item.added", output_index=index,
                                                      item=self.message.model_copy(deep=True))))
            self.message.content.append(OutputTextContent())
            events.append(self._event(ContentPartEvent(type="response.content_part.added", item_id=self.message.id,
                                                       output_index=index, content_index=0,
                                                       part=OutputTextContent())))
        part = self.message.content[0]
        part.text += delta
        part.logprobs += logprobs or []
        events.append(self._event(TextDeltaEvent(item_id=self.message.id, output_index=self._index(self.message),
                                                 content_index=0, delta=delta, logprobs=logprobs or [])))
        return events

    def call(self, index: int, call_id: str | None, name: str | None, arguments: str | None) -> list[Event]:
        """A piece of the tool call the parser numbers `index`: its first piece has its id and name."""
        events = self._close_reasoning()
        if index not in self.calls:
            events += self._close_message()
            call = FunctionCall(id=new_id("fc_", 32), status="in_progress", call_id=call_id or new_id("call_", 24),
                                name=name or "")
            self.calls[index] = call
            events.append(self._event(OutputItemEvent(type="response.output_item.added",
                                                      output_index=self._add(call), item=call.model_copy())))
        call = self.calls[index]
        if arguments:
            call.arguments += arguments
            events.append(self._event(ArgumentsDeltaEvent(item_id=call.id, output_index=self._index(call),
                                                          delta=arguments)))
        return events

    def finish(self, length_cut: bool, usage: ResponseUsage) -> list[Event]:
        status = "incomplete" if length_cut else "completed"
        events = self._close_reasoning(status) + self._close_message(status) + self._close_calls(status)
        self.response.status = status
        self.response.usage = usage
        if length_cut:
            self.response.incomplete_details = IncompleteDetails(reason="max_output_tokens")
        else:
            self.response.completed_at = int(time.time())
        return events + [self._snapshot(f"response.{status}")]

    def fail(self, code: str | None, message: str, param: str | None = None) -> list[Event]:
        """An error after the stream started: the `error` event, then the response as failed."""
        self.response.status = "failed"
        self.response.error = ResponseError(code="server_error", message=message)
        return [self._event(ErrorEvent(code=code, message=message, param=param)),
                self._snapshot("response.failed")]

    # ---------------------------------------------------------------- whole
    def whole(self, text: str | None, calls: list[tuple[str, str, str]], logprobs: list[Logprob] | None,
              length_cut: bool, usage: ResponseUsage, reasoning: str | None = None) -> Response:
        """The response from the whole output: its reasoning, its text, then its calls (call id, name,
        arguments)."""
        if reasoning:
            self.reasoning(reasoning)
        if text:
            self.text(text, logprobs)
        for i, (call_id, name, arguments) in enumerate(calls):
            self.call(i, call_id, name, arguments)
        self.finish(length_cut, usage)
        return self.response

    # ---------------------------------------------------------------- items
    def _add(self, item) -> int:
        self.response.output.append(item)
        return len(self.response.output) - 1

    def _index(self, item) -> int:
        return next(i for i, x in enumerate(self.response.output) if x is item)

    def _close_message(self, status: str = "completed") -> list[Event]:
        message, self.message = self.message, None
        if message is None:
            return []
        index, part = self._index(message), message.content[0]
        message.status = status
        return [self._event(TextDoneEvent(item_id=message.id, output_index=index, content_index=0, text=part.text,
                                          logprobs=part.logprobs)),
                self._event(ContentPartEvent(type="response.content_part.done", item_id=message.id,
                                             output_index=index, content_index=0, part=part.model_copy())),
                self._event(OutputItemEvent(type="response.output_item.done", output_index=index,
                                            item=message.model_copy(deep=True)))]

    def _close_reasoning(self, status: str = "completed") -> list[Event]:
        thought, self.thought = self.thought, None
        if thought is None:
            return []
        index = self._index(thought)
        thought.status = status
        return [self._event(ReasoningDoneEvent(item_id=thought.id, output_index=index, content_index=0,
                                               text=thought.content[0].text)),
                self._event(OutputItemEvent(type="response.output_item.done", output_index=index,
                                            item=thought.model_copy(deep=True)))]

    def _close_calls(self, status: str = "completed") -> list[Event]:
        events = []
        for call in self.calls.values():
            if call.status != "in_progress":
                continue
            call.status = status
            index = self._index(call)
            events += [self._event(ArgumentsDoneEvent(item_id=call.id, output_index=index, name=call.name,
                                                      arguments=call.arguments)),
                       self._event(OutputItemEvent(type="response.output_item.done", output_index=index,
                                                   item=call.model_copy()))]
        return events
