"""The Files service: store uploads, validate fine-tune files with the trainer's own loader.

A file is one object, `files/{id}`, in the object store (the data dir, or S3). An upload is
received into a local path first (the object itself in a local store; its cached copy with S3),
counted against the size limit and validated there, then stored; only then is its row written.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from adapters.atomic import staged
from adapters.objects import ObjectStore, StorageUnavailable
from service.errors import APIError, Kind, storage_error
from service.files.protocol import UPLOAD_PURPOSES, FileObject
from service.files.store import FileStore, FileUser
from service.ids import new_id
from service.protocol import DeletedObject, ListObject
from trainer.data import DataError, load_dataset

log = logging.getLogger("ftserve.files")


class FileService:
    def __init__(self, store: FileStore, objects: ObjectStore, max_bytes: int, users: list[FileUser]):
        """`users`: the stores whose active work reads files; a file one of them uses cannot be deleted."""
        self.store, self.objects, self.max_bytes, self.users = store, objects, max_bytes, users

    def upload(self, stream: BinaryIO, filename: str | None, purpose: str, project: str) -> FileObject:
        if purpose not in UPLOAD_PURPOSES:
            raise APIError(Kind.INVALID_REQUEST, f"Invalid purpose '{purpose}'; expected one of "
                           f"{', '.join(UPLOAD_PURPOSES)}.", param="purpose")
        filename = Path(filename or "upload.jsonl").name[:255]
        file_id = new_id("file-")
        key, path = self._receive(file_id, iter(functools.partial(stream.read, 1 << 20), b""), self.max_bytes)
        if path.stat().st_size == 0:
            path.unlink(missing_ok=True)
            raise APIError(Kind.INVALID_REQUEST, "The file is empty.", param="file")
        size = path.stat().st_size
        doc = FileObject(id=file_id, bytes=size, created_at=int(time.time()), filename=filename,
                         purpose=purpose, status="uploaded")
        if purpose == "fine-tune":
            try:
                load_dataset(path, file_format(filename))
                doc.status = "processed"
            except DataError as e:  # named as the user named the file, not as it is stored
                doc.status, doc.status_details = "error", f"{filename}: {e.details}"
                if _reinforcement_prompts(path):
                    doc.status, doc.status_details = "processed", None
        else:
            doc.status = "processed"
        self._commit(doc, key, path, project)
        return doc

    def create_internal(self, data: bytes | Iterable[bytes], filename: str, purpose: str,
                        project: str) -> FileObject:
        """A file the service writes itself for a project (e.g. a job's result CSV); `data` may come in
        pieces (a batch's output lines), written as they come."""
        file_id = new_id("file-")
        key, path = self._receive(file_id, [data] if isinstance(data, bytes) else data)
        doc = FileObject(id=file_id, bytes=path.stat().st_size, created_at=int(time.time()), filename=filename,
                         purpose=purpose, status="processed")
        self._commit(doc, key, path, project)
        return doc

    def _receive(self, file_id: str, pieces: Iterable[bytes], limit: float = math.inf) -> tuple[str, Path]:
        """The file's bytes at a local path: the object itself (local store) or its cached copy (S3)."""
        key = f"files/{file_id}"
        path = self.objects.local_path(key) or self.objects.cache_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        self._copy(pieces, path, limit)
        return key, path

    def _commit(self, doc: FileObject, key: str, path: Path, project: str) -> None:
        """Store the object (S3), then its row; neither stays without the other."""
        try:
            if self.objects.local_path(key) is None:
                self.objects.put_file(key, path)
            self.store.insert_file(doc.model_dump(), key, project)
            self.objects.trim_cache(keep=path)  # the copy just uploaded stays: it is read next
        except Exception:
            path.unlink(missing_ok=True)  # no stored file without its row
            if self.objects.local_path(key) is None:
                with contextlib.suppress(StorageUnavailable):
                    self.objects.delete(key)
            raise

    @staticmethod
    def _copy(pieces: Iterable[bytes], path: Path, limit: float) -> int:
        """Write the pieces into place atomically, counting bytes; 413 past `limit`."""
        size = 0
        try:
            with staged(path) as staging, staging.open("wb") as out:
                for chunk in pieces:
                    size += len(chunk)
                    if size > limit:
                        raise APIError(Kind.TOO_LARGE, f"File exceeds the maximum upload size of "
                                       f"{limit} bytes.", param="file", code="file_too_large")
                    out.write(chunk)
        except OSError as e:
            raise _storage_error(e) from None
        return size

    # `project`: the caller's (another project's file is not found); None: the service's own use
    def get(self, file_id: str, project: str | None) -> FileObject:
        return FileObject(**self._row(file_id, project)[0])

    def path(self, file_id: str, project: str | None) -> Path:
        """A local path of the file's content (downloaded once from S3)."""
        return self.objects.fetch(self._row(file_id, project)[1])

    def find(self, file_id: str, project: str | None) -> FileObject | None:
        """The file, or None if there is none (of `project`)."""
        row = self.store.get_file(file_id, project)
        return None if row is None else FileObject(**row[0])

    def _row(self, file_id: str, project: str | None) -> tuple[dict, str]:
        row = self.store.get_file(file_id, project)
        if row is None:
            raise APIError(Kind.NOT_FOUND, f"No such File object: {file_id}", param="id", code="file_not_found")
        return row

    def list(self, project: str, purpose: str | None, after: str | None, limit: int,
             order: str) -> ListObject[FileObject]:
        docs, more = self.store.list_files(project, purpose, after, limit, order)
        return ListObject[FileObject].page([FileObject(**d) for d in docs], more)

    def delete(self, file_id: str, project: str) -> DeletedObject:
        _, key = self._row(file_id, project)
        if any(user.uses_file(file_id) for user in self.users):
            raise APIError(Kind.CONFLICT, f"File {file_id} is used by an active fine-tuning job or batch.",
                           param="id", code="file_in_use")
        self.store.delete_file(file_id)  # unlisted first; then its content goes
        self.objects.forget(key)
        try:
            self.objects.delete(key)
        except StorageUnavailable:  # deleted for every client; the object is left behind
            log.warning("file %s deleted, but its object %s could not be removed: the store is unreachable",
                        file_id, key)
        return DeletedObject(id=file_id, object="file")


MEDIA_TYPES = {".jsonl": "application/jsonl", ".json": "application/json", ".csv": "text/csv",
               ".txt": "text/plain; charset=utf-8"}


def file_format(filename: str) -> str:
    """How a fine-tune file is read: `plaintext` for a .txt upload (continued pre-training), else JSONL
    rows of any format."""
    return "plaintext" if filename.lower().endswith(".txt") else "auto"


def media_type(filename: str) -> str:
    """What a file's content is served as: by its name's ending, bytes when unknown."""
    return MEDIA_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")


def _storage_error(e: OSError) -> APIError:
    return storage_error(e) or APIError(Kind.INTERNAL, f"The file could not be stored: {e.strerror}.")



def _reinforcement_prompts(path: Path) -> bool:
    """Whether the file holds reinforcement fine-tuning's rows (prompts ending before the assistant's turn,
    with the grader's fields beside them), which no other method trains on."""
    from trainer.data.prompts import load_prompts

    try:
        load_prompts(path)
    except DataError:
        return False
    return True
