"""An eval run's data source, read into rows: inline content, or a JSONL file of
`{"item": ..., "sample"?: ...}` lines. Shared by the service (checks at create) and the runner."""

from __future__ import annotations

from pydantic import ValidationError

from service.errors import APIError, Kind
from service.evals.protocol import FileContentSource, SourceRow
from service.files.service import FileService


def bad_request(message: str, param: str, code: str | None = None) -> APIError:
    return APIError(Kind.INVALID_REQUEST, message, param=param, code=code)


def read_rows(files: FileService, source, param: str, project: str | None) -> list[SourceRow]:
    """A source's rows: inline, or a JSONL file's (of `project`; None: any project's, for the runner)."""
    if isinstance(source, FileContentSource):
        return source.content
    if files.find(source.id, project) is None:
        raise bad_request(f"File {source.id} does not exist.", f"{param}.id", code="file_not_found")
    rows = []
    for n, line in enumerate(files.path(source.id, project).read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(SourceRow.model_validate_json(line))
        except ValidationError as e:
            raise bad_request(f"Line {n} of file {source.id} is not an eval row ({{\"item\": {{...}}}}): "
                              f"{e.errors()[0]['msg']}", f"{param}.id", code="invalid_file_format")
    if not rows:
        raise bad_request(f"File {source.id} has no rows.", f"{param}.id", code="invalid_file_format")
    return rows
