"""The error table and the envelope (fast: an app with only the error handlers): every kind answers its
status and OpenAI's shape, a body's validation errors name the parameter, and storage and database
failures become the statuses a client retries on."""

import errno
import sqlite3

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from service import errors
from service.errors import APIError, Kind

EXPECTED = {  # OpenAI's statuses and error types
    Kind.INVALID_REQUEST: (400, "invalid_request_error"), Kind.AUTHENTICATION: (401, "invalid_request_error"),
    Kind.PERMISSION: (403, "permission_error"), Kind.NOT_FOUND: (404, "invalid_request_error"),
    Kind.METHOD_NOT_ALLOWED: (405, "invalid_request_error"), Kind.CONFLICT: (409, "invalid_request_error"),
    Kind.TOO_LARGE: (413, "invalid_request_error"), Kind.UNSUPPORTED_MEDIA_TYPE: (415, "invalid_request_error"),
    Kind.RATE_LIMITED: (429, "rate_limit_error"), Kind.INSUFFICIENT_STORAGE: (507, "server_error"),
    Kind.UNAVAILABLE: (503, "server_error"), Kind.INTERNAL: (500, "server_error"),
}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: int


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    errors.install(app)

    @app.get("/raise/{kind}")
    def raise_(kind: str):
        raise APIError(Kind[kind], f"{kind} happened", param="p", code="c", headers={"Retry-After": "1"})

    @app.post("/body")
    def body(b: Body):
        return {}

    return TestClient(app)


def test_the_table_is_openai_s():
    assert {k: (k.status, k.type) for k in Kind} == EXPECTED


@pytest.mark.parametrize("kind", list(Kind), ids=lambda k: k.name)
def test_every_kind_answers_its_status_in_the_envelope(client, kind):
    r = client.get(f"/raise/{kind.name}")
    assert r.status_code == EXPECTED[kind][0] and r.headers["retry-after"] == "1"
    assert r.json() == {"error": {"message": f"{kind.name} happened", "type": EXPECTED[kind][1], "param": "p",
                                  "code": "c"}}


@pytest.mark.parametrize("body, message, param", [
    ({}, "Missing required parameter: 'n_epochs'.", "n_epochs"),
    ({"n_epochs": 1, "n_epoch": 2}, "Unrecognized request argument supplied: n_epoch", "n_epoch"),
    ({"n_epochs": "x"}, "Invalid value for 'n_epochs'", "n_epochs"),
])
def test_a_body_s_validation_errors_name_the_parameter(client, body, message, param):
    r = client.post("/body", json=body)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith(message)
    assert r.json()["error"]["param"] == param


def test_unknown_urls_and_methods(client):
    assert client.get("/nowhere").json()["error"]["message"] == "Unknown request URL: GET /nowhere."
    r = client.delete("/body")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_a_full_disk_is_a_507_and_an_unreachable_database_a_503():
    assert errors.storage_error(OSError(errno.ENOSPC, "full")).kind is Kind.INSUFFICIENT_STORAGE
    assert errors.storage_error(sqlite3.OperationalError("database or disk is full")).kind is Kind.INSUFFICIENT_STORAGE
    assert errors.storage_error(OSError(errno.EACCES, "denied")) is None
    down = sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert errors.database_unavailable(down).kind is Kind.UNAVAILABLE
    assert errors.database_unavailable(ValueError("no")) is None
