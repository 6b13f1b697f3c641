"""Admin keys from a file: several at once (keys or their SHA-256), rotated without a restart, each admin
action audited under the key that made it; and the file's format checked line by line."""

import hashlib

import httpx
import pytest

from service.projects.admin_keys import AdminKeys, read_admin_keys
from tests.support.jobs import wait_for
from tests.support.server import Server

A, B, C = "admin-key-a-" + "1" * 20, "admin-key-b-" + "2" * 20, "admin-key-c-" + "3" * 20


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _projects(server: Server, key: str) -> int:
    return httpx.get(f"{server.url}/v1/organization/projects", headers={"Authorization": f"Bearer {key}"},
                     timeout=10).status_code


def test_admin_keys_rotate_without_a_restart_and_each_action_names_its_key(tiny_model, tmp_path):
    keys = tmp_path / "admin-keys"
    keys.write_text(f"# the operators' keys\n{A}\n\nsha256:{_sha(B).upper()}\n")
    server = Server(tmp_path / "data", model=tiny_model, engine="none", admin_key_file=keys).start()
    try:
        assert _projects(server, A) == _projects(server, B) == 200
        assert _projects(server, C) == 401
        created = httpx.post(f"{server.url}/v1/organization/projects", json={"name": "rotated"}, timeout=10,
                             headers={"Authorization": f"Bearer {B}"})
        assert created.status_code == 200, created.text
        audit = next(line for line in server.log.read_text().splitlines()
                     if '"audit": "POST /v1/organization/projects"' in line)
        assert f'"key_id": "key_admin_{_sha(B)[:12]}"' in audit and '"admin": true' in audit
        assert B not in server.log.read_text() and A not in server.log.read_text()

        keys.write_text(f"sha256:{_sha(C)}\n")  # rotate: C in, A and B out
        wait_for(lambda: _projects(server, A) == 401, timeout=30, what="the old key refused")
        assert _projects(server, B) == 401 and _projects(server, C) == 200

        keys.write_text("sha256:not-a-digest\n")  # a bad edit keeps the keys read before
        wait_for(lambda: _projects(server, C) == 200 and "was not read again" in server.log.read_text(), timeout=30,
                 what="the bad file reported (the file is read again on a request)")
        keys.unlink()  # no file: no admin key, and the API stays closed
        wait_for(lambda: _projects(server, C) == 401, timeout=30, what="the keys gone with the file")
    finally:
        server.stop()


def test_the_key_file_is_read_line_by_line(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"{A}\n  # comment\nsha256:{_sha(B)}\n")
    assert read_admin_keys(path) == [_sha(A), _sha(B)]
    path.write_text(f"{A}\nsha256:{_sha(B)[:-1]}\n")
    with pytest.raises(ValueError, match="line 2"):
        read_admin_keys(path)
    (tmp_path / "empty").write_text("")
    keys = AdminKeys(None, tmp_path / "empty")  # no key yet, but not an open server: the file may gain one
    assert keys.configured and keys.match(A.encode()) is None
    with pytest.raises(FileNotFoundError):  # a key file that is not there stops the server at start
        AdminKeys(None, tmp_path / "missing")
    assert AdminKeys(f" {A} ", None).match(A.encode()) == f"key_admin_{_sha(A)[:12]}"
    assert not AdminKeys(None, None).configured
