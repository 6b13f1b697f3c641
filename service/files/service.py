"""The Files service: store uploads, validate fine-tune files with the trainer's own loader."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from adapters.atomic import staged
from service.db import Database
from service.errors import APIError, Kind, storage_error
from service.files.protocol import UPLOAD_PURPOSES, FileObject
from service.protocol import DeletedObject, ListObject
from trainer.data import DataError, load_dataset


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class FileService:
    def __init__(self, db: Database, root: Path, max_bytes: int):
        self.db, self.root, self.max_bytes = db, root, max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def upload(self, stream: BinaryIO, filename: str | None, purpose: str) -> FileObject:
        if purpose not in UPLOAD_PURPOSES:
            raise APIError(Kind.INVALID_REQUEST, f"Invalid purpose '{purpose}'; expected one of "
                           f"{', '.join(UPLOAD_PURPOSES)}.", param="purpose")
        filename = Path(filename or "upload.jsonl").name[:255]
        file_id = new_id("file")
        path = self.root / file_id
        size = self._store(stream, path, self.max_bytes)
        if size == 0:
            path.unlink(missing_ok=True)
            raise APIError(Kind.INVALID_REQUEST, "The file is empty.", param="file")
        doc = FileObject(id=file_id, bytes=size, created_at=int(time.time()), filename=filename,
                         purpose=purpose, status="uploaded")
        if purpose == "fine-tune":
            try:
                load_dataset(path)
                doc.status = "processed"
            except DataError as e:
                doc.status, doc.status_details = "error", str(e)
        else:
            doc.status = "processed"
        try:
            self.db.insert_file(doc.model_dump(), str(path))
        except Exception:
            path.unlink(missing_ok=True)  # no stored file without its row
            raise
        return doc

    def create_internal(self, data: bytes, filename: str, purpose: str) -> FileObject:
        """A file the service writes itself (e.g. a job's result CSV)."""
        file_id = new_id("file")
        path = self.root / file_id
        self._store(io.BytesIO(data), path, limit=len(data))
        doc = FileObject(id=file_id, bytes=len(data), created_at=int(time.time()), filename=filename,
                         purpose=purpose, status="processed")
        self.db.insert_file(doc.model_dump(), str(path))
        return doc

    @staticmethod
    def _store(stream: BinaryIO, path: Path, limit: int) -> int:
        """Copy into place atomically, counting bytes; 413 past `limit`."""
        size = 0
        try:
            with staged(path) as staging, staging.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise APIError(Kind.TOO_LARGE, f"File exceeds the maximum upload size of "
                                       f"{limit} bytes.", param="file", code="file_too_large")
                    out.write(chunk)
        except OSError as e:
            raise _storage_error(e) from None
        return size

    def get(self, file_id: str) -> FileObject:
        return FileObject(**self._row(file_id)[0])

    def path(self, file_id: str) -> Path:
        return Path(self._row(file_id)[1])

    def _row(self, file_id: str) -> tuple[dict, str]:
        row = self.db.get_file(file_id)
        if row is None:
            raise APIError(Kind.NOT_FOUND, f"No such File object: {file_id}", param="id", code="file_not_found")
        return row

    def list(self, purpose: str | None, after: str | None, limit: int, order: str) -> ListObject[FileObject]:
        docs, more = self.db.list_files(purpose, after, limit, order)
        return ListObject[FileObject].page([FileObject(**d) for d in docs], more)

    def delete(self, file_id: str) -> DeletedObject:
        _, path = self._row(file_id)
        if self.db.file_in_use(file_id):
            raise APIError(Kind.CONFLICT, f"File {file_id} is used by an active fine-tuning job.",
                           param="id", code="file_in_use")
        self.db.delete_file(file_id)
        Path(path).unlink(missing_ok=True)
        return DeletedObject(id=file_id, object="file")


MEDIA_TYPES = {".jsonl": "application/jsonl", ".json": "application/json", ".csv": "text/csv",
               ".txt": "text/plain; charset=utf-8"}


def media_type(filename: str) -> str:
    """What a file's content is served as: by its name's ending, bytes when unknown."""
    return MEDIA_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")


def _storage_error(e: OSError) -> APIError:
    return storage_error(e) or APIError(Kind.INTERNAL, f"The file could not be stored: {e.strerror}.")

