"""A data file's rows as they are stored: JSONL (one JSON object per line) or a JSON array of objects
(LLaMA-Factory's `.json` files), saved by any editor: a UTF-8 byte-order mark and CRLF line ends are
fine; a UTF-16 file is named as such, with its fix. Every row keeps where it starts: its line, and in
an array its index, so that errors point at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.data.errors import DataError, RowError

UTF8_BOM = b"\xef\xbb\xbf"
SHAPES = "JSONL (one JSON object per line) or a JSON array of objects"
TOO_DEEP = "invalid JSON: nested too deeply"


@dataclass
class Record:
    """One row: its value, or what kept it from being read."""

    line: int
    element: int | None  # its index in a JSON array; None in JSONL
    value: Any = None
    error: str | None = None

    def row_error(self, field: str = "", message: str | None = None) -> RowError:
        return RowError(self.line, field, message or self.error, self.element)


def utf8_bytes(path: Path, raw: bytes) -> bytes:
    """The bytes without a UTF-8 byte-order mark; a UTF-16 file (Windows' "Unicode") refused, saying how to
    save it instead of failing line by line."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(raw) >= 4 and (raw[1] == 0 or raw[0] == 0)):
        raise DataError(path, [RowError(0, "", "the file is UTF-16 text; save it as UTF-8 (in most editors: "
                                               "Save As, then choose the UTF-8 encoding) and upload it again")])
    return raw[len(UTF8_BOM):] if raw.startswith(UTF8_BOM) else raw


def read_records(path: Path, raw: bytes) -> Iterator[Record]:
    """The rows of a file's bytes, JSONL or a JSON array (told apart by the first character)."""
    raw = utf8_bytes(path, raw)
    if raw.lstrip()[:1] == b"[":
        yield from _array(path, raw)
    else:
        yield from _lines(path, raw)


def _lines(path: Path, raw: bytes) -> Iterator[Record]:
    first = True
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield Record(lineno, None, json.loads(line.decode("utf-8")))
        except UnicodeDecodeError:
            yield Record(lineno, None, error="not valid UTF-8 text")
        except RecursionError:  # hostile input: nested deeper than the parser goes
            yield Record(lineno, None, error=TOO_DEEP)
        except json.JSONDecodeError as e:
            if first:  # not one row per line from the start: one message for the file, not one per line
                raise DataError(path, [RowError(lineno, "", f"invalid JSON: {e.msg} at column {e.colno}; "
                                                f"a data file is {SHAPES}")]) from None
            yield Record(lineno, None, error=f"invalid JSON: {e.msg} at column {e.colno}")
        first = False


def _array(path: Path, raw: bytes) -> Iterator[Record]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, [RowError(raw[: e.start].count(b"\n") + 1, "", "not valid UTF-8 text")]) from None
    decoder = json.JSONDecoder()
    pos, line, counted, element = text.index("[") + 1, 1, 0, 0

    def skip(at: int) -> int:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        return at

    def fail(e: json.JSONDecodeError | None, at: int, message: str) -> DataError:
        lineno = e.lineno if e else text.count("\n", 0, at) + 1
        return DataError(path, [RowError(lineno, "", message, element)])

    pos = skip(pos)
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            line, counted = line + text.count("\n", counted, pos), pos
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise fail(e, pos, f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
            except RecursionError:
                raise fail(None, pos, TOO_DEEP) from None
            yield Record(line, element, value)
            element += 1
            pos = skip(end)
            if pos < len(text) and text[pos] == ",":
                pos = skip(pos + 1)
                continue
            if pos < len(text) and text[pos] == "]":
                pos += 1
                break
            raise fail(None, pos, "invalid JSON: expected ',' or ']' after this element")
    if skip(pos) != len(text):
        raise DataError(path, [RowError(text.count("\n", 0, pos) + 1, "", "text after the JSON array's end")])
