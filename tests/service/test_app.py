"""The app as features composed on a core (fast: in-process, no engine): a feature added with one line,
what a feature missing its dependency says, and routes answered through every layer."""

import pytest
from fastapi import APIRouter, Depends
from typing import Annotated

from service.app import FEATURES
from service.components import Components, Feature, provide
from service.deps import Project
from service.files.service import FileService
from service.files.store import FileUser
from tests.support.app import app_client


class NoteService:
    """A hypothetical feature's service: it counts a project's fine-tune files through the Files feature."""

    def __init__(self, files: FileService):
        self.files = files

    def count(self, project: str) -> int:
        return len(self.files.list(project, "fine-tune", None, 100, "asc").data)


router = APIRouter(prefix="/v1/notes")


@router.get("")
def notes(service: Annotated[NoteService, Depends(provide(NoteService))], project: Project) -> dict:
    return {"fine_tune_files": service.count(project)}


NOTES = Feature("notes", routers=[router], build=lambda c: c.add(NoteService(c.get(FileService))))


def test_a_feature_is_one_entry_in_the_list(tmp_path):
    with app_client(tmp_path, FEATURES + [NOTES]) as client:
        assert client.get("/v1/notes").json() == {"fine_tune_files": 0}
        r = client.post("/v1/files", files={"file": ("a.jsonl", b'{"text": "hello"}\n')}, data={"purpose": "fine-tune"})
        assert r.status_code == 200, r.text
        assert client.get("/v1/notes").json() == {"fine_tune_files": 1}
        assert client.get("/openapi.json").json()["paths"].keys() >= {"/v1/notes", "/v1/files"}


def test_a_feature_listed_before_what_it_needs_is_refused_by_name(tmp_path):
    with pytest.raises(LookupError, match="no FileService has been built: list the feature that makes it earlier"):
        with app_client(tmp_path, [NOTES]):
            pass
    without_jobs = [f for f in FEATURES if f.name == "projects"]
    with pytest.raises(LookupError, match="0 features make a ModelOwners"):
        with app_client(tmp_path, without_jobs):
            pass


def test_stores_that_read_files_are_found_by_their_protocol(tmp_path):
    with app_client(tmp_path) as client:
        components: Components = client.app.state.components
        users = {type(u).__name__ for u in components.implementing(FileUser)}
        assert users == {"JobStore", "BatchStore"}


def test_a_file_round_trip_through_the_in_process_app(tmp_path):
    with app_client(tmp_path) as client:
        r = client.post("/v1/files", files={"file": ("bad.jsonl", b"not json\n")}, data={"purpose": "fine-tune"})
        assert r.json()["status"] == "error" and "line 1" in r.json()["status_details"]
        file_id = r.json()["id"]
        assert [f["id"] for f in client.get("/v1/files").json()["data"]] == [file_id]
        assert client.delete(f"/v1/files/{file_id}").json()["deleted"] is True
        r = client.get(f"/v1/files/{file_id}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "file_not_found"
