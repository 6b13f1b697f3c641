"""What is wrong with a file: a row's line, field and message; the error a file raises; and pydantic's
error locations as field paths (the API names a request's bad parameter the same way)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

MAX_ERRORS = 20


@dataclass
class RowError:
    line: int
    field: str
    message: str
    element: int | None = None  # in a JSON array: the row's index (its line is where it starts)

    def __str__(self) -> str:
        where = f"line {self.line}" if self.element is None else f"element {self.element} (line {self.line})"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class DataError(ValueError):
    """A training file that cannot be used; `errors` lists the rows at fault."""

    def __init__(self, path: str | Path, errors: list[RowError], total_bad: int | None = None):
        self.path = str(path)
        self.errors = errors
        self.total_bad = total_bad if total_bad is not None else len(errors)
        more = f" (and {self.total_bad - len(errors)} more)" if self.total_bad > len(errors) else ""
        self.details = "; ".join(map(str, errors)) + more  # what is wrong, without the file's name
        super().__init__(f"{Path(path).name}: {self.details}")

    @property
    def first(self) -> RowError:
        return self.errors[0]


class RowFailure(Exception):
    def __init__(self, error: RowError):
        self.error = error


class FieldError(Exception):
    def __init__(self, field: str, message: str):
        self.field, self.message = field, message


_TYPE_TAGS = {"int", "float", "str", "bool", "list", "dict", "none", "bytes"}


def field_path(loc: tuple, skip: tuple[str, ...] = ()) -> str:
    """A pydantic error location as a field path: `('messages', 1, 'role')` -> `messages[1].role`.

    Dropped: the names in `skip`, and the tags pydantic adds for union members and validators
    (`str`, `list[_TextPart]`, `function-after[...]`), which are not fields."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in skip and part.isidentifier() and part not in _TYPE_TAGS:
            path += f".{part}" if path else part
    return path


def pydantic_error(line: int, exc: ValidationError) -> RowError:
    # A misspelt key shows up both as "unknown key" and as "field required": name the typo.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = field_path(err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return RowError(line, loc, msg)
