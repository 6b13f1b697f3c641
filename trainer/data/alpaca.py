"""Alpaca rows (`instruction`, `input`, `output`, `system`, `history`), LLaMA-Factory's pairwise ones
(`chosen`, `rejected` instead of `output`) and its KTO ones (a boolean `label` beside `output`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from trainer.data.shapes import Conversation, LabelledExample, Message, PreferencePair
from trainer.data.tools import NonEmpty, Strict


class AlpacaRow(Strict):
    instruction: NonEmpty
    input: str = ""
    output: NonEmpty | None = None
    chosen: NonEmpty | None = None
    rejected: NonEmpty | None = None
    system: str | None = None
    history: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = []
    label: bool | None = None  # KTO: whether `output` is a desirable answer

    @model_validator(mode="after")
    def _output_or_pair(self) -> AlpacaRow:
        if self.output is None and (self.chosen is None or self.rejected is None):
            missing = "rejected" if self.chosen else "chosen" if self.rejected else "output"
            raise ValueError(f"'{missing}' is missing: give 'output', or 'chosen' and 'rejected' for a preference pair")
        if self.output is not None and (self.chosen or self.rejected):
            raise ValueError("give either 'output' or 'chosen' and 'rejected', not both")
        if self.label is not None and self.output is None:
            raise ValueError("'label' judges 'output': a labelled (KTO) row has an 'output'")
        return self

    def to_example(self) -> Conversation | PreferencePair | LabelledExample:
        msgs = [Message("system", self.system)] if self.system else []
        for user, assistant in self.history:
            msgs += [Message("user", user), Message("assistant", assistant, weight=0 if self.chosen else 1)]
        prompt = f"{self.instruction}\n{self.input}" if self.input else self.instruction
        msgs.append(Message("user", prompt))
        if self.chosen is not None:
            return PreferencePair(tuple(msgs), self.chosen, self.rejected)
        if self.label is not None:
            return LabelledExample(tuple(msgs), self.output, self.label)
        return Conversation(tuple(msgs + [Message("assistant", self.output)]))
