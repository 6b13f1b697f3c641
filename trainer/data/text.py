"""Text for continued pre-training: `{"text"}` rows, and plain `.txt` files of blank-line-separated
documents."""

from __future__ import annotations

import re
from pathlib import Path

from trainer.data.errors import DataError, RowError
from trainer.data.reading import utf8_bytes
from trainer.data.shapes import Dataset, TextDocument
from trainer.data.tools import NonEmpty, Strict


class TextRow(Strict):
    text: NonEmpty

    def to_example(self) -> TextDocument:
        return TextDocument(self.text)


def load_plain_text(path: str | Path) -> Dataset:
    """A plain-text file for continued pre-training: one document per blank-line-separated block."""
    path = Path(path)
    try:
        raw = utf8_bytes(path, path.read_bytes())
    except OSError as e:
        raise DataError(path, [RowError(0, "", f"cannot read file: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, [RowError(raw[: e.start].count(b"\n") + 1, "", "not valid UTF-8 text")]) from None
    documents = [doc.strip() for doc in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if doc.strip()]
    if not documents:
        raise DataError(path, [RowError(0, "", "the file has no text")])
    return Dataset(str(path), "plaintext", [TextDocument(doc) for doc in documents])
