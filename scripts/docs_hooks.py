"""mkdocs hook: pages say `<!-- ftserve:NAME -->` where generated reference goes, and this fills it in from
the code itself (so the docs cannot drift from it): the settings (Settings' docstrings), the keys of
`ftserve train` (TrainConfig's), the command line (argparse's help), the API (openapi.yaml), the
trainer's events (trainer/contract.py), and the benchmark figures (bench/results/*.json)."""

from __future__ import annotations

import io
import json
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- ftserve:(\w[\w-]*)(?: (\S+))? -->")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def settings() -> str:
    from service.settings import Settings

    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else f"`{default}`"
        rows.append(f"| `--{name.replace('_', '-')}` | `FTSERVE_{name.upper()}` | {_cell(shown)} | "
                    f"{_cell(field.description or '')} |")
    return "\n".join(rows)


def train_keys() -> str:
    from trainer.config import TrainConfig

    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, field in TrainConfig.__pydantic_fields__.items():
        default = "required" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
        rows.append(f"| `{name}` | {_cell(default)} | {_cell(field.description or '')} |")
    return "\n".join(rows)


def cli() -> str:
    from service.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    out = ["```text", parser.format_help().rstrip(), "```"]
    for name, command in sub.choices.items():
        out += ["", f"## `ftserve {name}`", "", "```text", command.format_help().rstrip(), "```"]
    return "\n".join(out)


def api() -> str:
    spec = yaml.safe_load((REPO / "openapi.yaml").read_text())
    out = []
    for tag in dict.fromkeys(op.get("tags", ["other"])[0] for path in spec["paths"].values() for op in path.values()):
        out += ["", f"## {tag}", "", "| method | path | request | response |", "|---|---|---|---|"]
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                if op.get("tags", ["other"])[0] != tag:
                    continue
                body = op.get("requestBody", {}).get("content", {})
                request = ", ".join(_schema(c.get("schema", {})) for c in body.values()) or ""
                ok = op.get("responses", {}).get("200", {}).get("content", {})
                response = ", ".join(_schema(c.get("schema", {})) for c in ok.values()) or ""
                out.append(f"| {method.upper()} | `{path}` | {request} | {response} |")
    return "\n".join(out).lstrip()


def _schema(schema: dict) -> str:
    ref = schema.get("$ref") or (schema.get("anyOf") or [{}])[0].get("$ref")
    return f"`{ref.rsplit('/', 1)[1]}`" if ref else (f"`{schema['type']}`" if "type" in schema else "")


def events() -> str:
    from trainer import contract

    out = []
    for cls in (contract.Info, contract.Metrics, contract.Evaluation, contract.Checkpoint, contract.Done,
                contract.Interrupted, contract.Error):
        out += [f"## `{cls.model_fields['type'].default}`", "", _cell(cls.__doc__ or ""), "",
                "| field | type | default |", "|---|---|---|"]
        for name, field in cls.model_fields.items():
            if name == "type":
                continue
            kind = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
            default = "required" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
            out.append(f"| `{name}` | `{_cell(kind)}` | {default} |")
        out.append("")
    return "\n".join(out)


def bench(name: str) -> str:
    data = json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())
    rows = [f"`bench/results/{name}.json`:", "", "| figure | value |", "|---|---|"]

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, inner in enumerate(value):
                walk(f"{prefix}[{i}]", inner)
        else:
            rows.append(f"| {_cell(prefix)} | {_cell(json.dumps(value, ensure_ascii=False))} |")

    walk("", data)
    return "\n".join(rows)


GENERATORS = {"settings": settings, "train-keys": train_keys, "cli": cli, "api": api, "events": events,
              "bench": bench}


def on_page_markdown(markdown: str, page, config, files) -> str:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    def fill(match: re.Match) -> str:
        name, argument = match.group(1), match.group(2)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated section '{name}'")
        with redirect_stdout(io.StringIO()):
            return GENERATORS[name](argument) if argument else GENERATORS[name]()

    return MARKER.sub(fill, markdown)
