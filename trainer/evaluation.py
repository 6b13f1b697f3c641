"""Before and after: the checks a user makes by hand around a fine-tune, measured by the trainer.

- Did it learn? The model's greedy answer to each validation conversation's prompt (everything
  before its last assistant turn) against that turn: `exact_match` (the share answered exactly)
  and `fuzzy_match` (the mean rapidfuzz `WRatio` / 100, the Evals API's `fuzzy_match` grader).
- Did it do harm? On a general set shipped with the project (`trainer/sets/general.jsonl`:
  greetings and everyday questions, English and Chinese): `general_perplexity` of its answers,
  and `general_agreement`, the share of its prompts the model answers as it did before training.

Measured before the first step (the model as the job starts: the base model, or the adapter it
trains on from) and at every checkpoint and the end, with the same greedy settings. Only for
chat data (SFT); at most `MAX_PROBES` validation conversations are asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.data import load_dataset
from trainer.encoding import IGNORE_INDEX, Encoded, encode_conversation

GENERAL_SET = Path(__file__).with_name("sets") / "general.jsonl"
MAX_PROBES = 64
MAX_NEW_TOKENS = 64


@dataclass
class Probe:
    prompt: list[int]
    reference: str
    answer_ids: list[int]  # the reference's tokens (perplexity)


def probes(rows: list[Encoded], tokenizer) -> list[Probe]:
    """A probe per conversation: its tokens up to its last assistant turn, and that turn."""
    found = []
    for row in rows:
        if not isinstance(row, Encoded) or row.n_label_tokens == 0:
            continue
        end = max(i for i, label in enumerate(row.labels) if label != IGNORE_INDEX) + 1
        start = end
        while start > 0 and row.labels[start - 1] != IGNORE_INDEX:
            start -= 1
        answer = row.input_ids[start:end]
        found.append(Probe(row.input_ids[:start], tokenizer.decode(answer, skip_special_tokens=True).strip(), answer))
    return found


def similarity(answer: str, reference: str) -> float:
    from rapidfuzz import fuzz, utils

    return fuzz.WRatio(answer, reference, processor=utils.default_process) / 100


class BeforeAfter:
    def __init__(self, tokenizer, eval_rows: list, device):
        self.tokenizer, self.device = tokenizer, device
        self.valid = probes(eval_rows[:MAX_PROBES], tokenizer)
        general = load_dataset(GENERAL_SET).examples
        self.general = probes([encode_conversation(tokenizer, c) for c in general], tokenizer)
        self.stops = [t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None]
        self.first_general: list[str] | None = None

    @property
    def active(self) -> bool:
        return bool(self.valid)

    @torch.no_grad()
    def measure(self, model, prefix: str = "valid") -> tuple[dict, list[str]]:
        """The metrics, and the answers to the validation prompts (in order)."""
        was_training = model.training
        model.eval()
        answers = self._answers(model, self.valid)
        general = self._answers(model, self.general)
        if self.first_general is None:
            self.first_general = general
        n = max(len(self.valid), 1)
        metrics = {
            f"{prefix}_exact_match": round(sum(a == p.reference for a, p in zip(answers, self.valid)) / n, 6),
            f"{prefix}_fuzzy_match": round(sum(similarity(a, p.reference) for a, p in zip(answers, self.valid)) / n,
                                           6),
            "general_perplexity": round(self._perplexity(model), 4),
            "general_agreement": round(sum(a == b for a, b in zip(general, self.first_general))
                                       / max(len(general), 1), 6),
        }
        model.train(was_training)
        return metrics, answers

    def _answers(self, model, batch: list[Probe]) -> list[str]:
        """Greedy answers, all prompts in one left-padded batch, as long as the longest reference + 8."""
        if not batch:
            return []
        width = max(len(p.prompt) for p in batch)
        pad = self.stops[-1]
        ids = torch.tensor([[pad] * (width - len(p.prompt)) + p.prompt for p in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(p.prompt)) + [1] * len(p.prompt) for p in batch], device=self.device)
        new = min(MAX_NEW_TOKENS, max(len(p.answer_ids) for p in batch) + 8)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                             eos_token_id=self.stops, pad_token_id=pad)
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]

    def _perplexity(self, model) -> float:
        loss, tokens = 0.0, 0
        for probe in self.general:
            ids = torch.tensor([probe.prompt + probe.answer_ids], device=self.device)
            labels = ids.clone()
            labels[0, :len(probe.prompt)] = IGNORE_INDEX
            n = len(probe.answer_ids)
            loss += model(input_ids=ids, labels=labels).loss.item() * n
            tokens += n
        return math.exp(loss / max(tokens, 1))
