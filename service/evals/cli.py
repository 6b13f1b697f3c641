"""`ftserve eval QUESTIONS.jsonl --model A --model B`: ask models the same questions, side by side.

Questions are JSONL rows: chat rows as for training (`{"messages": [...]}`: the conversation before
the last assistant turn is asked, that turn is the reference) or `{"question": ..., "answer"?: ...}`.
Models are asked through a running server's `/v1/chat/completions` (`--base-url`), or offline
with transformers + peft (`--offline --base-model DIR`, each `--model` then `base` or an adapter
directory). Greedy by default. `--repeat N` asks each question N times (at `--temperature`,
default 0.7 then) and reports how often the N answers agree: the "ask three times, compare" check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from trainer.evaluation import similarity


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="ask models the same questions and compare their answers side by side",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("questions", type=Path)
    p.add_argument("--model", action="append", required=True, help="a model to ask (repeat the flag for more)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the server's API (default: %(default)s)")
    p.add_argument("--api-key", default=None, help="bearer key for the server (default: $FTSERVE_API_KEY)")
    p.add_argument("--offline", action="store_true", help="run the models here with transformers + peft")
    p.add_argument("--base-model", type=Path, help="with --offline: the base model directory")
    p.add_argument("--repeat", type=int, default=1, help="ask each question N times and report agreement")
    p.add_argument("--temperature", type=float, default=None, help="default 0, or 0.7 with --repeat > 1")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def load_questions(path: Path) -> list[dict]:
    """[{"messages": [...], "reference": str | None}], one per row; a bad row is a ValueError naming it."""
    questions = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "messages" in row:
                messages = row["messages"]
                last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
                if last is None:
                    questions.append({"messages": messages, "reference": None})
                else:
                    questions.append({"messages": messages[:last], "reference": messages[last]["content"]})
            else:
                questions.append({"messages": [{"role": "user", "content": str(row["question"])}],
                                  "reference": row.get("answer")})
        except (ValueError, KeyError, TypeError) as e:
            why = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise ValueError(f"{path}:{n}: not a question row ({{\"messages\": [...]}} or "
                             f"{{\"question\": ...}}): {why}") from None
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


class _Server:
    def __init__(self, base_url: str, api_key: str | None):
        import os

        import httpx

        key = api_key or os.environ.get("FTSERVE_API_KEY")
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=300,
                                 headers={"authorization": f"Bearer {key}"} if key else {})

    def ask(self, model: str, messages: list[dict], temperature: float, max_tokens: int, seed: int) -> str:
        import httpx

        try:
            r = self.http.post("/chat/completions", json={"model": model, "messages": messages, "seed": seed,
                                                          "temperature": temperature, "max_tokens": max_tokens})
        except httpx.HTTPError as e:
            raise RuntimeError(f"cannot reach {self.http.base_url}: {e}") from None
        if r.status_code != 200:
            raise RuntimeError(f"{model}: {r.status_code} {r.text[:300]}")
        return r.json()["choices"][0]["message"]["content"] or ""


class _Offline:
    def __init__(self, base_model: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.base_model, self.tokenizer = base_model, AutoTokenizer.from_pretrained(base_model)
        self.loaded: dict[str, object] = {}
        self._load = AutoModelForCausalLM.from_pretrained

    def _model(self, name: str):
        if name not in self.loaded:
            model = self._load(self.base_model)
            if name != "base":
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, name)
            self.loaded[name] = model.eval()
        return self.loaded[name]

    def ask(self, model: str, messages: list[dict], temperature: float, max_tokens: int, seed: int) -> str:
        import torch

        torch.manual_seed(seed)
        tok = self.tokenizer
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        stops = [t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None]
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        out = self._model(model).generate(**enc, max_new_tokens=max_tokens, eos_token_id=stops,
                                          pad_token_id=stops[-1], **sampling)
        return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def evaluate(asker, models: list[str], questions: list[dict], repeat: int, temperature: float, max_tokens: int,
             progress: bool) -> dict:
    """Every model's answers (`repeat` per question) and its summary: exact, fuzzy, agreement."""
    from tqdm import tqdm

    bar = tqdm(total=len(models) * len(questions) * repeat, unit="answer", disable=not progress, file=sys.stderr)
    results = {}
    for model in models:
        answers = []
        for q in questions:
            tries = []
            for k in range(repeat):
                tries.append(asker.ask(model, q["messages"], temperature, max_tokens, seed=k))
                bar.update()
            answers.append(tries)
        graded = [(a[0], q["reference"]) for a, q in zip(answers, questions) if q["reference"] is not None]
        summary = {"answers": answers}
        if graded:
            summary["exact_match"] = sum(a.strip() == r.strip() for a, r in graded) / len(graded)
            summary["fuzzy_match"] = sum(similarity(a, r) for a, r in graded) / len(graded)
        if repeat > 1:  # the share of questions whose answers all agree, and of answers agreeing with the most common
            summary["agreement"] = sum(len(set(a)) == 1 for a in answers) / len(answers)
            summary["majority_share"] = sum(Counter(a).most_common(1)[0][1] for a in answers) / (len(answers) * repeat)
        results[model] = summary
    bar.close()
    return results


def table(models: list[str], questions: list[dict], results: dict, width: int = 36) -> str:
    def cut(text: str) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    def mark(answer: str, reference: str | None) -> str:
        return "" if reference is None else ("= " if answer.strip() == reference.strip() else "x ")

    header = ["question", "reference", *models]
    rows = [[cut(q["messages"][-1]["content"]), cut(q["reference"] or "")]
            + [mark(results[m]["answers"][i][0], q["reference"]) + cut(results[m]["answers"][i][0]) for m in models]
            for i, q in enumerate(questions)]
    summary = []
    for key, label in (("exact_match", "exact match"), ("fuzzy_match", "fuzzy match"), ("agreement", "agreement")):
        if any(key in results[m] for m in models):
            summary.append([label, ""] + [f"{results[m][key]:.1%}" if key in results[m] else "" for m in models])
    widths = [max(_width(str(r[c])) for r in [header, *rows, *summary]) for c in range(len(header))]
    line = lambda r: "  ".join(str(v) + " " * (w - _width(str(v))) for v, w in zip(r, widths)).rstrip()  # noqa: E731
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, rows), rule, *map(line, summary)])


def _width(text: str) -> int:
    """Columns on a terminal: Chinese (East Asian wide) characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def main(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        print("error: --repeat must be at least 1", file=sys.stderr)
        return 2
    if args.offline and args.base_model is None:
        print("error: --offline needs --base-model DIR", file=sys.stderr)
        return 2
    try:
        questions = load_questions(args.questions)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    temperature = args.temperature if args.temperature is not None else (0.7 if args.repeat > 1 else 0.0)
    asker = _Offline(args.base_model) if args.offline else _Server(args.base_url, args.api_key)
    try:
        results = evaluate(asker, args.model, questions, args.repeat, temperature, args.max_tokens,
                           progress=not args.quiet)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"questions": questions, "models": results}, ensure_ascii=False, indent=1))
    else:
        print(table(args.model, questions, results))
    return 0
